"""`ladder data tokenize`: any text source -> a sharded token store, in parallel, resumable (docs/data.md).

The job is a fixed plan of units (a range of records, a byte range of a JSONL file, a group of text files),
one shard per unit, the unit list a pure function of the source and the flags. Worker processes tokenize
units into shard files; a shard counts as done only when its marker is written after its files. A killed
job rerun with the same arguments redoes exactly the shards without a marker, so no document is lost or
duplicated and the result is byte-identical to an uninterrupted run. The manifest is written last.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import sys
import time

import numpy as np

from ladder import storage
from ladder.data import token_store as ts
from ladder.errors import LadderError

DEFAULT_SHARD_DOCS = 65_536  # records per shard for embedded / tfds sources
DEFAULT_SHARD_MB = 256  # text per shard for JSONL / text files
ENCODE_BATCH = 256


# ------------------------------------------------------------------ sources
def source_spec(source: str, *, split: str = "train", domains: str = "prose,code,legal", text_field: str = "text",
                data_dir: str = "", cache_dir: str = "") -> dict:
    """What SOURCE names: `embedded`, a files directory/glob/list (.txt/.md/.jsonl), or a tfds catalog name."""
    from ladder.data import local_files

    if not source:
        raise LadderError("SOURCE: empty; give embedded, a files glob or JSONL, or a tfds catalog name")
    if source == "embedded":
        from ladder.data.pipeline import as_list

        return {"kind": "embedded", "domains": as_list(domains, "domains"), "split": split, "cache_dir": cache_dir}
    looks_like_files = any(c in source for c in "*?[,") or os.path.exists(os.path.expanduser(source)) or \
        source.endswith((".txt", ".md", ".jsonl", ".json"))
    if looks_like_files:
        paths = local_files.expand_paths(source)
        return {"kind": "files", "paths": [[p, os.path.getsize(p)] for p in paths], "split": split,
                "text_field": text_field}
    if not data_dir:
        raise LadderError(f"--data-dir: {source!r} is not a file, glob or 'embedded', so it is read as a tfds catalog "
                          "name; give --data-dir where it is prepared (array_record)")
    return {"kind": "tfds", "name": source, "split": split, "data_dir": data_dir, "text_field": text_field}


_OPEN: dict = {}  # per process: opened record sources, by key


def _records(spec: dict, key: str):
    """A random-access record source (tfds array_record) for one embedded domain or the catalog split."""
    if key not in _OPEN:
        from ladder.data import tfds_builder

        if spec["kind"] == "embedded":
            import ml_collections

            root = tfds_builder.cache_dir(ml_collections.ConfigDict({"cache_dir": spec["cache_dir"]})) / "tfds"
            builder = tfds_builder.prepared(tfds_builder.embedded_builder(key, root))
            _OPEN[key] = tfds_builder.read_split(builder, spec["split"])
        else:
            _OPEN[key] = tfds_builder.catalog_source(spec["name"], spec["split"], spec["data_dir"])
    return _OPEN[key]


def plan_units(spec: dict, shard_docs: int, shard_mb: int) -> list[dict]:
    """The job's units, in store order. Each carries `size` (records or bytes) for progress and ETA."""
    units = []
    if spec["kind"] in ("embedded", "tfds"):
        keys = spec["domains"] if spec["kind"] == "embedded" else [spec["name"]]
        _check_shard_count(sum(math.ceil(len(_records(spec, k)) / shard_docs) for k in keys), "--shard-docs",
                           shard_docs)
        for key in keys:
            n = len(_records(spec, key))
            units += [{"kind": "records", "key": key, "start": a, "stop": min(a + shard_docs, n),
                       "size": min(a + shard_docs, n) - a} for a in range(0, n, shard_docs)]
        return units
    chunk = max(1, int(shard_mb * (1 << 20)))
    if chunk < 1000:  # a shard smaller than most documents: one-byte shards of JSONL, each its own files
        raise LadderError(f"--shard-mb: {shard_mb} is {chunk} bytes of text per shard, below 1 KB (0.001); raise "
                          "it (64-256 MB is usual)")
    _check_shard_count(sum(math.ceil(size / chunk) if path.endswith((".jsonl", ".json")) else 1
                           for path, size in spec["paths"]), "--shard-mb", shard_mb)
    group, group_size = [], 0
    for path, size in spec["paths"]:
        if path.endswith((".jsonl", ".json")):
            units += [{"kind": "jsonl", "path": path, "start": a, "stop": min(a + chunk, size), "size": min(a + chunk, size) - a}
                      for a in range(0, size, chunk)]
            continue
        if group and group_size + size > chunk:
            units.append({"kind": "text", "paths": group, "size": group_size})
            group, group_size = [], 0
        group.append(path)
        group_size += size
    if group:
        units.append({"kind": "text", "paths": group, "size": group_size})
    return units


