"""Tokenizers, packing, resume, sharding, mixtures and local-file sources (no network, small inputs)."""

import json

import ml_collections
import numpy as np
import pytest

from ladder.data import make_source, pipeline
from ladder.data.mixture import MixtureSource
from ladder.data.packing import PackedSource
from ladder.data.tokenizer import BYTE_VOCAB_SIZE, EOS_ID, PAD_ID, ByteTokenizer, make_tokenizer, train_sentencepiece
from ladder.errors import LadderError


def test_byte_tokenizer_is_lossless_and_sized():
    tok = make_tokenizer(None)
    text = "naïve café — ∑ 🙂"
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.decode(tok.encode(text) + [EOS_ID, PAD_ID]) == text
    assert tok.vocab_size == BYTE_VOCAB_SIZE == 259 and max(tok.eos_id, tok.pad_id) < BYTE_VOCAB_SIZE
    assert np.array_equal(tok.encode_array(text), tok.encode(text))


def _docs(rng, n_docs, max_len):
    """Document d is (d+1) repeated: any token names its document, so crossings are visible."""
    lengths = rng.integers(1, max_len, n_docs)
    tokens = np.concatenate([np.full(n, d + 1, np.uint16) for d, n in enumerate(lengths)])
    return tokens, np.concatenate([[0], np.cumsum(lengths)]), lengths


@pytest.mark.parametrize("segment_ids", [True, False])
def test_packing_loses_no_token_and_crosses_no_document(segment_ids):
    rng = np.random.default_rng(0)
    tokens, offsets, lengths = _docs(rng, 40, 30)
    src = PackedSource(tokens, offsets, seq_len=16, global_batch=4, seed=3, eos_id=EOS_ID, pad_id=PAD_ID,
                       segment_ids=segment_ids)
    rows = src.rows(np.arange(src.rows_per_epoch))  # exactly one epoch
    valid = rows["segment_ids"] > 0
    # Every target token of every document (and one EOS per document) appears exactly once per epoch.
    counts = np.bincount(rows["targets"][valid], minlength=EOS_ID + 1)
    assert np.array_equal(counts[1:41], lengths) and counts[EOS_ID] == 40
    assert valid.sum() == lengths.sum() + 40 and (~valid).sum() < src.seq_len  # padding only at the epoch's end
    # Within a document, input t is target t-1; a document's first input is EOS (never another document's token).
    for r in range(len(rows["inputs"])):
        inp, tgt, seg, pos = (rows[k][r] for k in ("inputs", "targets", "segment_ids", "positions"))
        for t in range(src.seq_len):
            if not seg[t]:
                continue
            doc = tgt[t] if tgt[t] != EOS_ID else None
            if doc is not None:
                assert inp[t] in (doc, EOS_ID)
            if segment_ids:
                same = seg == seg[t]
                names = {int(x) for x in np.concatenate([inp[same], tgt[same]]) if x != EOS_ID}
                assert len(names) <= 1, "a segment mixes documents"
                assert pos[t] == (0 if t == 0 or seg[t - 1] != seg[t] else pos[t - 1] + 1)
            else:
                assert pos[t] == t


