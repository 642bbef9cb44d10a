"""Tokenize once into a cache on disk; pack documents into rows that are pure functions of (seed, row).

Token cache: one directory per (dataset, split, tokenizer, content), holding `tokens.npy` (all documents'
ids concatenated, uint16 or uint32) and `offsets.npy` (int64 [n_docs + 1]). Every rung and run that reads
the same data with the same tokenizer memory-maps the same files.

Packing: each document d with ids t_1..t_n becomes a unit of n + 1 positions with
    inputs  = [EOS, t_1, ..., t_n]
    targets = [t_1, ..., t_n, EOS]
(EOS doubles as the start-of-document token, so an input never comes from another document). Epoch e
concatenates the units in a permutation of the documents drawn from (seed, e) and cuts the stream into
rows of L positions; the last row of an epoch is padded (segment id 0). Rows of an epoch are visited in a
second permutation from (seed, e), and global row r is row r mod R of epoch r div R (R rows per epoch).
So every target token of every document appears exactly once per epoch, and row r needs no iterator state.

With segment ids on, each document piece in a row gets its own segment id (1, 2, ...) and positions
restart at 0, so attention never crosses a document; with them off, a row is one segment (classic packing).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ladder.data import RowSource
from ladder.errors import LadderError
from ladder import storage


CACHE_FORMAT = "ladder-token-cache-v2"  # meta.json's "format": entries of another format are rebuilt
CACHE_FILES = ("tokens.npy", "offsets.npy")
PROGRESS_S = 10.0  # seconds between progress lines while a cache entry is tokenized


def build_token_cache(texts, tokenizer, directory: Path, *, describe: str = "", log=None) -> Path:
    """Tokenize an iterable of texts into directory/{tokens,offsets}.npy (atomically); skip if a verified
    entry is there (`cache_ready`: a damaged one is set aside with one printed line and built again).

    Texts that tokenize to nothing are skipped; an input with no tokens at all is a LadderError.
    Two processes building one entry at once both tokenize; each builds in its own temp directory and renames
    it into place, the first rename wins and the other's is discarded, so readers only ever see a whole entry.
    """
    directory = Path(directory)
    if cache_ready(directory, log=log):
        return directory
    start = last = time.perf_counter()
    pieces, lengths, n_bytes = [], [], 0
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    for text in texts:
        ids = tokenizer.encode_array(text)
        if ids.size:
            pieces.append(ids)
            lengths.append(ids.size)
            n_bytes += len(text.encode("utf-8")) if isinstance(text, str) else len(text)
        if time.perf_counter() - last >= PROGRESS_S:  # a large corpus (or SentencePiece): no word for minutes
            last = time.perf_counter()
            say(f"tokenizing {describe or directory}: {len(lengths):,} documents, {sum(lengths):,} tokens, "
                f"{n_bytes / 1e6:,.1f} MB in {last - start:.0f}s")
    if not pieces:
        raise LadderError(f"{describe or directory}: no document has any tokens; the corpus is empty")
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    tokens = np.concatenate(pieces).astype(dtype, copy=False)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    directory.parent.mkdir(parents=True, exist_ok=True)
    _sweep_leftovers(directory.parent)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    try:
        np.save(tmp / "tokens.npy", tokens)
        np.save(tmp / "offsets.npy", offsets)
        seconds = time.perf_counter() - start
        meta = {"format": CACHE_FORMAT, "documents": len(lengths), "tokens": int(tokens.size), "bytes": n_bytes,
                "vocab_size": tokenizer.vocab_size, "tokenizer": tokenizer.fingerprint(), "seconds": round(seconds, 3),
                "describe": describe, "files": {name: _file_sum(tmp / name) for name in CACHE_FILES}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))  # inside the temp dir: renamed whole below
        os.replace(tmp, directory)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if not cache_ready(directory, log=log):  # not another process's entry that won the race: a real failure
            raise storage.named_error(e, directory) from None  # named: the cache entry, not a temp file
    return directory


def _sweep_leftovers(parent: Path, age_s: float = 3600.0) -> None:
    """Delete temp and set-aside entries (`.tmp-*`, `.stale-*`) left in `parent` by a build or a set-aside
    killed part way, once they are an hour old: a live build's temp directory is made only after its
    tokenizing is done and lives for the few seconds of its writes, so an hour-old one is dead."""
    now = time.time()
    for p in list(parent.glob(".tmp-*")) + list(parent.glob(".stale-*")):
        try:
            if now - p.lstat().st_mtime > age_s:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            pass  # another process swept it first, or it is not ours to remove


def _file_sum(path: Path) -> dict:
    """{"size", "sha256"} of a cache file, read in 16 MB pieces (sha256 runs at ~1.4 GB/s on one core)."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def cache_problem(directory: Path) -> str:
    """'' when `directory` is a whole, verified token-cache entry of this format, else what is wrong with it
    (absent entries give 'absent'). Every file's size and sha256 are checked against meta.json on every
    read, since a cache shared by runs outlives any one of them (a disk error, a copy cut short, a hand edit)."""
    directory = Path(directory)
    if not directory.exists():
        return "absent"
    if not directory.is_dir():
        return "not a directory"
    try:
        meta = json.loads((directory / "meta.json").read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return "meta.json is missing (an unfinished or foreign entry)"
    except (OSError, ValueError) as e:
        return f"meta.json is unreadable ({type(e).__name__})"
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        found = meta.get("format", "none") if isinstance(meta, dict) else "none"
        return f"format {found!r}, not {CACHE_FORMAT!r} (written by another version of ladder)"
    for name in CACHE_FILES:
        want = meta.get("files", {}).get(name) if isinstance(meta.get("files"), dict) else None
        try:
            got = _file_sum(directory / name)
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or type(e).__name__})"
        if not isinstance(want, dict) or "size" not in want or "sha256" not in want:
            return f"meta.json has no size and sha256 for {name}"
        if got["size"] != want["size"]:
            return f"{name} is {got['size']:,} bytes, meta.json says {want['size']:,} (truncated or overwritten)"
        if got["sha256"] != want["sha256"]:
            return f"{name}'s sha256 differs from meta.json's (its bytes changed after it was written)"
    return ""