MAX_SHARDS = 100_000  # a store's shard files: each is ~3 files and one unit of work


def _check_shard_count(n: int, flag: str, value) -> None:
    """Before any unit is planned: `--shard-mb 0.000001` (a typo) cut a 32 KB JSONL file into 32,400 one-byte
    shards (76,514 files, 2 minutes, then killed); on a 10 GB corpus the plan alone would not fit in memory."""
    if n > MAX_SHARDS:
        raise LadderError(f"{flag}: {value} cuts this source into {n:,} shards, more than {MAX_SHARDS:,}; raise "
                          f"{flag} (shards of 64-256 MB of text, or 65,536 records, are the usual)")


def _jsonl_chunk(path: str, start: int, stop: int, field: str):
    """Texts of the lines that START in [start, stop): adjacent chunks share no line and miss none."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()  # the rest of the line that started before us (or just its newline)
        while f.tell() < stop:
            offset, line = f.tell(), f.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise LadderError(f"{path} (byte {offset}): malformed JSON ({e}); fix or remove the line") from None
            except RecursionError:  # 100,000 `[`: a traceback from the parser (in a worker) before
                raise LadderError(f"{path} (byte {offset}): malformed JSON (nested too deeply to read); fix or "
                                  "remove the line") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise LadderError(f"{path} (byte {offset}): no string field {field!r}; pass --text-field")
            yield record[field]


def _texts(spec: dict, unit: dict):
    from ladder.data.corpus import split_of
    from ladder.data.local_files import read_text_file

    if unit["kind"] == "records":
        records, field = _records(spec, unit["key"]), spec.get("text_field", "text")
        for i in range(unit["start"], unit["stop"]):
            r = records[i]
            value = r[field if spec["kind"] == "tfds" else "text"] if isinstance(r, dict) else r
            yield value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
        return
    texts = (_jsonl_chunk(unit["path"], unit["start"], unit["stop"], spec["text_field"]) if unit["kind"] == "jsonl"
             else (read_text_file(p) for p in unit["paths"]))  # non-UTF-8 / NUL: one line, as source=files
    for text in texts:  # local files are split by document hash, as data.source=files splits them
        if text.strip() and (spec["split"] == "all" or split_of(text) == spec["split"]):
            yield text


# ------------------------------------------------------------------ one shard
_WORKER: dict = {}


def _init_worker(tokenizer_spec: str, spec: dict, out: str, pool: bool = False) -> None:
    from ladder.data import tokenizer as tokenizer_lib

    if pool:  # parallel across processes: the libraries' own threads would oversubscribe the CPUs
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        tokenizer_lib.THREADS = 1
    tokenizer_from_spec = tokenizer_lib.tokenizer_from_spec

    _WORKER.update(tokenizer=tokenizer_from_spec(tokenizer_spec, "--tokenizer"), spec=spec, out=ts.store_path(out))


def _tokenize_unit(args) -> dict:
    """Tokenize one unit into shard i: tokens file, index file, then the marker (the commit point)."""
    i, unit = args
    tok, root = _WORKER["tokenizer"], _WORKER["out"]
    dtype = np.dtype(ts_dtype(tok.vocab_size)).newbyteorder("<")
    eos = np.array([tok.eos_id], dtype)
    pieces, lengths, n_bytes, batch = [], [], 0, []

    def flush():
        nonlocal n_bytes
        for text, ids in zip(batch, tok.encode_batch(batch)):
            if ids.size:
                pieces.extend((ids.astype(dtype, copy=False), eos))
                lengths.append(ids.size + 1)
                n_bytes += len(text.encode("utf-8"))
        batch.clear()

    for text in _texts(_WORKER["spec"], unit):
        batch.append(text)
        if len(batch) >= ENCODE_BATCH:
            flush()
    flush()
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
    index = np.zeros(len(lengths) + 1, np.dtype("<i8"))
    np.cumsum(lengths, out=index[1:])
    name = ts.shard_name(i)
    data, idx = tokens.tobytes(), index.tobytes()
    storage.write_bytes(root / f"{name}.tokens", data)
    storage.write_bytes(root / f"{name}.index", idx)
    marker = {"tokens_file": f"{name}.tokens", "index_file": f"{name}.index", "documents": len(lengths),
              "tokens": int(tokens.size), "bytes": n_bytes, "sha256": ts.sha256_bytes(data),
              "index_sha256": ts.sha256_bytes(idx), "max_id": int(tokens.max()) if tokens.size else -1}
    storage.write_bytes(root / f"{name}.json", json.dumps(marker).encode())
    return dict(marker, shard=i, size=unit["size"])


def ts_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


# ------------------------------------------------------------------ the job
def tokenize(source: str, tokenizer_spec: str, out: str, *, workers: int = 1, split: str = "train",
             domains: str = "prose,code,legal", text_field: str = "text", data_dir: str = "", cache_dir: str = "",
             shard_docs: int = DEFAULT_SHARD_DOCS, shard_mb: float = DEFAULT_SHARD_MB, overwrite: bool = False,
             log=None) -> dict:
    """Tokenize SOURCE into the store at `out`; resume a killed run of the same job; return the manifest."""
    from ladder.data.tokenizer import tokenizer_from_spec

    from ladder import gcs

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    gcs.require_access(out, "--out")
    tok = tokenizer_from_spec(tokenizer_spec, "--tokenizer")
    spec = source_spec(source, split=split, domains=domains, text_field=text_field, data_dir=data_dir,
                       cache_dir=cache_dir)
    units = plan_units(spec, shard_docs, shard_mb)
    if not units:
        raise LadderError(f"SOURCE: {source!r} ({split}) holds no documents; check the source and --split")
    plan = {"format": ts.FORMAT, "source": spec, "tokenizer": {"spec": str(tokenizer_spec), "fingerprint": tok.fingerprint()},
            "units": units}
    root = ts.store_path(out)
    with _only_writer(root):
        return _tokenize(root, plan, overwrite, units, tokenizer_spec, spec, tok, source, workers, log)


def _tokenize(root, plan, overwrite, units, tokenizer_spec, spec, tok, source, workers, log) -> dict:
    _claim(root, plan, overwrite)
    done = {}
    for i in range(len(units)):
        marker = ts.read_json(root / f"{ts.shard_name(i)}.json")
        if marker is not None:
            done[i] = dict(marker, shard=i, size=units[i]["size"])
    for stale in root.glob(".tmp-*"):  # pieces of a shard a killed run was writing
        stale.unlink()
    todo = [(i, u) for i, u in enumerate(units) if i not in done]
    if done:
        log(f"tokenize: resuming {root}: {len(done)}/{len(units)} shards already done")
    _run(todo, done, units, tokenizer_spec, spec, str(root), workers, log)
    return _write_manifest(root, plan, tok, [done[i] for i in range(len(units))], source)


@contextlib.contextmanager
def _only_writer(root):
    """One tokenize per local store at a time: a second one would delete the first's shards in flight (its
    clean-up of temp pieces, or --overwrite). A non-blocking flock on the store directory itself, released
    when the holder exits or dies; gs:// stores have no lock (run one job per store there)."""
    if not ts.is_local(root):
        yield
        return
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(root), os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LadderError(f"--out: {root} is being written by another `ladder data tokenize` right now; wait for "
                              "it to finish (a rerun then resumes or confirms it), or choose another --out") from None
        except OSError:
            pass  # a filesystem without flock: as before, one job per store is the caller's to keep
        yield
    finally:
        os.close(fd)


