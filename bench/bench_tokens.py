"""Token stores: tokenize throughput, and what the loader serves per host (docs/data.md, "Throughput").

    .venv/bin/python bench/bench_tokens.py [--work DIR] [--text-mb 8] [--store-gb 2] [--batches 150]

(1) `ladder data tokenize` of --text-mb MB of the embedded corpus's train split (prose, code, legal as
JSONL) with byte, SentencePiece (8k BPE) and a 50k-vocab byte-level BPE tokenizer.json, 1 and 2 workers:
MB/s of text and tokens/s, wall clock including worker start. (2) The loader for the 190M rung's shape
(global batch 128 x 4096, 4 simulated hosts, each in its own process, one after another) from synthetic
stores of --store-gb/2 and --store-gb GB (uint32 ids, vocabulary 100,278 as dolma2): tokens/s served per
host, peak RSS growth while serving, bytes read per host against one host reading the whole batch.
The stores are freshly written, so reads come from the page cache (warm): cold reads add the device's or
bucket's latency, and the bytes-read figure says how much that is. Timings vary ~1.5x run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOCAB, L, GLOBAL_BATCH, HOSTS = 100_278, 4096, 128, 4
SHARD_TOKENS = 32 << 20  # 128 MB of uint32 a shard


def corpus_jsonl(path: Path, mb: float) -> int:
    import ml_collections

    from ladder.data import pipeline

    cfg = ml_collections.ConfigDict(dict(source="embedded"))
    docs = {d: pipeline.documents(cfg, "train", domain=d) for d in ("prose", "code", "legal")}
    n, budget = 0, int(mb * 1e6)
    with open(path, "w") as f:
        for i in range(max(len(v) for v in docs.values())):  # interleaved, so every prefix mixes the domains
            for d in docs.values():
                if i < len(d) and n < budget:
                    f.write(json.dumps({"text": d[i]}) + "\n")
                    n += len(d[i].encode())
    return n


def tokenize_throughput(work: Path, text_mb: float) -> list[dict]:
    from ladder.data.tokenize import tokenize
    from ladder.data.tokenizer import train_bpe, train_sentencepiece

    src = work / "text.jsonl"
    n = corpus_jsonl(src, text_mb)
    texts = [json.loads(line)["text"] for line in open(src)]
    corpus_jsonl(work / "all.jsonl", 1e9)  # the BPE learns from the whole train split: 50k merges need ~8 MB
    t0 = time.perf_counter()
    spm = train_sentencepiece(texts[: max(1, len(texts) // 4)], work / "spm8k.model", 8192)
    t1 = time.perf_counter()
    bpe = train_bpe((json.loads(line)["text"] for line in open(work / "all.jsonl")), work / "bpe50k" / "tokenizer.json",
                    50_000)
    t2 = time.perf_counter()
    print(f"text {n / 1e6:.1f} MB; trained SentencePiece 8k in {t1 - t0:.0f}s, BPE {bpe.vocab_size} in {t2 - t1:.0f}s",
          flush=True)
    rows = []
    for name, spec in (("byte", "byte"), ("sentencepiece-8k", spm.path), ("tokenizer.json-50k", bpe.path)):
        for workers in (1, 2):
            out = work / f"store-{name}-{workers}"
            start, cpu = time.perf_counter(), _cpu()
            m = tokenize(str(src), str(spec), str(out), workers=workers, split="all", shard_mb=0.5, overwrite=True,
                         log=lambda line: None)
            s, cpu = time.perf_counter() - start, _cpu() - cpu
            rows.append(dict(tokenizer=name, workers=workers, seconds=round(s, 2), mb_s=round(m["text_bytes"] / s / 1e6, 2),
                             tokens_s=round(m["tokens"] / s), cpu_s=round(cpu, 1),
                             mb_per_cpu_s=round(m["text_bytes"] / cpu / 1e6, 2),
                             bytes_per_token=round(m["text_bytes"] / m["tokens"], 2),
                             load=round(os.getloadavg()[0], 1)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the tokenize workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def synthetic_store(root: Path, n_shards: int, reuse: Path | None = None) -> Path:
    """Random ids < VOCAB with an EOS (100,257, as dolma2) every ~1,000 tokens; manifest as tokenize writes it."""
    from ladder.data import token_store as ts

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shards = []
    for i in range(n_shards):
        f = root / f"{ts.shard_name(i)}.tokens"
        if reuse is not None:
            os.link(reuse / f.name, f)
        else:
            ids = rng.integers(0, VOCAB, SHARD_TOKENS, dtype=np.uint32)
            ids[rng.random(SHARD_TOKENS) < 1e-3] = 100_257
            ids.astype("<u4").tofile(f)
        shards.append({"tokens_file": f.name, "index_file": "", "documents": 0, "tokens": SHARD_TOKENS, "bytes": 0,
                       "sha256": "", "index_sha256": "", "max_id": VOCAB - 1})
    manifest = {"format": ts.FORMAT, "tokenizer": {"spec": "synthetic", "fingerprint": "synthetic", "vocab_size": VOCAB,
                "eos_id": 100_257, "bos_id": -1, "pad_id": 100_277}, "dtype": "uint32", "source": {"kind": "synthetic"},
                "documents": 0, "tokens": SHARD_TOKENS * n_shards, "text_bytes": 0, "max_id": VOCAB - 1,
                "content_sha256": "", "shards": shards}
    (root / ts.MANIFEST).write_text(json.dumps(manifest))
    return root


def serve(store: str, host: int, hosts: int, batches: int) -> dict:
    """One simulated host: build the source, serve `batches` batches; tokens/s, RSS growth, bytes read."""
    from ladder.data.token_source import TokenStoreSource

    page = os.sysconf("SC_PAGE_SIZE")
    rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page  # noqa: E731 (resident now)
    rss0 = rss()
    src = TokenStoreSource(store, L, GLOBAL_BATCH, seed=0, vocab_size=VOCAB, process_index=host, process_count=hosts)
    src.batch(0)
    src.reader.bytes_read = 0
    peak, start, cpu = 0, time.perf_counter(), time.process_time()
    for k in range(1, batches + 1):
        batch = src.batch(k)
        peak = max(peak, rss())
        del batch
    s, cpu = time.perf_counter() - start, time.process_time() - cpu
    tokens = batches * src.local_batch * L
    return dict(host=host, hosts=hosts, tokens_s=round(tokens / s), tokens_per_cpu_s=round(tokens / cpu),
                load=round(os.getloadavg()[0], 1),
                rss_growth_mb=round((peak - rss0) / 2**20, 1), bytes_read_per_batch=src.reader.bytes_read // batches)


def loader(work: Path, store_gb: float, batches: int) -> list[dict]:
    n_big = max(2, round(store_gb * 2**30 / (SHARD_TOKENS * 4)))  # the half store needs a shard
    big = work / f"tokens-{n_big}"
    if not (big / "manifest.json").exists():
        start = time.perf_counter()
        synthetic_store(big, n_big)
        print(f"wrote a {n_big * SHARD_TOKENS * 4 / 2**30:.1f} GiB store in {time.perf_counter() - start:.0f}s", flush=True)
    half = work / f"tokens-{n_big // 2}"
    if not (half / "manifest.json").exists():
        synthetic_store(half, n_big // 2, reuse=big)
    rows = []
    for store in (half, big):
        gib = (n_big // 2 if store == half else n_big) * SHARD_TOKENS * 4 / 2**30
        for host, hosts in [(h, HOSTS) for h in range(HOSTS)] + [(0, 1)]:
            cmd = [sys.executable, __file__, "--serve", str(store), "--host", str(host), "--hosts", str(hosts),
                   "--batches", str(batches if hosts > 1 else max(1, batches // 4))]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=str(
                Path(__file__).resolve().parents[1])))
            rows.append(dict(json.loads(out.stdout.strip().splitlines()[-1]), store_gib=round(gib, 2)))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="")
    p.add_argument("--text-mb", type=float, default=8)
    p.add_argument("--store-gb", type=float, default=2)
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--skip-tokenize", action="store_true")
    p.add_argument("--skip-loader", action="store_true")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--host", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--hosts", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        print(json.dumps(serve(args.serve, args.host, args.hosts, args.batches)))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-tokens-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}", flush=True)
    if not args.skip_tokenize:
        tokenize_throughput(work, args.text_mb)
    if not args.skip_loader:
        loader(work, args.store_gb, args.batches)


if __name__ == "__main__":
    main()
