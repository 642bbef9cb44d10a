"""The results table: one row per run x checkpoint x task, as plain CSV (schema: docs/results.md).

The evaluator appends rows, `ladder import` writes them from published ladders, the predictor reads them.
Pure Python + numpy: no JAX here.
"""

from __future__ import annotations

import csv
import io
import itertools
import operator
import os
from pathlib import Path

import numpy as np

from ladder.errors import LadderError, read_utf8, require
from ladder.names import check_names
from ladder.plan.sizes import MAX_COUNT

# Required columns, in file order. `loss` is the task loss in bits per byte of the correct answer.
REQUIRED = ("run", "n", "d", "step", "task", "loss", "acc")
# Optional columns the suite knows; any other column is kept as an extra feature.
OPTIONAL = ("acc_raw", "prob", "lm_loss", "flops", "size", "multiple", "chance")
# Columns read as float64 (blank -> NaN), lm_loss_<domain> included: every number a law reads, the CPT
# columns of docs/specialization.md too, so the laws never re-cast a column themselves.
NUMERIC = {"n", "d", "step", "loss", "acc", "acc_raw", "prob", "lm_loss", "flops", "multiple", "chance",
           "r", "d_cpt", "general_loss", "domain_loss", "k"}
# Columns that must be finite and > 0, and columns that are fractions in [0, 1] where present.
POSITIVE = ("n", "d", "loss")
BLANK_OK = ("loss",)
POSITIVE_IF_GIVEN = ("lm_loss", "flops")  # optional: blank (NaN) allowed, but > 0 and finite where given
FRACTIONS = ("acc", "acc_raw", "prob", "chance")
# n and d above MAX_COUNT (1e30, shared with the planner's and predict's --target parser) are a unit error, not a
# model (10^10 x beyond any run): 6ND would overflow float64 at ~1e154 each and the laws' log-space fits
# degenerate long before (docs/results.md).


def append_rows(path: str | os.PathLike, rows: list[dict]) -> int:
    """Append rows (dicts with at least REQUIRED keys) to a CSV, writing the header if the file is new; returns
    how many rows already there were replaced.

    Columns are fixed by the first write; later rows may not add columns (an error, not silent loss). A row
    with the (run, step, task) of a new one is replaced by it: an evaluation run again (after a kill that came
    once its rows had landed, so the user could not tell) leaves the table it would have left once, instead of
    duplicates that every later read refuses.
    """
    if not rows:
        return 0
    from ladder import storage

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with storage.editing(path):  # two evaluators adding to one table never drop each other's rows
        return _append_rows(path, rows)


def _row_key(row: dict) -> tuple:
    try:
        step = float(row.get("step"))
    except (TypeError, ValueError):
        step = row.get("step")
    return str(row.get("run")), step, str(row.get("task"))


def _append_rows(path: Path, rows: list[dict]) -> int:
    from ladder import storage

    old = path.read_bytes().decode("utf-8") if path.exists() and path.stat().st_size > 0 else ""
    buf = io.StringIO(newline="")
    replaced = 0
    if old:
        header = next(csv.reader(io.StringIO(old, newline="")))
        old += "" if old.endswith("\n") else "\r\n"  # a hand-edited table without its last line end
        new_keys = {_row_key(r) for r in rows}
        records = list(csv.reader(io.StringIO(old, newline="")))[1:]
        kept = [rec for rec in records if _row_key(dict(zip(header, rec))) not in new_keys]
        replaced = len(records) - len(kept)
        if replaced:  # rewritten without them (every other row's fields as they were)
            out = io.StringIO(newline="")
            csv.writer(out).writerows([header, *kept])
            old = out.getvalue()
    else:
        header = header_for(rows)
        csv.writer(buf).writerow(header)
    _check_columns(path, rows, header)
    w = csv.DictWriter(buf, fieldnames=header)
    for r in rows:
        w.writerow({k: r.get(k, "") for k in header})
    # The table is rewritten whole and atomically (storage.write_bytes), not appended to: a kill mid-write
    # leaves the old table, never a torn last row (tables are small: one row per task per evaluation).
    storage.write_text(path, old + buf.getvalue())
    return replaced


def header_for(rows: list[dict]) -> list[str]:
    """File column order: REQUIRED, then the OPTIONAL columns present, then any others sorted."""
    keys = set().union(*(r.keys() for r in rows))
    return list(REQUIRED) + [k for k in OPTIONAL if k in keys] + sorted(keys - set(REQUIRED) - set(OPTIONAL))


