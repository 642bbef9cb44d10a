"""Embedded corpus size per domain, tokenization throughput, and how well n-gram models do on the tasks.

    .venv/bin/python bench/bench_data.py [--cache-dir DIR] [--spm-vocab 4096] [--skip-ngram]

Prints (1) documents/bytes per domain and split and the build time into a fresh cache, (2) tokenizer
throughput in MB/s (byte-level and SentencePiece trained on the corpus), (3) task accuracy of fixed
1-, 2- and 3-gram byte models fitted on the train split: a task that even a 3-gram solves is too easy, one
where no model beats chance cannot rank model sizes. Timings vary ~1.5x run to run: compare ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ml_collections
import numpy as np

from ladder import eval as E
from ladder import tasks as T
from ladder.data import corpus, pipeline
from ladder.data.tfds_builder import embedded_builder, prepared
from ladder.data.tokenizer import ByteTokenizer, train_sentencepiece


def throughput(tok, texts, repeat=3) -> float:
    n = sum(len(t.encode("utf-8")) for t in texts)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for t in texts:
            tok.encode_array(t)
        best = min(best, time.perf_counter() - start)
    return n / best / 1e6


def ngram_counts(cfg, order, alpha=0.1):
    tok = ByteTokenizer()
    V = tok.vocab_size
    counts = np.full((V ** (order - 1), V), alpha)
    for d in corpus.DOMAINS:
        toks = np.asarray(pipeline.token_cache(cfg, "train", tok, domain=d)[0]).astype(np.int64)
        idx = np.zeros(len(toks) - order + 1, np.int64)
        for back in range(order - 1):
            idx += toks[order - 2 - back : len(toks) - back - 1] * V**back
        np.add.at(counts, (idx, toks[order - 1 :]), 1)
    return counts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cache-dir", default="")
    p.add_argument("--spm-vocab", type=int, default=4096)
    p.add_argument("--skip-ngram", action="store_true")
    args = p.parse_args()
    root = Path(args.cache_dir or tempfile.mkdtemp(prefix="ladder-bench-"))
    cfg = ml_collections.ConfigDict(dict(source="embedded", cache_dir=str(root)))

    print("== embedded corpus (built into", root, ")")
    for d in corpus.DOMAINS:
        start = time.perf_counter()
        b = prepared(embedded_builder(d, root / "tfds"))
        c = b.info.metadata["counts"]
        print(f"{d:6s} " + "  ".join(f"{s} {c[s]['documents']:4d} docs {c[s]['bytes'] / 1e6:6.2f} MB" for s in corpus.SPLITS)
              + f"  build {time.perf_counter() - start:.1f}s  sha256 {b.info.metadata['content_sha256'][:12]}")

    print("== tokenization throughput (train split, best of 3)")
    texts = [t for d in corpus.DOMAINS for t in pipeline.documents(cfg, "train", domain=d)]
    print(f"byte-level: {throughput(ByteTokenizer(), texts):8.1f} MB/s over {sum(map(len, texts)) / 1e6:.1f} M chars")
    start = time.perf_counter()
    spm = train_sentencepiece(texts[::4], root / "bench_spm.model", args.spm_vocab)
    train_s = time.perf_counter() - start
    sample = texts[::8]
    n_bytes = sum(len(t.encode()) for t in sample)
    n_tok = sum(len(spm.encode(t)) for t in sample)
    print(f"sentencepiece (bpe, vocab {spm.vocab_size}, trained on 1/4 of train in {train_s:.1f}s): "
          f"{throughput(spm, sample, repeat=1):6.2f} MB/s, {n_bytes / n_tok:.2f} bytes/token")
    start = time.perf_counter()
    pipeline.token_cache(ml_collections.ConfigDict(dict(source="embedded", cache_dir=str(root / "fresh"))), "train",
                         ByteTokenizer(), domain="code")
    print(f"token cache, code train split, from scratch (build + tokenize): {time.perf_counter() - start:.1f}s")

    if args.skip_ngram:
        return
    print("== embedded tasks vs fixed n-gram byte models (acc = length-normalised; chance 0.25)")
    tasks = T.load_tasks(None, cfg)
    for order in (1, 2, 3):
        fn = E.ngram_logits_fn(ngram_counts(cfg, order), order)
        res = E.evaluate(fn, tasks, ByteTokenizer(), batch_size=64, seq_len=256)
        print(f"{order}-gram: " + "  ".join(f"{r['task']} acc {r['acc']:.3f} raw {r['acc_raw']:.3f} "
                                            f"loss {r['loss']:.2f}" for r in res))


if __name__ == "__main__":
    main()
