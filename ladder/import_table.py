"""`ladder import csv FILE --map ...`: any published ladder's table as a results table (docs/laws.md, "Any
published ladder in").

A table exported from a paper, W&B or a spreadsheet names its columns its own way, writes counts as `1.3B`,
accuracies as fractions or percentages, and may hold seeds or several training sets. The mapping names the
columns; everything that would make a fit silently wrong (a percentage read as a fraction, two runs merged
under one name, a token budget written at every checkpoint, tokens per parameter taken for tokens) is either
read as meant with a note or refused with one line naming the column and the fix.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

from ladder import import_checks as checks
from ladder.errors import LadderError, parse_json, read_utf8, require
from ladder.sheet import Sheet

CSV_FIELDS = ("run", "n", "d", "step", "task", "acc", "loss", "lm_loss", "flops", "chance", "tpp", "set")
TEXT_FIELDS = ("run", "task", "set")
# what `*` stands for in columns of an accuracy's spread, not a task (lm-eval's acc_stderr, W&B's __MIN/__MAX)
SPREAD = re.compile(r"(^|[_\-/ ,.])(stderr|std|sem|se|err|ci|ci_lo\w*|ci_hi\w*)$|__(min|max)$", re.IGNORECASE)
NAME_PARTS = re.compile(r"[-_ /]")  # what separates the parts of a run name (data, size, seed)
_CELLS: dict = {}  # parsed object cells by their text (a metrics column repeats few distinct objects per row)


def parse_mapping(spec: str) -> dict[str, str]:
    """`run=model,n=params,...` or a file of `field=column` lines (or a JSON object) -> {field: column}.

    A value may be a column name, a pattern with one `*` over columns (a wide table: the `*` part is the
    task), or a constant (`chance=0.25`, `task=mmlu`, `step=0`); `run` may join columns with `+`
    (`run=data+size`: run names `DATA-SIZE`, one per combination). From Python the mapping may also be a
    dict {field: column} (checked the same way; a number is a constant)."""
    if isinstance(spec, Mapping):
        bad = next((k for k, v in spec.items() if not isinstance(v, (str, int, float)) or isinstance(v, bool)), None)
        require(bad is None, "--map", f"{bad!r} maps to {spec.get(bad)!r}, not a column name or constant",
                "give each field a column name (str), e.g. {'run': 'model', 'n': 'params', 'acc': 'accuracy'}")
        items = [f"{k}={v}" for k, v in spec.items()]
    elif not isinstance(spec, (str, os.PathLike)):
        raise LadderError(f"--map: {spec!r} is not FIELD=COLUMN text, a mapping file or a dict; write e.g. "
                          "run=model,n=params,acc=accuracy")
    elif Path(spec).is_file():
        path = Path(spec)
        text = read_utf8(path, "--map")
        if text.lstrip().startswith("{"):
            mapping = parse_json(text, f"--map {spec}", 'write {"run": "COL", ...}', problem=": not valid JSON")
            require(isinstance(mapping, dict), f"--map {spec}", "is not a JSON object", 'write {"run": "COL", ...}')
            items = [f"{k}={v}" for k, v in mapping.items()]
        else:
            items = [line.split("#")[0].strip() for line in text.splitlines()]
    else:
        items = str(spec).split(",")
    mapping = {}
    for item in filter(None, items):
        hint = " (and no such file)" if len(items) == 1 and ("/" in item or item.endswith((".txt", ".json"))) else ""
        require("=" in item, "--map", f"{item!r} is not FIELD=COLUMN{hint}", "write e.g. run=model,n=params,acc=accuracy")
        k, v = (s.strip() for s in item.split("=", 1))
        require(k in CSV_FIELDS, "--map", f"unknown field {k!r}", f"fields: {', '.join(CSV_FIELDS)}")
        require(k not in mapping, "--map", f"maps {k!r} twice ({mapping.get(k)!r} and {v!r})", "keep one")
        mapping[k] = v
    return mapping


def _require_numbers_apart(mapping: dict[str, str]) -> None:
    """Two numeric fields read from one column is a slip, never a table: `n=params,d=params` imported every run at
    one token per parameter without a word (a constant such as step=0 may repeat)."""
    by_column: dict[str, list[str]] = {}
    for field, column in mapping.items():
        if field not in TEXT_FIELDS and not _is_number(column):
            by_column.setdefault(column, []).append(field)
    same = next(((c, fs) for c, fs in by_column.items() if len(fs) > 1), None)
    require(same is None, "--map", f"{' and '.join(same[1]) if same else ''} both read column "
            f"{same[0] if same else ''!r}, but they are different numbers", "map each field to its own column")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def import_csv(path: str | Path, mapping: dict[str, str]) -> list[dict]:
    """Rows for a results table from any CSV, its columns named by `mapping` (parse_mapping).

    Long tables have one row per run (x checkpoint) x task (`task=COL`); wide tables one row per run
    (x checkpoint) with a column per task (`acc=acc_*`, optionally `loss=bpb_*`). Without `step` each
    (run, task)'s rows are numbered in order of D. Without `loss` the task loss is left blank: methods that
    need it say so. Tokens: `d`, else `tpp` x N, else `flops` / 6N. Notes (percentages divided by 100, runs
    sharing N and D) are warnings."""
    require(isinstance(path, (str, os.PathLike)), "import", f"{path!r} is not a path", "pass the CSV's path")
    path = Path(path)
    require(path.is_file(), str(path), "no such file", "give the CSV to import")
    mapping = parse_mapping(mapping)  # a dict or FIELD=COLUMN text from Python: one set of checks
    _require_fields(mapping)
    sheet = Sheet(path)
    columns = _Columns(path, mapping, sheet)
    tasks = columns.wide_tasks() if columns.wide else [None]
    sheet.read_decimal_commas(columns.numeric_columns())
    rows, sources = [], []
    for rec, line in zip(sheet.records, sheet.lines):
        for task in tasks:
            got = columns.row(rec, task, f"{path}:{line}")
            if got is not None:
                rows.append(got[0])
                sources.append(got[1])
    require(bool(rows), str(path), "no row with an accuracy" + columns.keys_hint("acc"), "check the acc mapping")
    for field in ("acc", "chance"):
        checks.fractions(rows, sources, field, path)
    if "step" not in mapping:
        checks.number_checkpoints(rows)
    columns.require_runs_apart(rows)
    checks.require_counts(rows, mapping)
    if "d" not in mapping and "tpp" not in mapping:
        checks.note_tokens_from_flops(mapping["flops"])
    checks.note_size_labels(rows, mapping["n"])
    checks.require_checkpoints_apart(rows, "step" in mapping)
    checks.require_tokens_grow(rows)
    joined = [c.strip() for c in mapping["run"].split("+")] if "_parts" in rows[0] else []
    if not joined:  # run names of one column: their parts (dolma-150M-s1 -> dolma, 150M, s1) when all have as many
        split = [tuple(NAME_PARTS.split(r["run"])) for r in rows]
        if len({len(t) for t in split}) == 1 and len(split[0]) > 1:
            for r, t in zip(rows, split):
                r["_parts"] = t
            joined = [None] * len(split[0])
    if not (joined and checks.note_systematic_columns(rows, joined)):
        checks.note_shared_settings(rows, "set" in mapping)
    for r in rows if joined else ():
        del r["_parts"]
    rows.sort(key=lambda r: (r["n"], r["run"], r["step"], r["task"]))
    return rows


def _require_fields(mapping: dict[str, str]) -> None:
    """The fields every results row needs: run, n, acc and tokens (d, tpp or flops to derive it)."""
    for field in ("run", "n", "acc"):
        require(field in mapping, "--map", f"no column for {field!r}",
                f"add {field}=COLUMN (fields: {', '.join(CSV_FIELDS)})")
    require(any(f in mapping for f in ("d", "tpp", "flops")), "--map", "no column for 'd' (tokens)",
            "add d=COLUMN, or tpp=COLUMN (tokens per parameter: D = tpp x N), or flops=COLUMN (D = flops / 6N)")
    require(not ("d" in mapping and "tpp" in mapping), "--map", "maps both d and tpp", "keep one: D is d, or tpp x N")
    _require_numbers_apart(mapping)
    require("*" in mapping["acc"] or "task" in mapping, "--map", "no task: map task=COLUMN (long table) or "
            "acc=PATTERN_* (one accuracy column per task)", "e.g. task=benchmark or acc=acc_*")


@dataclasses.dataclass(frozen=True)
class _Columns:
    """Where each mapped field's value comes from in a CSV with this header: one column ("col"), columns
    joined ("cols", run only), a pattern whose `*` is the task ("pattern", a wide table) or a constant
    ("const"). A mapped name that is none of these is refused at once, naming the columns there are."""
    path: Path
    mapping: dict[str, str]
    sheet: Sheet

    def __post_init__(self):
        object.__setattr__(self, "_kinds", {f: self._find_kind(f) for f in self.mapping})  # asked once per cell
        for field in self.mapping:
            if self.kind(field) != "missing":
                continue
            near = self._spelled_alike(self.mapping[field])
            raise LadderError(f"{self.path}: has no column {self.mapping[field]!r} (mapped to {field}); "
                              + (f"did you mean {near!r}? (names are compared exactly); " if near else "")
                              + f"columns: {self._some_columns()}"
                              + (f" (its columns are split by {self.sheet.separator!r})" if len(self.header) == 1 else ""))

    def _spelled_alike(self, name: str) -> str | None:
        """The header's column that differs from `name` only in case, spaces, punctuation or invisible
        characters ('Params' for params, 'accu\u200bracy' for accuracy): named in the error, never taken."""
        def key(s):
            return "".join(c for c in s.casefold() if c.isalnum())
        return next((h for h in self.header if key(h) == key(name) and h != name), None)

    @property
    def header(self) -> list[str]:
        return self.sheet.header

    @property
    def wide(self) -> bool:
        return "*" in self.mapping["acc"]

    def _some_columns(self) -> str:
        return f"{', '.join(self.header[:12])}{'...' if len(self.header) > 12 else ''}"

    def kind(self, field: str) -> str | None:
        return self._kinds.get(field)

    def _find_kind(self, field: str) -> str | None:
        v = self.mapping.get(field)
        if v is None:
            return None
        if "*" in v:
            return "pattern"
        if v in self.header:
            return "col"
        if field in ("run", "set") and "+" in v and all(c.strip() in self.header for c in v.split("+")):
            return "cols"  # run=data+size(+seed): one run per combination; set=data+lr: one set per combination
        if self.cell_key(v) is not None:
            return "cell"  # acc=metrics.acc_norm: a key of the object in column `metrics` (a JSON or dict cell)
        try:
            self.sheet.number(v, "--map", field)
            return "const"
        except LadderError:
            return "const" if field in ("task", "run") else "missing"

    def cell_key(self, v: str) -> tuple[str, list[str]] | None:
        """(column, keys) when `v` is COLUMN.KEY[.KEY...] for a column of the header, else None."""
        parts = v.split(".")
        return next(((".".join(parts[:i]), parts[i:]) for i in range(len(parts) - 1, 0, -1)
                     if ".".join(parts[:i]) in self.header), None)

    def cell_value(self, v: str, rec: dict, where: str):
        """The value under KEY in a cell holding a JSON object (or a Python dict as pandas writes it)."""
        column, keys = self.cell_key(v)
        text = rec[column].strip()
        if text.lower() in ("", "nan", "none", "null", "{}"):
            return ""
        obj = _CELLS.get(text)
        if obj is None:
            try:
                obj = json.loads(text)
            except ValueError:
                try:
                    obj = ast.literal_eval(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    obj = None
            require(isinstance(obj, dict), where, f"column {column!r} is not a JSON object ({text[:40]!r}), so it has "
                    f"no key {'.'.join(keys)!r}", f"map {v.split('.')[0]} as a column, or fix the cell")
            if len(_CELLS) > 10_000:
                _CELLS.clear()
            _CELLS[text] = obj
        for key in keys:
            obj = obj.get(key) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj)

    def numeric_columns(self) -> set[str]:
        """The columns the numeric fields read."""
        used = set()
        for field in self.mapping:
            kind = self.kind(field)
            if field in TEXT_FIELDS or kind in ("const", "cols"):
                continue
            v = self.mapping[field]
            if kind == "cell":
                used.add(self.cell_key(v)[0])
            elif kind == "pattern":  # every column it can name (a long table's task column picks among them)
                pre, post = v.split("*", 1)
                used.update(c for c in self.header if c.startswith(pre) and c.endswith(post))
            else:
                used.add(v)
        return used

    def keys_hint(self, field: str) -> str:
        """For FIELD=COLUMN.KEY, the keys the column's first object has (what a misspelt KEY could have been)."""
        if self.kind(field) != "cell" or not self.sheet.records:
            return ""
        column, _ = self.cell_key(self.mapping[field])
        try:
            self.cell_value(f"{column}.x", self.sheet.records[0], "")  # parses the cell into _CELLS
        except LadderError:
            return ""
        obj = _CELLS.get(self.sheet.records[0][column].strip())
        return f" (the first {column!r} cell has keys {', '.join(map(str, obj))})" if isinstance(obj, dict) else ""

    def wide_tasks(self) -> list[str]:
        """The tasks of a wide table: what `*` stands for in the accuracy columns that match acc's pattern."""
        pre, post = self.mapping["acc"].split("*", 1)
        tasks = [c[len(pre): len(c) - len(post) if post else None] for c in self.header
                 if c.startswith(pre) and c.endswith(post) and len(c) > len(pre) + len(post)]
        require(bool(tasks), str(self.path), f"no column matches {self.mapping['acc']!r}",
                f"columns: {self._some_columns()}")
        spread = [t for t in tasks if SPREAD.search(t)]  # acc_mmlu_stderr, eval/acc__MAX: not a task's accuracy
        if spread and len(spread) < len(tasks):
            warnings.warn(f"acc={self.mapping['acc']} also matches {len(spread)} columns of standard errors or "
                          f"ranges ({', '.join(self.mapping['acc'].replace('*', t) for t in spread[:3])}"
                          f"{' ...' if len(spread) > 3 else ''}): left out", stacklevel=4)
            tasks = [t for t in tasks if t not in spread]
        return tasks

    def source(self, field: str, task: str | None) -> str:
        """The column a field's value comes from (for `task` in a wide table), or '=CONSTANT'."""
        k, v = self.kind(field), self.mapping[field]
        return v.replace("*", task) if k == "pattern" else v if k in ("col", "cell") else f"={v}"

    def parts(self, rec: dict, field: str = "run") -> list[str]:
        """The values of the columns joined into run (run=recipe+size+seed) or set, as written into its name."""
        return [" ".join(rec[c.strip()].split()) for c in self.mapping[field].split("+")]

    def value(self, field: str, rec: dict, task: str | None, where: str):
        """The field's value in record `rec` (for `task` in a wide table): run, task and set as text, the rest as
        numbers (NaN when unmapped or blank)."""
        k, v = self.kind(field), self.mapping.get(field)
        if k is None:
            return float("nan")
        if k == "cols":
            return "-".join(self.parts(rec, field))
        if k == "const":
            return v if field in TEXT_FIELDS else self._number(field, v, where, field)
        if k == "cell":
            cell = self.cell_value(v, rec, where)
            return " ".join(cell.split()) if field in TEXT_FIELDS else self._number(field, cell, where, v)
        col = self.source(field, task)
        require(col in self.header, str(self.path), f"has no column {col!r} (pattern {v!r}, task {task!r})",
                "map a pattern every task has, or leave the field out")
        # a name's inner whitespace (a wrapped spreadsheet cell: 'OLMo 1B\nseed 2') becomes single spaces
        return " ".join(rec[col].split()) if field in TEXT_FIELDS else self._number(field, rec[col], where, col)

    def _number(self, field: str, cell, where: str, column: str) -> float:
        """A numeric cell; an infinite count, step or accuracy (`inf`, `1e400`) is named at its cell. Before,
        `n = 1e400` read as "gives run 'm0' 1.5e+09 tokens for inf parameters" and `acc = inf` as "neither all
        fractions nor all percentages". Losses keep their own rule (infinite: a diverged run, refused by the
        schema check naming the column)."""
        x = self.sheet.number(cell, where, column)[0]
        require(not (math.isinf(x) and field not in ("loss", "lm_loss")), where,
                f"column {column!r} has {cell!r}, an infinite {field}", "fix the cell, or leave it blank")
        return x

    def row(self, rec: dict, task: str | None, where: str) -> tuple[dict, dict] | None:
        """(the results row of record `rec` (and `task` in a wide table), the source column of its acc and
        chance); None where its accuracy is blank (that task was not evaluated at this checkpoint)."""
        t = task if self.wide else self.value("task", rec, None, where)
        acc = self.value("acc", rec, t, where)
        if acc != acc:
            return None
        run = str(self.value("run", rec, t, where))
        require(run != "", where, f"the run column {self.mapping['run']!r} is blank", "give every row its run name")
        require(str(t) != "", where, f"the task column {self.mapping.get('task')!r} is blank",
                "give every row its task")
        if "set" in self.mapping:
            data = str(self.value("set", rec, t, where))
            require(data != "", where, f"the set column {self.mapping['set']!r} is blank",
                    "give every row its training set")
            joined = [c.strip() for c in self.mapping["run"].split("+")]
            in_run = all(c.strip() in joined for c in self.mapping["set"].split("+"))
            run = run if in_run else f"{data}-{run}"  # runs of two sets never share a name
        n = self.value("n", rec, t, where)
        step = self.value("step", rec, t, where)
        # tokens: mapped, else tokens per parameter x N, else from training FLOPs by the 6ND rule (docs/laws.md)
        d = (self.value("d", rec, t, where) if "d" in self.mapping else self.value("tpp", rec, t, where) * n
             if "tpp" in self.mapping else self.value("flops", rec, t, where) / (6 * n))
        require("step" not in self.mapping or step == step and float(step).is_integer() and step >= 0, where,
                f"column {self.mapping.get('step')!r} has {step!r}, not a step",
                "give every row its whole-number step >= 0, or leave step unmapped (then rows are numbered by D)")
        row = {"run": run, "n": n, "d": d, "step": int(step) if step == step else 0, "task": str(t), "acc": acc,
               "loss": self.value("loss", rec, t, where)}
        for extra in ("lm_loss", "flops", "chance", "set"):
            if extra in self.mapping:
                row[extra] = self.value(extra, rec, t, where) if extra != "set" else data
        if self.kind("run") == "cols":
            row["_parts"] = tuple(self.parts(rec))  # for _note_systematic_columns; dropped before writing
        return row, {f: self.source(f, t) for f in ("acc", "chance") if f in self.mapping}

    def require_runs_apart(self, rows: list[dict]) -> None:
        """run=NAME that is no column is a constant: right for a one-run file, but over several sizes it merges
        every run into one (a misspelt column name, or a byte-order mark glued to it, did exactly that)."""
        sizes = len({r["n"] for r in rows})
        require(self.kind("run") != "const" or sizes == 1, "--map",
                f"run={self.mapping['run']!r} is not a column of {self.path}, so every row would be one run over "
                f"{sizes} sizes", f"map run to the column naming each run (columns: {self._some_columns()})")
