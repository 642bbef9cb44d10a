"""Weighted mixtures of row sources, deterministic and exact in expectation.

Batch k of B rows gives source i either floor(B w_i) or that plus one rows: the remainder rows are handed
out by systematic sampling over the fractional parts frac(B w_i) from a uniform start drawn from (seed, k),
so source i's expected row count is exactly B w_i. Source i reads its own rows
[k * ceil(B w_i), k * ceil(B w_i) + count) (a row it skips is one of its pre-shuffled rows, so skipping is
just subsampling), and the B rows of a batch are put in an order drawn from (seed, k). Everything is a
pure function of (seed, k), so resuming at any batch needs no state.
"""

from __future__ import annotations

import math

import numpy as np

from ladder.errors import LadderError


class MixtureSource:
    """Rows drawn from named sources (each with `.rows(indices)`) in proportions `weights` (summing to 1)."""

    def __init__(self, sources: dict, weights: dict, global_batch: int, seed: int,
                 process_index: int = 0, process_count: int = 1):
        if set(sources) != set(weights) or not sources:
            raise LadderError(f"data.weights: names {sorted(weights)} do not match the sources {sorted(sources)}")
        w = np.array([float(weights[n]) for n in sources])
        if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
            raise LadderError(f"data.weights: {dict(weights)} must be non-negative with a positive sum")
        if global_batch % process_count:
            raise LadderError(f"batch: global batch {global_batch} is not divisible by {process_count} processes")
        self.names = list(sources)
        self.sources = [sources[n] for n in self.names]
        self.weights = w / w.sum()
        self.global_batch, self.seed = global_batch, seed
        self.process_index, self.local_batch = process_index, global_batch // process_count
        self.capacity = [math.ceil(global_batch * wi - 1e-9) for wi in self.weights]

    def counts(self, k: int) -> np.ndarray:
        """Rows of global batch k per source (sums to the global batch; mean B * w_i exactly)."""
        target = self.global_batch * self.weights
        base = np.floor(target + 1e-9).astype(np.int64)
        frac = np.clip(target - base, 0.0, None)
        extra = self.global_batch - int(base.sum())
        if extra > 0:
            u = np.random.default_rng([self.seed, k, 0x313]).random()
            points = u + np.arange(extra)  # one point per unit of the cumulative fractional mass
            edges = np.concatenate([[0.0], np.cumsum(frac)])
            edges[-1] = extra  # guard rounding: the fractions sum to `extra` exactly in exact arithmetic
            hit = np.searchsorted(edges, points, side="right") - 1
            base += np.bincount(hit, minlength=len(base))
        return base

    def assignment(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For every row slot of global batch k: (source index, that source's row index)."""
        counts = self.counts(k)
        src = np.repeat(np.arange(len(counts)), counts)
        local = np.concatenate([k * c + np.arange(n) for c, n in zip(self.capacity, counts)]) if len(src) else src
        order = np.random.default_rng([self.seed, k, 0x0DE]).permutation(self.global_batch)
        return src[order], local[order]

    def batch(self, k: int) -> dict[str, np.ndarray]:
        src, local = self.assignment(k)
        lo = self.process_index * self.local_batch
        src, local = src[lo : lo + self.local_batch], local[lo : lo + self.local_batch]
        out = None
        for i in np.unique(src):
            sel = np.nonzero(src == i)[0]
            part = self.sources[i].rows(local[sel])
            if out is None:
                out = {key: np.empty((self.local_batch,) + v.shape[1:], v.dtype) for key, v in part.items()}
            for key, v in part.items():
                out[key][sel] = v
        return out

    def token_shares(self, n_batches: int = 1000) -> dict[str, float]:
        """Realised share of rows (each L tokens; padding only in an epoch's last row) over batches [0, n)."""
        total = sum(self.counts(k) for k in range(n_batches))
        return {n: float(c) / float(total.sum()) for n, c in zip(self.names, total)}
