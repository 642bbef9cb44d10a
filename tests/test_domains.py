"""The specialization domains beyond general (notices, scidocs; legal is in test_data_corpus.py): they build
offline, the pinned one has fixed bytes, and each has a 500-question exam that a context-free scorer cannot
pass (gold and distractors drawn alike, no context repeated)."""


import ml_collections
import numpy as np
import pytest

from ladder import tasks as T
from ladder.data import corpus
from ladder.data.tfds_builder import read_split
from ladder.tasks import embedded

pytestmark = pytest.mark.slow  # builds two corpora (~40 s) and two 500-question exams

# docs/data.md: notices come from licensedcode-data==32.1.0 like legal, so their bytes are fixed everywhere.
GOLDEN_NOTICES_SHA256 = "f9ea3b5e4a86bf308df27a9180b72e4871c791cb8dd9161ceeec0bc4cb372579"
EXAM = 500


@pytest.fixture(scope="module")
def built(tmp_path_factory, build_offline):
    root = tmp_path_factory.mktemp("ladder-cache")
    return root, build_offline(embedded.SPECIALIZATION_DOMAINS, root)


def test_domains_build_offline_and_notices_are_pinned(built):
    _, builders = built
    for domain, b in builders.items():
        counts = b.info.metadata["counts"]
        assert counts["train"]["documents"] > counts["test"]["documents"] > 50, domain
    assert builders["notices"].info.metadata["content_sha256"] == GOLDEN_NOTICES_SHA256
    text = "".join(bytes(read_split(builders["notices"], "test")[i]["text"]).decode() for i in range(50))
    assert "free software" in text.lower() and "\n * " not in text  # notices, comment leaders stripped


@pytest.mark.parametrize("domain", embedded.SPECIALIZATION_DOMAINS)
def test_domain_exam_has_500_distinct_questions_at_chance_without_context(built, domain):
    root, builders = built
    cfg = ml_collections.ConfigDict(dict(source="embedded", cache_dir=str(root)))
    name = f"{domain}_continuation"
    task = T.load_tasks(ml_collections.ConfigDict(dict(tasks=name, n_questions=EXAM)), cfg)[0]
    assert T.EMBEDDED[name] == domain and len(task.questions) == EXAM
    assert len({q.context for q in task.questions}) == EXAM  # an exam never asks the same question twice
    assert np.bincount([q.gold for q in task.questions], minlength=4).min() > EXAM // 4 - 45
    test = [bytes(r["text"]).decode() for r in read_split(builders[domain], "test")]
    train = b"".join(bytes(r["text"]) for r in read_split(builders[domain], "train"))
    pairs = np.frombuffer(train, np.uint8).astype(np.int64)
    counts = np.bincount(pairs[:-1] * 256 + pairs[1:], minlength=256 * 256).reshape(256, 256) + 0.1
    logp = np.log(counts / counts.sum(1, keepdims=True))
    hits = []
    for q in task.questions:
        gold = q.choices[q.gold]
        assert any(q.context + gold in d for d in test)  # the gold answer is the document's continuation
        scores = [logp[b[:-1], b[1:]].sum() / len(c) for c in q.choices
                  for b in [np.frombuffer(c.encode(), np.uint8).astype(np.int64)]]
        hits.append(np.argmax(scores) == q.gold)
    assert abs(np.mean(hits) - 0.25) < 3 * 0.0194, (domain, np.mean(hits))  # 3 standard errors at 500
