"""`data.source=tokens`: rows of a token store (`ladder data tokenize`), each host reading only its rows.

The store is one stream of documents, each followed by EOS. Row i of an epoch is the stream's targets
[iL, (i+1)L) with inputs shifted by one (the stream's position -1 reads as EOS), so a row is one contiguous
read of L + 1 tokens and a host reads exactly its rows' bytes: 1/process_count of the batch. Rows are
visited in a permutation drawn from (seed, epoch) by a keyed Feistel network (a bijection computed per
index: no permutation table, so memory does not grow with the store). Global row r is row r mod R of
epoch r div R and batch k holds global rows [kB, (k+1)B): batch k is a pure function of (seed, k).

Segments: a document starts where the input is EOS, so segment ids and positions come from the row itself
(no index read at train time). The last row of an epoch is padded (segment 0, masked out of the loss).
"""

from __future__ import annotations

import math

import numpy as np

from ladder.data import RowSource
from ladder.data import token_store as ts
from ladder.errors import LadderError

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _round(x: np.ndarray, key: np.uint64, mask: np.uint64) -> np.ndarray:
    """splitmix64 of (x + key), cut to the half width: the Feistel round function."""
    z = (x + key) * _MIX[0]
    z = (z ^ (z >> np.uint64(30))) * _MIX[1]
    z = (z ^ (z >> np.uint64(27))) * _MIX[2]
    return (z ^ (z >> np.uint64(31))) & mask