def _check_columns(path, rows: list[dict], header: list[str]) -> None:
    for r in rows:
        missing = [k for k in REQUIRED if k not in r]
        extra = [k for k in r if k not in header]
        if missing or extra:
            raise LadderError(f"{path}: a row for run {r.get('run')!r} lacks the columns {missing} or adds "
                              f"{extra}, not in the table's header {header}; write to a new table (eval -o), or "
                              "use the table these rows came from")


def write_table(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write a whole results table (replacing any file there) atomically: readers see the old table or
    the new one, never half of one (`ladder collect`, `ladder import`)."""
    from ladder import storage

    header = header_for(rows)
    _check_columns(path, rows, header)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in header})
    storage.write_text(path, buf.getvalue())


def read_table(path: str | os.PathLike, *, validate: bool = False) -> dict[str, np.ndarray]:
    """Read a results CSV into columns: numeric columns as float64 (blank -> NaN), others as str arrays.

    With validate=True the table is checked by `validate_table` (a LadderError naming run and column).
    """
    path = os.fsdecode(path) if isinstance(path, bytes) else path
    require(isinstance(path, (str, os.PathLike)), "results", f"{path!r} is not a path",
            "pass the CSV's path (str or pathlib.Path); an open file: pass its .name")
    path = Path(path)
    require(path.is_file(), "results", f"{path} {'is not a file' if path.exists() else 'not found'}",
            "pass the CSV written by the evaluator, `ladder collect` or `ladder import`")
    header, fields = _split_csv(read_utf8(path, "results"), path)
    if not fields or not len(fields[0]):
        if validate:
            raise LadderError(f"{path}: results table has no rows; evaluate some checkpoints or import a ladder")
        return {}
    cols = _columns(header, fields, str(path))
    return validate_table(cols, str(path)) if validate else cols


def csv_records(text: str, path, what: str = "results") -> tuple[list[str], list[dict]]:
    """(header, one dict per row) of CSV text, for readers that map columns by name (the importers); what the
    csv module refuses (a field over its 128 KiB limit, a NUL inside quotes) is one LadderError naming the file
    and line, not a _csv.Error traceback."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        return list(reader.fieldnames or []), list(reader)
    except csv.Error as e:
        raise LadderError(f"{what}: {path} after line {reader.line_num}: {e}; fix the CSV (is it the right file?)") from None


def _split_csv(text: str, path) -> tuple[list[str], list[list[str]]]:
    """(header, one list of field strings per column); blank lines are skipped.

    A table without quotes or lone carriage returns (all this suite writes) is split with str.split, which on 10^6
    rows is ~10x faster than csv.reader and gives the same fields; anything else goes through the csv module.
    Blank or repeated column names and a row whose field count differs from the header's are LadderErrors.
    """
    quoted = '"' in text
    if not quoted and "\r" in text and text.count("\r") == text.count("\r\n"):
        text = text.replace("\r\n", "\n")  # csv.writer's line ends
    lines = text.split("\n")
    if quoted or "\r" in text or not lines[0]:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # a quote left open is an error, as in sheet.py
        try:
            header = next(reader, None)
            rows = [r for r in reader if r]
        except csv.Error as e:
            why = 'a quote (") is never closed' if "end of data" in str(e) else str(e)
            raise LadderError(f"results: {path} line {reader.line_num}: {why}; fix the CSV") from None
        if header is None:
            return [], []
        counts = [len(r) for r in rows]
    else:
        header, rows = lines[0].split(","), list(filter(None, lines[1:]))
        counts = None
    require(len(set(header)) == len(header) and all(header), "results", f"{path}: the header {header} has "
            "blank or repeated column names", "name every column once")
    if counts is None:
        commas = list(map(operator.methodcaller("count", ","), rows))
        if set(commas) - {len(header) - 1}:
            counts = [c + 1 for c in commas]
    bad = None if counts is None else next((i for i, c in enumerate(counts) if c != len(header)), None)
    require(bad is None, "results", f"{path}: data row {0 if bad is None else bad + 1} has "
            f"{0 if bad is None else counts[bad]} fields, the header has {len(header)}",
            "fix that row (a stray comma, or a row from another table)")
    if not rows:
        return header, [[] for _ in header]
    if isinstance(rows[0], list):
        return header, [list(c) for c in zip(*rows)]
    flat = ",".join(rows).split(",")
    return header, [flat[j :: len(header)] for j in range(len(header))]


def columns(rows: list[dict], source: str = "results table") -> dict[str, np.ndarray]:
    """CSV rows (dicts of strings, from any reader: a local file, gs://) as columns: numeric columns as
    float64 (blank -> NaN), others as str arrays; a LadderError names the row that is not a number."""
    header = list(rows[0]) if rows else []
    return _columns(header, [[r.get(k) for r in rows] for k in header], source)


def _columns(header: list[str], fields: list[list], source: str) -> dict[str, np.ndarray]:
    """Columns from per-column field lists: numbers parsed by float() in one map per column (10^6 rows in
    about a second; blank -> NaN), the rest as str arrays."""
    cols = {}
    runs = fields[header.index("run")] if "run" in header else None
    for k, vals in zip(header, fields):
        if k in NUMERIC or k.startswith("lm_loss_"):
            cols[k] = _numbers(k, vals, runs, source)
        else:
            cols[k] = np.array(["" if v is None else v for v in vals] if None in vals else vals, dtype=str)
    return cols


def _numbers(name: str, vals: list, runs, source: str) -> np.ndarray:
    try:
        return np.array(list(map(float, vals)), dtype=np.float64)
    except (TypeError, ValueError):  # blanks (-> NaN) or a field that is not a number
        pass
    blank = np.array([v is None or not v.strip() for v in vals], dtype=bool)
    out = np.full(len(vals), np.nan)
    try:
        out[~blank] = list(map(float, itertools.compress(vals, ~blank)))
    except ValueError:
        bad = next(i for i, v in enumerate(vals) if not _is_float(v))
        run = runs[bad] if runs is not None else None
        raise LadderError(f"{source}: column {name!r} row {bad + 2} (run {run!r}) has "
                          f"{vals[bad]!r}, not a number; fix that row") from None
    return out


def last_rows(run: np.ndarray, step: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Indices (ascending) of each run's row at its largest step among the rows `keep` selects (default all):
    the final checkpoint of every run. On ties the first row wins. One sort, no loop over rows."""
    rows = np.arange(len(run)) if keep is None else np.flatnonzero(keep)
    if not len(rows):
        return np.zeros(0, dtype=int)
    _, code = np.unique(np.asarray(run)[rows], return_inverse=True)
    order = np.lexsort((rows, -np.asarray(step, dtype=np.float64)[rows], code))  # run, step down, row up
    first = np.concatenate([[True], code[order][1:] != code[order][:-1]])
    return np.sort(rows[order[first]]).astype(int)


def _is_float(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return v is None or not v.strip()


def validate_table(cols: dict[str, np.ndarray], source: str = "results table") -> dict[str, np.ndarray]:
    """Check a column dict against the schema; raise a LadderError naming the column and the first bad run.

    Required columns present; n, d finite and positive, loss positive or blank; step finite and >= 0; acc (and acc_raw, prob,
    chance) in [0, 1]; each (run, step, task) at most once (a table appended twice, or two evaluations of
    one checkpoint, would weigh some points twice and silently change every fit).
    Optional numeric columns may be blank (NaN) except where a method needs them (it says so itself).
    The checks run in this order, so a table with several faults is told the same first one every time.
    """
    _require_columns_and_names(cols, source)
    _require_positive(cols, source)
    several = len(cols["run"]) > 1
    if several:
        _, run_code = np.unique(cols["run"], return_inverse=True)
        _require_one_size_per_run(cols, run_code, source)
    _require_whole_steps(cols, source)
    if several:
        _require_one_row_per_point(cols, run_code, source)
    _require_fractions(cols, source)
    return cols


def _first_bad(cols: dict, bad: np.ndarray, values: np.ndarray, with_step: bool = True) -> str:
    """The first row `bad` marks, as "run 'R' (step S, value V)": where the user opens the table to fix it."""
    i = bad.argmax()
    step = f"step {cols['step'][i]:g}, " if with_step else ""
    return f"run {str(cols['run'][i])!r} ({step}value {float(values[i])!r})"


def _require_columns_and_names(cols: dict, source: str) -> None:
    missing = [k for k in REQUIRED if k not in cols]
    separator = next((name for sep, name in (("\t", "tabs"), (";", "semicolons")) if any(sep in k for k in cols)), None)
    require(not missing, source, f"missing required columns {missing} (has {sorted(cols)})",
            f"save it comma-separated (its columns are split by {separator})" if separator else
            f"write at least {', '.join(REQUIRED)} (docs/results.md)")
    for k in ("run", "task"):  # a blank name would silently become one more run (or task) called ""
        blank = np.char.strip(cols[k].astype(str)) == ""
        require(not blank.any(), source, f"column {k!r} is blank in {int(blank.sum())} rows, first data row "
                f"{int(blank.argmax()) + 1}", f"give every row its {k} name")
    for k in ("run", "task", "set"):  # `ARC` and `arc`, NFC and NFD, a trailing space: one rule (ladder/names.py)
        if k in cols:
            check_names(np.unique(cols[k].astype(str)), k, source)


def _require_positive(cols: dict, source: str) -> None:
    """Sizes, token counts and losses > 0 and finite; n and d also plain counts (a unit error shows here)."""
    for k in POSITIVE:
        # the task loss may be blank (an accuracy-only table: the methods that need it say so), never <= 0
        bad = ~(np.isfinite(cols[k]) & (cols[k] > 0)) & ~((k in BLANK_OK) & np.isnan(cols[k]))
        require(not bad.any(), source, f"column {k!r} is NaN or <= 0 in {int(bad.sum())} rows, first in "
                f"{_first_bad(cols, bad, cols[k])}", "drop or fix those rows")
    for k in POSITIVE_IF_GIVEN:  # an LM loss of 0, -3.7 or inf, or negative FLOPs, is a broken cell, not a point
        if k in cols:
            bad = ~np.isnan(cols[k]) & ~(np.isfinite(cols[k]) & (cols[k] > 0))
            require(not bad.any(), source, f"column {k!r} is <= 0 or infinite in {int(bad.sum())} rows, first in "
                    f"{_first_bad(cols, bad, cols[k])}", "fix those cells or leave them blank")
    for k in ("n", "d"):  # counts: below 1 is a unit error too (n in billions: 0.19 for a 190M model)
        bad = (cols[k] > MAX_COUNT) | (cols[k] < 1)
        require(not bad.any(), source, f"column {k!r} is outside [1, {MAX_COUNT:g}] in {int(bad.sum())} rows, first "
                f"in {_first_bad(cols, bad, cols[k], with_step=False)}",
                "n is parameters and d tokens, both as plain counts (is the column in another unit?)")


def _require_one_size_per_run(cols: dict, run_code: np.ndarray, source: str) -> None:
    """One run is one model: an N that changes within a run is a typo or two runs under one name."""
    run = cols["run"]
    lo, hi = np.full(run_code.max() + 1, np.inf), np.full(run_code.max() + 1, -np.inf)
    np.minimum.at(lo, run_code, cols["n"])
    np.maximum.at(hi, run_code, cols["n"])
    bad = hi[run_code] > lo[run_code] * (1 + 1e-9)
    first = run_code[bad.argmax()]
    require(not bad.any(), source, f"run {str(run[bad.argmax()])!r} has more than one 'n' ({lo[first]:g} and "
            f"{hi[first]:g})",
            "one run is one model size: fix the typo, or give the two models their own run names")


def _require_whole_steps(cols: dict, source: str) -> None:
    step = cols["step"]
    bad = ~(np.isfinite(step) & (step >= 0))
    require(not bad.any(), source, f"column 'step' is blank, NaN or negative in {int(bad.sum())} rows, first in "
            f"{_first_bad(cols, bad, step, with_step=False)}", "a step is the checkpoint's update count (>= 0)")
    bad = (step != np.round(step)) | (step >= 2.0**53)  # beyond 2^53 two steps can read as one
    require(not bad.any(), source, f"column 'step' is not a whole number below 2^53 in {int(bad.sum())} rows, first "
            f"in {_first_bad(cols, bad, step, with_step=False)}",
            "a step is the checkpoint's update count (a whole number)")


def _require_one_row_per_point(cols: dict, run_code: np.ndarray, source: str) -> None:
    """Each (run, step, task) once: a table appended twice would weigh its points twice in every fit."""
    run, step = cols["run"], cols["step"]
    _, task_code = np.unique(cols["task"], return_inverse=True)
    order = np.lexsort((task_code, step, run_code))
    same = ((run_code[order][1:] == run_code[order][:-1]) & (step[order][1:] == step[order][:-1])
            & (task_code[order][1:] == task_code[order][:-1]))
    if same.any():
        first = order[np.flatnonzero(same)[0]]
        require(False, source, f"{int(same.sum())} rows repeat a (run, step, task) already in the table, first "
                f"run {str(run[first])!r} step {step[first]:g} task {str(cols['task'][first])!r}",
                "keep one row per run, checkpoint and task (was the table appended twice?)")


def _require_fractions(cols: dict, source: str) -> None:
    """Accuracies and probabilities in [0, 1]; a column of percentages is named as such, with the fix."""
    for k in FRACTIONS:
        if k not in cols:
            continue
        v = cols[k]
        bad = np.isnan(v) if k == "acc" else np.zeros(len(v), dtype=bool)
        bad |= (v < 0) | (v > 1)
        require(not bad.any(), source, f"column {k!r} outside [0, 1] in {int(bad.sum())} rows, first in "
                f"{_first_bad(cols, bad, v)}",
                "accuracies and probabilities are fractions, not percentages" + (
                    f" (every {k} here is 0 or in (1, 100]: divide the column by 100, or read the table with `ladder "
                    "import csv`, which does)" if np.all((v == 0) | ((v > 1) & (v <= 100))) else ""))
