"""Domain filter: hashed n-gram logistic regression separates domains; precision/recall on held-out docs."""

import numpy as np
import pytest

from ladder import domain_filter as dfl
from ladder.data import corpus
from ladder.errors import LadderError

LEGAL_WORDS = ("licensee shall indemnify the licensor warranty liability hereby granted notwithstanding "
               "pursuant agreement terms conditions copyright holder permission redistribution provided").split()
GENERAL_WORDS = ("the weather today river mountain recipe garden music travel morning coffee city train "
                 "football painting history kitchen forest ocean holiday story").split()


def docs(words, n, seed, mix=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pool = words if mix is None or rng.random() > 0.3 else mix
        out.append(" ".join(rng.choice(pool, size=60)) + ".")
    return out


def test_features_are_stable_and_normalised():
    x = dfl.featurize(["Hello world, hello!", ""], n_buckets=2**12)
    assert x.shape == (2, 2**12)
    assert np.sqrt(x[0].multiply(x[0]).sum()) == pytest.approx(1.0)
    assert x[1].nnz == 0
    y = dfl.featurize(["Hello world, hello!"], n_buckets=2**12)
    np.testing.assert_array_equal(x[0].toarray(), y.toarray())  # no salted hashing


def test_separates_synthetic_domains_and_reports_precision_recall(tmp_path):
    f, val = dfl.train_filter(docs(LEGAL_WORDS, 80, 0), docs(GENERAL_WORDS, 160, 1, mix=LEGAL_WORDS[:3]),
                              target_precision=0.95)
    assert val["precision"] >= 0.95
    report = dfl.evaluate_filter(f, docs(LEGAL_WORDS, 40, 2), docs(GENERAL_WORDS, 80, 3, mix=LEGAL_WORDS[:3]))
    assert report["precision"] >= 0.95 and report["recall"] >= 0.95
    assert report["tp"] + report["fn"] == 40 and report["fp"] + report["tn"] == 80
    f.save(tmp_path / "legal")
    g = dfl.DomainFilter.load(tmp_path / "legal")
    np.testing.assert_allclose(g.score(["the licensee shall indemnify"]), f.score(["the licensee shall indemnify"]), rtol=1e-5)


def test_threshold_for_target_precision_trades_recall():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    # thresholds sit midway between scores; best F1 keeps 0.6 in (3 tp, 1 fp)
    assert dfl.choose_threshold(scores, labels) == pytest.approx(0.55)
    pr = dfl.precision_recall(scores, labels, 0.55)
    assert (pr["precision"], pr["recall"]) == (0.75, 1.0)
    # a target precision is met by its 90% Wilson lower bound, not the raw ratio: 12 tp + 1 fp reads 0.92
    # but its bound is 0.77, so a 0.8 target keeps only the 10 clean positives above the negative at 0.85
    scores = np.r_[np.full(10, 0.9), 0.85, 0.8, 0.8, 0.5, 0.5, 0.5]
    labels = np.r_[np.ones(10), 0, 1, 1, 0, 0, 0]
    assert dfl.choose_threshold(scores, labels, target_precision=0.8) == pytest.approx(0.875)
    assert dfl.wilson_lower(10, 10) == pytest.approx(0.859, abs=1e-3)


def test_bad_input_named():
    with pytest.raises(LadderError, match="^seed documents:"):
        dfl.train_filter(["a"], ["b", "c", "d", "e"])
    with pytest.raises(LadderError, match="^target_precision:"):
        dfl.train_filter(docs(LEGAL_WORDS, 5, 0), docs(GENERAL_WORDS, 5, 1), target_precision=1.5)


@pytest.mark.slow
def test_embedded_corpus_legal_filter():
    """On the embedded corpus (licence texts vs Python docs and code): first 3,000 characters of each document."""
    texts = {d: [(corpus.split_of(t), t[:3000]) for _, t in corpus.documents(d)] for d in ("legal", "prose", "code")}
    take = lambda domain, split, k: [t for s, t in texts[domain] if s == split][:k]  # noqa: E731
    legal = take("legal", "train", 200)
    general = take("prose", "train", 150) + take("code", "train", 150)
    if len(legal) < 20:
        pytest.skip("too few licence files installed on this machine for a legal domain")
    f, _ = dfl.train_filter(legal, general, target_precision=0.95)
    report = dfl.evaluate_filter(f, take("legal", "test", 100), take("prose", "test", 60) + take("code", "test", 60))
    assert report["precision"] >= 0.9 and report["recall"] >= 0.9, report