def feistel_permute(i: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A bijection of [0, n) applied to indices i: 4 Feistel rounds over 2h bits, cycle-walking back into [0, n)."""
    half = max(1, math.ceil(math.ceil(math.log2(max(n, 2))) / 2))
    h, mask = np.uint64(half), np.uint64((1 << half) - 1)
    x = np.asarray(i, np.uint64).copy()
    todo = np.ones(x.shape, bool)
    while todo.any():  # the domain 2^2h < 4n: a few walks at most
        left, right = x[todo] >> h, x[todo] & mask
        for key in keys:
            left, right = right, left ^ _round(right, np.uint64(key), mask)
        x[todo] = (left << h) | right
        todo = x >= np.uint64(n)
    return x.astype(np.int64)


class TokenStoreSource(RowSource):
    """Rows of a complete token store; `rows(r)` and `batch(k)` are pure functions of (seed, indices)."""

    def __init__(self, path, seq_len: int, global_batch: int, *, seed: int, vocab_size: int,
                 tokenizer_fingerprint: str | None = None, tokenizer_spec: str = "", segment_ids: bool = True,
                 process_index: int = 0, process_count: int = 1):
        self.manifest = ts.read_manifest(path)
        tok = self.manifest["tokenizer"]
        where = f"{ts.store_path(path) / ts.MANIFEST}"
        if tokenizer_fingerprint is not None and tokenizer_fingerprint != tok["fingerprint"]:
            raise LadderError(f"data.tokenizer: {tokenizer_spec!r} (fingerprint {tokenizer_fingerprint}) is not the "
                              f"tokenizer {where} was made with ({tok['spec']!r}, {tok['fingerprint']}); set "
                              f"data.tokenizer={tok['spec']} so training and task scoring use the same tokenizer")
        if self.manifest["max_id"] >= vocab_size:
            raise LadderError(f"model.vocab_size: {where} holds token id {self.manifest['max_id']} >= the model's "
                              f"vocabulary {vocab_size}; set model.vocab_size={tok['vocab_size']} (or 0: from the data)")
        if not self.manifest["tokens"]:  # rows of an empty stream: the row permutation would never end
            raise LadderError(f"data.path: {where} holds no tokens; tokenize a source with documents")
        ts.check_shards(path, self.manifest)
        if global_batch % process_count:
            raise LadderError(f"batch: global batch {global_batch} is not divisible by {process_count} processes")
        self.reader = ts.ShardReader(path, self.manifest)
        self.seq_len, self.global_batch, self.seed, self.vocab_size = seq_len, global_batch, seed, vocab_size
        self.eos_id, self.pad_id, self.use_segments = tok["eos_id"], tok["pad_id"], segment_ids
        self.process_index, self.process_count = process_index, process_count
        self.local_batch = global_batch // process_count
        self.tokens_per_epoch = self.reader.total
        self.rows_per_epoch = math.ceil(self.tokens_per_epoch / seq_len)
        self.name = str(path)

    def _keys(self, e: int) -> np.ndarray:
        return np.random.default_rng([self.seed, e, 0x70CE5]).integers(0, 1 << 63, size=4, dtype=np.uint64)

    def stream_rows(self, rows: np.ndarray) -> np.ndarray:
        """The epoch-local row (stream offset / L) each global row reads."""
        rows = np.asarray(rows, np.int64)
        epochs, within = np.divmod(rows, self.rows_per_epoch)
        out = np.empty_like(rows)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = feistel_permute(within[sel], self.rows_per_epoch, self._keys(int(e)))
        return out

    def rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Global rows as int32 arrays [len(rows), L]: one contiguous read of L + 1 tokens per row."""
        L, T = self.seq_len, self.tokens_per_epoch
        rows = np.asarray(rows, np.int64)
        window = np.full((len(rows), L + 1), self.pad_id, np.int32)
        stream_rows = self.stream_rows(rows)
        for n, i in enumerate(stream_rows):
            lo, hi = int(i) * L - 1, min((int(i) + 1) * L, T)
            if lo < 0:
                window[n, 0] = self.eos_id
                self.reader.read_into(window[n, 1 : 1 + hi], 0, hi)
            else:
                self.reader.read_into(window[n, : hi - lo], lo, hi)
        if int(window.max(initial=0)) >= self.vocab_size:
            self._bad_id(rows, window)
        # Views, not copies: the trainer's host-to-device transfer copies them once anyway.
        inputs, targets = window[:, :-1], window[:, 1:]
        if self.use_segments:
            segments, positions = self._segments(inputs)
        else:
            segments = np.ones(inputs.shape, np.int32)
            positions = np.ascontiguousarray(np.broadcast_to(np.arange(L, dtype=np.int32), inputs.shape))
        out = {"inputs": inputs, "targets": targets, "segment_ids": segments, "positions": positions}
        valid = (stream_rows * L)[:, None] + np.arange(L)[None, :] < T
        if not valid.all():  # only the epoch's last row is short: pad it
            for key, fill in (("inputs", self.pad_id), ("targets", self.pad_id), ("segment_ids", 0), ("positions", 0)):
                out[key] = np.where(valid, out[key], np.int32(fill))
        return out

    def _segments(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment ids (1, 2, ... within a row) and positions (0 at each document start) from the document
        starts alone (EOS inputs are ~1/1000 of tokens): a few passes over the starts, not over the tokens."""
        n, L = inputs.shape
        new = inputs == self.eos_id
        new[:, 0] = True
        starts = np.flatnonzero(new)
        lengths = np.diff(starts, append=n * L)
        first_in_row = np.searchsorted(starts, starts // L * L)
        segment_of_start = (np.arange(len(starts)) - first_in_row + 1).astype(np.int32)
        segments = np.repeat(segment_of_start, lengths).reshape(n, L)
        positions = (np.arange(n * L, dtype=np.int64) - np.repeat(starts, lengths)).astype(np.int32).reshape(n, L)
        return segments, positions

    def _bad_id(self, rows, window) -> None:
        n, j = np.argwhere(window >= self.vocab_size)[0]
        pos = int(self.stream_rows(rows[n : n + 1])[0]) * self.seq_len - 1 + int(j)
        shard = int(np.searchsorted(self.reader.starts, pos, side="right")) - 1
        raise LadderError(f"data.path: {self.reader.files[shard]} holds token id {int(window[n, j])} >= vocabulary "
                          f"{self.vocab_size} (at token {pos - int(self.reader.starts[shard])}); the shard is damaged "
                          "or from another tokenizer: tokenize the store again")
