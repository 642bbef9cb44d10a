"""How numbers read in tables and progress lines (no JAX here): one format per kind of number, so a duration
reads the same in `ladder status`, the trainer's progress line and the dry run."""

from __future__ import annotations

import math


def format_duration(seconds: float | None, unknown: str = "-") -> str:
    """A duration for tables and progress lines: 45s, 12m, 3.5h, 2.0d; `unknown` for None, NaN or inf."""
    if seconds is None or not math.isfinite(seconds):
        return unknown
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"
