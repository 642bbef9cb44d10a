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

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ladder.data import RowSource
from ladder.errors import LadderError


def build_token_cache(texts, tokenizer, directory: Path, *, describe: str = "") -> Path:
    """Tokenize an iterable of texts into directory/{tokens,offsets}.npy (atomically); skip if present.

    Texts that tokenize to nothing are skipped; an input with no tokens at all is a LadderError.
    """
    directory = Path(directory)
    if (directory / "meta.json").is_file():
        return directory
    start = time.perf_counter()
    pieces, lengths, n_bytes = [], [], 0
    for text in texts:
        ids = tokenizer.encode_array(text)
        if ids.size:
            pieces.append(ids)
            lengths.append(ids.size)
            n_bytes += len(text.encode("utf-8")) if isinstance(text, str) else len(text)
    if not pieces:
        raise LadderError(f"{describe or directory}: no document has any tokens; the corpus is empty")
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    tokens = np.concatenate(pieces).astype(dtype, copy=False)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".tmp-"))
    np.save(tmp / "tokens.npy", tokens)
    np.save(tmp / "offsets.npy", offsets)
    seconds = time.perf_counter() - start
    meta = {"documents": len(lengths), "tokens": int(tokens.size), "bytes": n_bytes, "vocab_size": tokenizer.vocab_size,
            "tokenizer": tokenizer.fingerprint(), "seconds": round(seconds, 3), "describe": describe}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        os.replace(tmp, directory)
    except OSError:  # another process won the race: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_token_cache(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    directory = Path(directory)
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
            inputs = np.where(o == 0, self.eos_id, self.tokens[base + np.maximum(o - 1, 0)])
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