def test_epochs_reshuffle_and_rows_are_pure():
    rng = np.random.default_rng(1)
    tokens, offsets, _ = _docs(rng, 50, 40)
    a = PackedSource(tokens, offsets, 32, 8, seed=5, eos_id=EOS_ID, pad_id=PAD_ID)
    b = PackedSource(tokens, offsets, 32, 8, seed=5, eos_id=EOS_ID, pad_id=PAD_ID)
    ks = [0, 7, 3, 7, 2 * a.rows_per_epoch // 8 + 1]
    for k in ks:  # any order, fresh object: same rows
        assert all(np.array_equal(a.batch(k)[x], b.batch(k)[x]) for x in a.batch(k))
    e0 = a.rows(np.arange(a.rows_per_epoch))["targets"]
    e1 = a.rows(np.arange(a.rows_per_epoch, 2 * a.rows_per_epoch))["targets"]
    assert not np.array_equal(e0, e1) and np.array_equal(np.sort(e0, None), np.sort(e1, None))


def _files_cfg(tmp_path, **kw):
    d = tmp_path / "texts"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    with open(d / "docs.jsonl", "w") as f:
        for i in range(60):
            f.write(json.dumps({"text": " ".join(rng.choice(words, rng.integers(5, 80))) + f" doc{i}."}) + "\n")
    (d / "readme.txt").write_text("A plain text file is one document.\n" * 20)
    return ml_collections.ConfigDict(dict(source="files", files=str(d), cache_dir=str(tmp_path / "cache"),
                                          seed=11, segment_ids=True, **kw))


def test_files_source_resumes_and_shards(tmp_path):
    cfg = _files_cfg(tmp_path)
    first = make_source(cfg, 64, 8)
    again = make_source(cfg, 64, 8)  # a restart: the cache is reused, batch k is the same
    for k in (0, 5, 123):
        assert all(np.array_equal(first.batch(k)[x], again.batch(k)[x]) for x in ("inputs", "targets", "segment_ids", "positions"))
    hosts = [make_source(cfg, 64, 8, process_index=i, process_count=2).batch(5) for i in range(2)]
    whole = first.batch(5)
    for x in whole:  # host i serves rows [4i, 4i+4) of the global batch
        assert np.array_equal(np.concatenate([h[x] for h in hosts]), whole[x])
        assert whole[x].dtype == np.int32 and whole[x].shape == (8, 64)
    assert pipeline.vocab_size(cfg) == BYTE_VOCAB_SIZE


def test_malformed_jsonl_names_file_and_line(tmp_path):
    cfg = _files_cfg(tmp_path)
    bad = tmp_path / "texts" / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    with pytest.raises(LadderError, match=r"bad\.jsonl:2: malformed JSON"):
        make_source(cfg, 64, 8)
    bad.write_text('{"body": "no text field"}\n')
    with pytest.raises(LadderError, match=r"bad\.jsonl:1: no 'text' field"):
        make_source(cfg, 64, 8)


def test_empty_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    cfg = ml_collections.ConfigDict(dict(source="files", files=str(tmp_path / "empty.jsonl"), cache_dir=str(tmp_path)))
    with pytest.raises(LadderError, match="no documents"):
        make_source(cfg, 16, 2)
    cfg.files = str(tmp_path / "nothing-*.txt")
    with pytest.raises(LadderError, match="matches no"):
        make_source(cfg, 16, 2)
    with pytest.raises(LadderError, match="data.source"):
        make_source(ml_collections.ConfigDict(dict(source="webscale")), 16, 2)


def test_catalog_dataset_not_prepared_is_an_error_not_a_download(tmp_path):
    from ladder.data.tfds_builder import catalog_source

    with pytest.raises(LadderError, match="not prepared"):
        catalog_source("ai2_arc/ARC-Easy", "test", str(tmp_path), try_gcs=False, download=False)
    with pytest.raises(LadderError, match="data_dir"):
        catalog_source("ai2_arc/ARC-Easy", "test", "")


def test_a_local_build_prints_its_own_counts_not_tfds_download_lines(tmp_path, capsys):
    """Before: a fresh build printed tfds's "Downloading and preparing dataset Unknown size (download: Unknown
    size, ...)" and "Dataset ... downloaded and prepared ... Subsequent calls will reuse this data." around the
    builder's own counts line, for a build that downloads nothing."""
    from ladder.data import tfds_builder

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a document with some words in it\n" * 20)
    tfds_builder.prepared(tfds_builder.files_builder(str(tmp_path / "docs"), tmp_path / "tfds", name="tiny"))
    out = capsys.readouterr().out
    assert out.startswith("ladder_files/tiny: train ") and out.count("\n") == 1, out


class _Rows:
    def __init__(self, tag):
        self.tag = tag

    def rows(self, idx):
        idx = np.asarray(idx)
        return {"inputs": np.stack([np.full(4, self.tag * 100000 + i, np.int32) for i in idx]).reshape(len(idx), 4)}


def test_mixture_shares_are_exact_in_expectation_and_pure():
    weights = {"general": 0.7, "legal": 0.2, "code": 0.1}
    mix = MixtureSource({n: _Rows(t) for t, n in enumerate(weights)}, weights, global_batch=12, seed=4)
    counts = np.array([mix.counts(k) for k in range(4000)])
    assert (counts.sum(1) == 12).all()
    assert np.allclose(counts.mean(0) / 12, list(weights.values()), atol=0.003)
    shares = mix.token_shares(4000)
    assert all(abs(shares[n] - w) < 0.003 for n, w in weights.items())
    # No source row is served twice: each source's row indices are strictly increasing across batches.
    seen = {t: [] for t in range(3)}
    for k in range(200):
        for v in mix.batch(k)["inputs"][:, 0]:
            seen[int(v) // 100000].append(int(v) % 100000)
    assert all(len(set(s)) == len(s) for s in seen.values())
    two = [MixtureSource({n: _Rows(t) for t, n in enumerate(weights)}, weights, 12, 4, i, 2).batch(9) for i in range(2)]
    assert np.array_equal(np.concatenate([t["inputs"] for t in two]), mix.batch(9)["inputs"])


def test_sentencepiece_vocab_flows_into_the_config(tmp_path):
    rng = np.random.default_rng(0)
    words = ["ladder", "scaling", "law", "token", "model", "train", "eval", "byte", "piece", "corpus"]
    texts = [" ".join(rng.choice(words, 30)) for _ in range(200)]
    tok = train_sentencepiece(texts, tmp_path / "spm.model", vocab_size=300)
    assert tok.decode(tok.encode("scaling law model")) == "scaling law model"
    cfg = ml_collections.ConfigDict(dict(source="embedded", tokenizer="sentencepiece", spm_model=str(tmp_path / "spm.model")))
    assert pipeline.vocab_size(cfg) == 300
    cfg.spm_model = str(tmp_path / "missing.model")
    with pytest.raises(LadderError, match="data.spm_model: no file at"):
        make_tokenizer(cfg)
