"""The embedded corpus builds offline in a fresh directory, and the embedded tasks are built from it."""

import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from ladder import tasks as T
from ladder.data import corpus, make_source
from ladder.data.tfds_builder import embedded_builder, read_split
from ladder.errors import LadderError
from ladder.tasks import embedded


@pytest.fixture(scope="module")
def built(tmp_path_factory, build_offline):
    """Every default domain built into a fresh cache with the network forbidden (the specialization domains
    build in tests/test_domains.py)."""
    root = tmp_path_factory.mktemp("ladder-cache")
    return root, build_offline(("prose", "code", "legal"), root)


def test_embedded_corpus_builds_offline_with_counts_and_hash(built):
    root, builders = built
    for domain, b in builders.items():
        meta = b.info.metadata
        assert len(meta["content_sha256"]) == 64
        counts = meta["counts"]
        assert counts["train"]["documents"] > counts["test"]["documents"] > 0, domain
        assert len(read_split(b, "test")) == counts["test"]["documents"]
    assert builders["code"].info.metadata["counts"]["train"]["bytes"] > 1e6  # the stdlib is megabytes of code
    # Splits come from the document hash: a test document is never also a training document.
    test_docs = {bytes(r["text"]) for r in (read_split(builders["prose"], "test")[i] for i in range(20))}
    assert all(corpus.split_of(t.decode()) == "test" for t in test_docs)


# docs/data.md: legal is pinned by licensedcode-data==32.1.0; prose and code follow the Python release.
GOLDEN_LEGAL_SHA256 = "e471690d47a37d86a549a7f176464091cf0623708708f91523492704aac0863d"
GOLDEN_STDLIB_SHA256 = {"3.11.7": {"prose": "472786fa6669193888ac778fed6b6261bf4ec492e365f73489f3b89a6c9fe412",
                                   "code": "d5323b9fdb893b048a52df0f64dc175097caee97619f5415cf136cc0aaa95e25"}}


def test_embedded_corpus_content_is_pinned(built):
    """The legal domain has the same bytes whatever else is installed; prose and code are fixed per Python."""
    _, builders = built
    assert builders["legal"].info.metadata["content_sha256"] == GOLDEN_LEGAL_SHA256
    assert builders["legal"].info.metadata["counts"]["test"]["documents"] == 234
    golden = GOLDEN_STDLIB_SHA256.get(sys.version.split()[0])
    if golden:
        for domain, sha in golden.items():
            assert builders[domain].info.metadata["content_sha256"] == sha, domain


def test_embedded_cache_is_keyed_by_inputs(built, monkeypatch):
    """A cache built from other inputs (another corpus.py, Python or licence version) is never reused."""
    root, builders = built
    assert f"embedded-{corpus.inputs_key('legal')[:16]}" in builders["legal"].data_dir
    corpus.inputs_key.cache_clear()
    monkeypatch.setattr(corpus, "_licence_files", lambda: [("x", Path(corpus.__file__))])
    try:
        assert embedded_builder("legal", root / "tfds").data_dir != builders["legal"].data_dir
    finally:
        corpus.inputs_key.cache_clear()


def test_legal_domain_refuses_another_licence_version(monkeypatch):
    monkeypatch.setattr(corpus, "LICENSED_CODE_VERSION", "0.0.1")
    with pytest.raises(LadderError, match="licensedcode-data==0.0.1"):
        corpus.licence_dir()


def test_embedded_source_serves_the_pinned_batch(built):
    root, _ = built
    cfg = ml_collections.ConfigDict(dict(source="embedded", domains="prose,legal", weights="0.8,0.2",
                                         cache_dir=str(root), seed=0, segment_ids=True))
    src = make_source(cfg, 128, 4)
    batch = src.batch(17)
    assert set(batch) == {"inputs", "targets", "segment_ids", "positions"}
    assert all(v.shape == (4, 128) and v.dtype == np.int32 for v in batch.values())
    assert np.array_equal(make_source(cfg, 128, 4).batch(17)["targets"], batch["targets"])


def test_embedded_tasks_are_deterministic_and_well_formed(built):
    root, _ = built
    cfg = ml_collections.ConfigDict(dict(source="embedded", cache_dir=str(root)))
    tasks = T.load_tasks(ml_collections.ConfigDict(dict(tasks="embedded", n_questions=120)), cfg)
    again = T.load_tasks(ml_collections.ConfigDict(dict(tasks="embedded", n_questions=120)), cfg)
    assert [t.name for t in tasks] == list(T.EMBEDDED_DEFAULT)
    for t, u in zip(tasks, again):
        assert len(t.questions) == 120 and t.questions == u.questions
        golds = np.bincount([q.gold for q in t.questions], minlength=4)
        assert golds.min() > 10  # the true answer's position is uniform, not a give-away
        for q in t.questions:
            assert len(q.choices) == 4 and len(set(q.choices)) == 4 and len(q.context) >= 100
    # few-shot prompts come from the validation split and prefix the question's context
    shot = T.load_tasks(ml_collections.ConfigDict(dict(tasks="code_next_line", n_questions=10, k_shot=2)), cfg)[0]
    assert shot.prompt(0).endswith(shot.questions[0].context) and len(shot.prompt(0)) > len(shot.questions[0].context)


def test_embedded_choices_differ_only_through_the_context(built):
    """Gold answers and distractors are drawn alike, so a byte-bigram model of the training split that scores
    each choice WITHOUT its context is at chance; the context is cut inside a word and the gold answer is
    the document's true continuation; no prose distractor repeats a four-word phrase of the gold passage."""
    root, builders = built
    make = {"prose": embedded.continuation_questions, "legal": embedded.continuation_questions, "code": embedded.next_line_questions}
    for domain, questions_of in make.items():
        train = b"".join(bytes(r["text"]) for r in read_split(builders[domain], "train"))
        pairs = np.frombuffer(train, np.uint8).astype(np.int64)
        counts = np.bincount(pairs[:-1] * 256 + pairs[1:], minlength=256 * 256).reshape(256, 256) + 0.1
        logp = np.log(counts / counts.sum(1, keepdims=True))
        test = [bytes(r["text"]).decode() for r in read_split(builders[domain], "test")]
        hits = []
        for q in questions_of(test, 300, seed=1000):
            gold = q.choices[q.gold]
            assert q.context[-2:].replace("_", "a").isalpha() and gold[:2].replace("_", "a").isalpha()
            assert any(q.context + gold.rstrip("\n") in d for d in test)
            if domain != "code":
                assert not any(embedded._shingles(c) & embedded._shingles(gold) for j, c in enumerate(q.choices) if j != q.gold)
            scores = [logp[b[:-1], b[1:]].sum() / len(c) for c in q.choices
                      for b in [np.frombuffer(c.encode(), np.uint8).astype(np.int64)]]
            hits.append(np.argmax(scores) == q.gold)
        assert abs(np.mean(hits) - 0.25) < 3 * 0.025, (domain, np.mean(hits))  # 3 standard errors at 300
