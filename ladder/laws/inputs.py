"""What a notebook may hand the predictor, read as meant or refused with one LadderError naming the argument.

The CLI checks its options before `predict` sees them; a notebook calls `ladder.laws.predict.predict` directly,
with whatever it has at hand: a path instead of the read table, a list of row dicts (csv.DictReader, a JSON
export), a dict of lists, numpy values, a task name instead of a list of them. Before, each of those ended in
a TypeError, KeyError or IndexError deep in the fitting code, or worse: a task name was taken letter by
letter ("task 'a' is not in the table") and a NaN or negative target was fitted to a NaN prediction.
Everything a table can be is brought to the one form the laws read (`ladder.results.read_table(path,
validate=True)`: a dict of numpy columns) and checked against the same schema (docs/results.md).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping

import numpy as np

from ladder.errors import LadderError, require
from ladder.plan.sizes import MAX_COUNT, require_flops_per_token, require_tokens_per_parameter
from ladder.results import NUMERIC, REQUIRED, columns, read_table, validate_table

TABLE_FORMS = ("the table as ladder.results.read_table(path, validate=True) returns it (a dict of numpy "
               "columns), its path, or a list of row dicts")


def results_columns(cols, what: str = "cols") -> dict[str, np.ndarray]:
    """The results table as the laws read it. A dict of numpy columns with every required column passes
    unchanged (it is what read_table returns: checking it again would cost a pass over 10^6 rows on every
    call); a path is read and validated; row dicts, a dict of lists or of pandas Series are converted with
    read_table's rules (numbers as float64, blanks as NaN) and validated."""
    if isinstance(cols, (str, os.PathLike)):
        return read_table(cols, validate=True)
    if hasattr(cols, "to_dict") and hasattr(cols, "columns"):  # a pandas DataFrame, without importing pandas
        cols = cols.to_dict("list")
    if isinstance(cols, (list, tuple)):
        require(all(isinstance(r, Mapping) for r in cols), what, "is a list, but not of row dicts",
                f"pass {TABLE_FORMS}")
        require(bool(cols), what, "has no rows", "evaluate some checkpoints or import a ladder")
        return validate_table(columns([{str(k): _cell(v) for k, v in r.items()} for r in cols]), what)
    require(isinstance(cols, Mapping), what, f"is a {type(cols).__name__}", f"pass {TABLE_FORMS}")
    if all(isinstance(v, np.ndarray) for v in cols.values()):
        missing = [k for k in REQUIRED if k not in cols]
        require(not missing, what, f"has no column {', '.join(map(repr, missing))} (has {sorted(map(str, cols))})",
                "read the table with ladder.results.read_table(path, validate=True) (docs/results.md)")
        lengths = {len(v) for v in cols.values()}
        require(len(lengths) == 1, what, f"has columns of different lengths {sorted(lengths)}",
                "give every column one value per row")
        if all(cols[k].dtype.kind == "f" for k in REQUIRED if k in NUMERIC):
            return dict(cols)
    fields = {str(k): list(v.tolist() if hasattr(v, "tolist") else v) for k, v in cols.items()}
    lengths = {len(v) for v in fields.values()}
    require(len(lengths) <= 1, what, f"has columns of different lengths {sorted(lengths)}",
            "give every column one value per row")
    n = lengths.pop() if lengths else 0
    rows = [{k: _cell(v[i]) for k, v in fields.items()} for i in range(n)]
    require(bool(rows), what, "has no rows", "evaluate some checkpoints or import a ladder")
    return validate_table(columns(rows), what)


