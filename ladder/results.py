"""The results table: one row per run x checkpoint x task, as plain CSV (schema: docs/results.md).

The evaluator appends rows, `ladder import` writes them from published ladders, the predictor reads them.
Pure Python + numpy: no JAX here.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

# Required columns, in file order. `loss` is the task loss in bits per byte of the correct answer.
REQUIRED = ("run", "n", "d", "step", "task", "loss", "acc")
# Optional columns the suite knows; any other column is kept as an extra feature.
OPTIONAL = ("acc_raw", "prob", "lm_loss", "flops", "size", "multiple")
NUMERIC = {"n", "d", "step", "loss", "acc", "acc_raw", "prob", "lm_loss", "flops", "multiple"}


def append_rows(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append rows (dicts with at least REQUIRED keys) to a CSV, writing the header if the file is new.

    Columns are fixed by the first write; later rows may not add columns (an error, not silent loss).
    """
    if not rows:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        with open(path, newline="") as f:
            header = next(csv.reader(f))
    else:
        keys = set().union(*(r.keys() for r in rows))
        header = list(REQUIRED) + [k for k in OPTIONAL if k in keys] + sorted(keys - set(REQUIRED) - set(OPTIONAL))
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(header)
    for r in rows:
        missing = [k for k in REQUIRED if k not in r]
        extra = [k for k in r if k not in header]
        if missing or extra:
            raise ValueError(f"{path}: row {r} lacks {missing} or adds columns {extra} not in header {header}")
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        for r in rows:
            w.writerow({k: r.get(k, "") for k in header})
        f.flush()
        os.fsync(f.fileno())


def read_table(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a results CSV into columns: numeric columns as float64 (blank -> NaN), others as str arrays."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    cols = {}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        if k in NUMERIC:
            cols[k] = np.array([float(v) if v not in ("", None) else np.nan for v in vals], dtype=np.float64)
        else:
            cols[k] = np.array(vals, dtype=str)
    return cols