def cache_ready(directory: Path, log=None) -> bool:
    """True when a verified entry is at `directory`. A damaged one is moved aside (renamed, then deleted)
    with one line on stderr (or `log`), so the caller builds it again; two processes finding it damaged at
    once both build, and the entry that lands is whole."""
    problem = cache_problem(directory)
    if not problem:
        return True
    if problem == "absent":
        return False
    set_aside(directory, problem, "token cache", "token cache", log)
    return False


def set_aside(entry: Path, problem: str, what: str, field: str, log=None) -> None:
    """Say why `entry` (a damaged cache entry: a token cache, a built dataset) cannot be used, rename it to a
    unique `.stale-*` sibling and delete that, so the caller builds it again. Renamed first, atomically, so
    the path is free at once for the entry a concurrent build lands whole; one that is already gone was set
    aside by another process. `field` starts the error when it cannot be moved."""
    (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
        f"ladder: {what} {entry} cannot be used ({problem}); rebuilding it")
    aside = entry.parent / f".stale-{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.replace(entry, aside)
    except FileNotFoundError:  # another process set it aside first
        return
    except OSError as e:
        raise LadderError(f"{field}: {entry} cannot be used ({problem}) nor moved aside "
                          f"({e.strerror}); delete it (or point LADDER_CACHE at a writable directory)") from None
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def load_token_cache(directory: Path, *, verified: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A verified entry's (tokens memmap, offsets); a damaged one is a LadderError naming it (callers that can
    rebuild go through build_token_cache, which checks first: verified=True skips a second pass)."""
    directory = Path(directory)
    problem = "" if verified else cache_problem(directory)
    if problem:
        raise LadderError(f"token cache: {directory} cannot be used ({problem}); delete it and run again to "
                          "rebuild it")
    return np.load(directory / "tokens.npy", mmap_mode="r"), np.load(directory / "offsets.npy")


class PackedSource(RowSource):
    """Rows of packed documents; `rows(r)` and `batch(k)` are pure functions of (seed, indices)."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, global_batch: int, *, seed: int,
                 eos_id: int, pad_id: int, segment_ids: bool = True, process_index: int = 0, process_count: int = 1,
                 name: str = ""):
        if len(offsets) < 2 or offsets[-1] == 0:
            raise LadderError(f"{name or 'data'}: the corpus has no tokens; check data.source and its inputs")
        if global_batch % process_count:
            raise LadderError(f"batch: global batch {global_batch} is not divisible by {process_count} processes; "
                              "choose a multiple of the process count")
        self.tokens, self.offsets = tokens, np.asarray(offsets, np.int64)
        self.seq_len, self.global_batch, self.seed = seq_len, global_batch, seed
        self.eos_id, self.pad_id, self.use_segments = eos_id, pad_id, segment_ids
        self.process_index, self.process_count = process_index, process_count
        self.local_batch = global_batch // process_count
        self.name = name
        self.unit = np.diff(self.offsets) + 1  # tokens + EOS
        self.tokens_per_epoch = int(self.unit.sum())
        self.rows_per_epoch = math.ceil(self.tokens_per_epoch / seq_len)
        self._epochs: dict[int, tuple] = {}

    def _epoch(self, e: int):
        """(document order, unit start offsets, row order) of epoch e; the last two epochs are kept."""
        if e in self._epochs:
            return self._epochs[e]
        rng = np.random.default_rng([self.seed, e, 0x5EED])
        doc_order = rng.permutation(len(self.unit))
        starts = np.zeros(len(doc_order) + 1, np.int64)
        np.cumsum(self.unit[doc_order], out=starts[1:])
        row_order = rng.permutation(self.rows_per_epoch)
        if len(self._epochs) >= 2:
            self._epochs.pop(next(iter(self._epochs)))
        self._epochs[e] = (doc_order, starts, row_order)
        return self._epochs[e]

    def rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Global rows (any int indices >= 0) as int32 arrays [len(rows), L]."""
        rows = np.asarray(rows, np.int64)
        L = self.seq_len
        out = {k: np.empty((len(rows), L), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
        epochs, within = np.divmod(rows, self.rows_per_epoch)
        for e in np.unique(epochs):
            sel = np.nonzero(epochs == e)[0]
            doc_order, starts, row_order = self._epoch(int(e))
            s = row_order[within[sel]] * L  # stream offset of each row
            p = s[:, None] + np.arange(L)[None, :]
            valid = p < self.tokens_per_epoch
            m = np.searchsorted(starts, np.minimum(p, self.tokens_per_epoch - 1), side="right") - 1
            o = p - starts[m]  # offset inside the document's unit
            doc = doc_order[m]
            base, n = self.offsets[doc], self.unit[doc] - 1
            targets = np.where(o < n, self.tokens[base + np.minimum(o, n - 1)], self.eos_id)
            # Both branches are read for every position: past the epoch's end (padding, valid False) o runs
            # beyond the last unit, so the index is clamped into the document (a one-document corpus, or the
            # last document in token order drawn last, read past the token array: IndexError mid-run).
            inputs = np.where(o == 0, self.eos_id, self.tokens[base + np.clip(o - 1, 0, np.maximum(n - 1, 0))])
            if self.use_segments:
                segments = m - m[:, :1] + 1
                positions = p - np.maximum(starts[m], s[:, None])
            else:
                segments = np.ones_like(m)
                positions = np.broadcast_to(np.arange(L), p.shape)
            out["inputs"][sel] = np.where(valid, inputs, self.pad_id)
            out["targets"][sel] = np.where(valid, targets, self.pad_id)
            out["segment_ids"][sel] = np.where(valid, segments, 0)
            out["positions"][sel] = np.where(valid, positions, 0)
        return out
