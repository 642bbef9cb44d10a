"""Training data: sources that serve batch k as a pure function of (seed, k), so resume needs no state.

`make_source(cfg, ...)` is the one entry point the trainer uses. Every source returns host-local rows:
    {"inputs": int32[b, L], "targets": int32[b, L], "segment_ids": int32[b, L], "positions": int32[b, L]}
with b = global_batch // process_count, rows [process_index*b, (process_index+1)*b) of the global batch.
segment_ids are 1.. per packed document (0 = padding, masked out of the loss); positions restart at 0 at
each document boundary when documents are packed with segment ids on.
"""

from __future__ import annotations

import numpy as np


class RowSource:
    """A source defined by one stream of rows: `rows(r)` is a pure function of (seed, row indices r) and batch k
    is rows [k B, (k + 1) B) of the stream (B = global_batch), of which this host serves its local_batch rows.
    Packed documents (ladder.data.packing) and token stores (ladder.data.token_source) are such streams; a
    mixture (ladder.data.mixture) draws from their `rows`."""

    global_batch: int
    process_index: int
    local_batch: int

    def rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def local_rows(self, k: int) -> np.ndarray:
        """The global row indices of this host's share of batch k."""
        lo = k * self.global_batch + self.process_index * self.local_batch
        return np.arange(lo, lo + self.local_batch)

    def batch(self, k: int) -> dict[str, np.ndarray]:
        return self.rows(self.local_rows(k))


class SyntheticSource:
    """Uniform random tokens: for tests and benchmarks of the trainer alone (no tokenizer, no files)."""

    def __init__(self, vocab_size: int, seq_len: int, global_batch: int, seed: int,
                 process_index: int = 0, process_count: int = 1):
        self.vocab_size, self.seq_len, self.global_batch, self.seed = vocab_size, seq_len, global_batch, seed
        self.process_index, self.process_count = process_index, process_count
        self.local_batch = global_batch // process_count

    def batch(self, k: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, k])
        tokens = rng.integers(0, self.vocab_size, size=(self.global_batch, self.seq_len + 1), dtype=np.int32)
        lo = self.process_index * self.local_batch
        tokens = tokens[lo : lo + self.local_batch]
        shape = (self.local_batch, self.seq_len)
        return {
            "inputs": tokens[:, :-1],
            "targets": tokens[:, 1:],
            "segment_ids": np.ones(shape, np.int32),
            "positions": np.broadcast_to(np.arange(self.seq_len, dtype=np.int32), shape).copy(),
        }


def make_source(data_cfg, seq_len: int, global_batch: int, process_index: int = 0, process_count: int = 1):
    """Build the source that `data_cfg.source` names. Only 'synthetic' lives here; the rest in submodules."""
    kind = data_cfg.source
    if kind == "synthetic":
        return SyntheticSource(data_cfg.vocab_size, seq_len, global_batch, data_cfg.seed, process_index, process_count)
    from ladder.data import pipeline  # corpus / tfds / mixture sources (issue: data and tasks)

    return pipeline.make_source(data_cfg, seq_len, global_batch, process_index, process_count)
