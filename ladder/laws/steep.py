"""The steep guard: how far past the ladder a member's accuracy may move, by what the fitted runs show.

A step-2 sigmoid fitted to final points that barely leave chance places its onset by guess: on OLMo cut to one
final checkpoint per run (190M-1B at 1xC), arc_challenge's chain predicted the 3B run at 0.851 against a measured
0.376 (docs/laws.md "Ladders of other shapes"). Nothing in the fitted runs supported a step that large. The
guard is the class rule, for any member and any task: from the fitted runs' final accuracies y against
x = log10(6ND), the steepest slope they show per decade of compute, s (the larger of the OLS slope over all runs
and over the upper half in x), and their scatter about a line, sigma; a prediction at x past the largest fitted
x_top is held within y_top +- (K s (x - x_top) + NOISE sigma), y_top the upper half's line at x_top. K = 2: twice
the steepest slope in view, per decade beyond it (fixed before scoring, docs/laws.md "Session 10").
Inside the ladder (x <= x_top) nothing is clipped: there the fit interpolates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K = 2.0       # allowed slope past the ladder, in units of the steepest slope the fitted runs show
NOISE = 2.0   # plus this many s.d. of the runs' scatter about a line (a flat, noisy task may still move by noise)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of y on x by least squares (closed form: every back-test cell draws two lines)."""
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    slope = float(dx @ (y - ym) / (dx @ dx))
    return slope, float(ym - slope * xm)


@dataclass(frozen=True)
class Envelope:
    """The band a member's accuracy may take past the ladder: y_top +- (K slope (x - x_top) + NOISE sigma)."""

    x_top: float
    y_top: float
    slope: float
    sigma: float

    @classmethod
    def of(cls, n, d, acc) -> "Envelope | None":
        """From the fitted runs' N, final D and final accuracy; None where no line can be drawn (fewer than 3
        runs, or one compute level)."""
        x = np.log10(6.0 * np.asarray(n, dtype=np.float64) * np.asarray(d, dtype=np.float64))
        y = np.asarray(acc, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(x) < 3 or np.ptp(x) <= 0:
            return None
        slope, icpt = _ols(x, y)
        sigma = float(np.sqrt(np.sum((y - slope * x - icpt) ** 2) / max(len(x) - 2, 1)))
        upper = x >= np.median(x)
        x_top = float(x.max())
        if upper.sum() >= 2 and np.ptp(x[upper]) > 0:
            up_slope, up_icpt = _ols(x[upper], y[upper])
            return cls(x_top, up_slope * x_top + up_icpt, max(abs(slope), abs(up_slope)), sigma)
        return cls(x_top, slope * x_top + icpt, abs(slope), sigma)

    def bounds(self, N, D) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) at (N, D): -inf/inf inside the ladder (x <= x_top)."""
        x = np.log10(6.0 * np.asarray(N, dtype=np.float64) * np.asarray(D, dtype=np.float64))
        past = x > self.x_top
        h = K * self.slope * np.maximum(x - self.x_top, 0.0) + NOISE * self.sigma
        return np.where(past, self.y_top - h, -np.inf), np.where(past, self.y_top + h, np.inf)

    def clip(self, acc, N, D) -> np.ndarray:
        lo, hi = self.bounds(N, D)
        return np.clip(acc, lo, hi)


def envelope_of(fit) -> Envelope | None:
    """A TaskFit's envelope, from the runs it was fitted on."""
    return Envelope.of(fit.data.n, fit.data.d, fit.data.acc)


def guarded(fit, acc, N, D) -> np.ndarray:
    """A member's accuracy held within its envelope (unchanged where it has none)."""
    env = envelope_of(fit)
    return np.asarray(acc, dtype=np.float64) if env is None else env.clip(acc, N, D)