def _cell(v) -> str | None:
    """One cell as read_table reads it: text (float() parses numbers back exactly: repr round-trips), None
    and NaN as a blank."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(v)  # not a number: the schema names the column (True would otherwise read as 1.0)
    return repr(float(v)) if isinstance(v, numbers.Real) else str(v)


def target_values(targets, what: str = "targets") -> dict[str, tuple[float, ...]]:
    """{name: (N, D)} or {name: (N, D, FLOPs per token)} with every value a positive finite number (int,
    float, numpy scalar, or text float() reads). Before, a NaN, zero or negative target was fitted to NaN."""
    require(isinstance(targets, Mapping), what, f"is a {type(targets).__name__}",
            "pass {name: (N, D)} such as {'7B': (6.89e9, 3.95e12)}, or {name: (N, D, FLOPs per token)}")
    require(bool(targets), what, "no targets given", "pass at least one {name: (N, D)}")
    out = {}
    for name, vals in targets.items():
        where = f"{what}[{name!r}]"
        # a name is a row label of the printed table and a JSON key: a line break split the table's row in two
        require(isinstance(name, str) and name.strip() != "" and name.isprintable(), where, "is not a name of "
                "printable characters (blank, or a line break or tab in it)", "name the target e.g. 7B or my-2b")
        require(not isinstance(vals, (str, bytes, Mapping)) and hasattr(vals, "__len__") and len(vals) in (2, 3),
                where, f"is {vals!r}", "give (N, D) or (N, D, FLOPs per token): parameters and tokens as plain "
                "counts, e.g. (6.89e9, 3.95e12)")
        nums = []
        for label, v in zip(("N", "D", "F"), vals):
            try:
                x = float(v) if not isinstance(v, (bool, np.bool_)) else float("nan")
            except (TypeError, ValueError):
                raise LadderError(f"{where}: {label} = {v!r} is not a number; give plain counts, e.g. 6.89e9 "
                                  "(not '7B')") from None
            require(math.isfinite(x) and x > 0, where, f"{label} = {v!r} is not a positive finite number",
                    "give parameters N and tokens D as plain counts > 0")
            require(x <= MAX_COUNT, where, f"{label} = {v!r} is above {MAX_COUNT:.0e}, beyond any model or corpus",
                    "check the exponent")
            nums.append(x)
        require_tokens_per_parameter(name, nums[0], nums[1], field=what)
        if len(nums) == 3:
            require_flops_per_token(name, nums[0], nums[2], field=what)
        out[name] = tuple(nums)
    return out


def name_list(value, what: str) -> list[str] | None:
    """A list of names (tasks, runs): None stays None; one string is a comma list, as on the command line
    (before, `tasks="mmlu"` was read letter by letter); an empty list is refused (it would fit nothing)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    else:
        require(not isinstance(value, Mapping) and hasattr(value, "__iter__"), what,
                f"is a {type(value).__name__}", "pass a list of names (or one comma-separated string)")
        value = [str(v) for v in value]
    require(bool(value), what, "is empty", "name some, or pass None for all")
    return value


def whole(value, what: str, low: int) -> int:
    """An integer option (n_bootstrap, seed): int or numpy integer >= low; a float, text or bool is refused
    (before: a TypeError inside numpy's random generator)."""
    ok = isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))
    require(ok and value >= low, what, f"is {value!r}", f"give a whole number >= {low}")
    return int(value)


def workers(value, what: str = "workers") -> int | None:
    """None (the cores available) or an integer; 0 and negatives keep their old meaning (the default, serial)."""
    if value is None:
        return None
    ok = isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))
    require(ok, what, f"is {value!r}", "give a whole number of processes, or None for the cores available")
    return int(value)


def method_name(value, what: str = "method") -> str:
    require(isinstance(value, str), what, f"is {value!r}", "give one method name, e.g. 'ensemble' or 'paper'")
    return value


def positive(value, what: str) -> float:
    """A count or budget from Python (N, D, FLOPs): a positive finite number (int, float, numpy scalar); text
    and bools are refused (before: allocate_split(fit, "1e20") was a TypeError inside the allocator)."""
    ok = isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
    require(ok and math.isfinite(value) and value > 0, what, f"is {value!r}", "give a positive finite number")
    return float(value)