def _claim(root, plan: dict, overwrite: bool) -> None:
    """Refuse to write into a directory that holds anything but this same job, unless --overwrite."""
    existing = ts.read_json(root / ts.PLAN) if root.exists() else None
    if root.exists() and any(True for _ in root.iterdir()):
        if overwrite:  # the contents, not the directory: its lock (_only_writer) stays held
            for child in list(root.iterdir()):
                child.rmtree() if child.is_dir() else child.unlink()
        elif existing is None:
            raise LadderError(f"--out: {root} is not empty and holds no token store; choose a new directory or "
                              "pass --overwrite")
        elif existing != json.loads(json.dumps(plan)):
            raise LadderError(f"--out: {root} holds a tokenize of another source, tokenizer or shard size; choose "
                              "a new directory or pass --overwrite")
        else:
            return
    root.mkdir(parents=True, exist_ok=True)
    storage.write_bytes(root / ts.PLAN, json.dumps(plan, indent=1).encode())


def _run(todo, done, units, tokenizer_spec, spec, out, workers, log) -> None:
    total_size = sum(u["size"] for u in units)
    size_done = sum(d["size"] for d in done.values())
    start, last, session = time.perf_counter(), 0.0, {"tokens": 0, "bytes": 0, "size": 0}
    unit_name = "records" if spec["kind"] != "files" else "bytes"

    def report(result, final=False):
        nonlocal last
        session["tokens"] += result["tokens"]
        session["bytes"] += result["bytes"]
        session["size"] += result["size"]
        now = time.perf_counter() - start
        if not final and now - last < 1.0:
            return
        last = now
        frac = (size_done + session["size"]) / max(total_size, 1)
        rate = session["size"] / max(now, 1e-9)
        eta = (total_size - size_done - session["size"]) / rate if rate else float("inf")
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        log(f"tokenize [{bar}] {len(done)}/{len(units)} shards, {frac:.1%} of {unit_name}, "
            f"{session['tokens'] / now / 1e6:.2f}M tokens/s, {session['bytes'] / now / 1e6:.2f} MB/s, "
            f"ETA {_duration(eta)}")

    if not todo:
        return
    if workers <= 1:
        _init_worker(tokenizer_spec, spec, out)
        results = map(_tokenize_unit, todo)
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (tokenizer_spec, spec, out, True))
        results = pool.imap_unordered(_tokenize_unit, todo)
    try:
        for n, result in enumerate(results, 1):
            done[result["shard"]] = result
            report(result, final=n == len(todo))
    finally:
        if workers > 1:
            pool.terminate()
            pool.join()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _write_manifest(root, plan, tok, shards: list[dict], source: str) -> dict:
    import hashlib

    kept = [s for s in shards if s["tokens"]]
    if not kept:
        raise LadderError(f"SOURCE: {source!r} has no document with any tokens; the source is empty")
    digest = hashlib.sha256()
    for s in kept:
        digest.update(bytes.fromhex(s["sha256"]))
    keys = ("tokens_file", "index_file", "documents", "tokens", "bytes", "sha256", "index_sha256", "max_id")
    manifest = {
        "format": ts.FORMAT,
        "tokenizer": {"spec": plan["tokenizer"]["spec"], "fingerprint": tok.fingerprint(), "vocab_size": tok.vocab_size,
                      "eos_id": tok.eos_id, "bos_id": tok.bos_id, "pad_id": tok.pad_id},
        "dtype": ts_dtype(tok.vocab_size),
        "source": plan["source"],
        "documents": sum(s["documents"] for s in kept),
        "tokens": sum(s["tokens"] for s in kept),
        "text_bytes": sum(s["bytes"] for s in kept),
        "max_id": max(s["max_id"] for s in kept),
        "content_sha256": digest.hexdigest(),
        "shards": [{k: s[k] for k in keys} for s in kept],
    }
    storage.write_bytes(root / ts.MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest
