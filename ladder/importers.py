"""Importers from published ladders into the results table (schema: docs/results.md).

`import_olmo(dir)` reads the W&B exports released with "Establishing Task Scaling Laws via Compute-Efficient
Model Ladders" (Bhagia et al. 2024): one CSV per run named `{size}-{multiple}xC[-rerun].csv`, one row per
evaluated checkpoint. Task definitions follow the paper: MMLU is the test split's four category groups
weighted by their question share, the other seven tasks use the split the paper reports.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

from ladder.errors import LadderError, parse_json, read_utf8, require
from ladder.results import csv_records

# Reference N (all parameters except the input embedding) of each published size.
OLMO_N = {"190M": 190_354_176, "370M": 371_262_464, "760M": 758_220_288, "1B": 1_279_395_840,
          "3B": 3_169_537_280}
# task -> ((W&B task key, weight), ...). Accuracy and task loss are the same weighted mean of the parts.
OLMO_TASKS: dict[str, tuple[tuple[str, float], ...]] = {
    "mmlu": (("mmlu_stem_test", 0.215), ("mmlu_humanities_test", 0.335),
             ("mmlu_social_sciences_test", 0.219), ("mmlu_other_test", 0.231)),
    "hellaswag": (("hellaswag_val", 1.0),),
    "arc_challenge": (("arc_challenge_test", 1.0),),
    "arc_easy": (("arc_easy_test", 1.0),),
    "piqa": (("piqa_val", 1.0),),
    "csqa": (("csqa_val", 1.0),),
    "socialiqa": (("socialiqa_val", 1.0),),
    "openbookqa": (("openbookqa_test", 1.0),),
}
# Chance accuracy of each task (number of options), written to the table's `chance` column.
OLMO_CHANCE = {"mmlu": 0.25, "hellaswag": 0.25, "arc_challenge": 0.25, "arc_easy": 0.25, "piqa": 0.5,
               "csqa": 0.2, "socialiqa": 1 / 3, "openbookqa": 0.25}
# The held-out LM loss used as the alternative intermediate feature (nats per token on C4 validation).
OLMO_LM_LOSS = "eval/c4_en-validation/CrossEntropyLoss"
RUN_NAME = re.compile(r"^(?P<size>\d+[MB])-(?P<multiple>[\d.]+)xC(?P<rerun>-rerun)?$")


def _bpb(key: str) -> str:
    return f"eval/downstream_bpb/{key}_rc_5shot_bpb"


def _acc(key: str) -> str:
    return f"eval/downstream/{key}_rc_5shot_len_norm"


def _float(row: dict, column: str, where: str) -> float:
    v = row.get(column, "")
    try:
        return float(v) if v not in ("", None) else float("nan")
    except ValueError:
        raise LadderError(f"{where}: column {column!r} has {v!r}, not a number; fix or remove that row") from None


def import_olmo_run(path: str | Path) -> list[dict]:
    """Rows (results-table dicts) for one published run CSV; checkpoints missing a task's values are skipped."""
    path = Path(path)
    m = RUN_NAME.match(path.stem)
    require(m is not None, str(path), "file name is not {size}-{multiple}xC[-rerun].csv",
            "keep the published file names (e.g. 190M-1xC.csv)")
    size = m["size"]
    require(size in OLMO_N, str(path), f"unknown size {size!r}", f"use one of {', '.join(OLMO_N)}")
    fieldnames, records = csv_records(read_utf8(path, "import"), path, "import")  # UTF-8 named, BOM dropped
    header = set(fieldnames)
    needed = {"_step", "throughput/total_tokens"} | {c(k) for parts in OLMO_TASKS.values()
                                                     for k, _ in parts for c in (_bpb, _acc)}
    missing = sorted(needed - header)
    require(not missing, str(path), f"missing columns {missing[:4]}{'...' if len(missing) > 4 else ''}",
            "export the run with its eval/downstream and eval/downstream_bpb metrics")
    rows, skipped = [], 0
    for i, rec in enumerate(records, start=2):
        where = f"{path}:{i}"
        step, d = _float(rec, "_step", where), _float(rec, "throughput/total_tokens", where)
        gflops = _float(rec, "throughput/total_training_Gflops", where)
        lm = _float(rec, OLMO_LM_LOSS, where)
        for task, parts in OLMO_TASKS.items():
            loss = sum(w * _float(rec, _bpb(k), where) for k, w in parts)
            acc = sum(w * _float(rec, _acc(k), where) for k, w in parts)
            if loss != loss or acc != acc or d != d or step != step:
                skipped += 1
                continue
            rows.append({"run": path.stem, "n": OLMO_N[size], "d": d, "step": int(step), "task": task,
                         "loss": loss, "acc": acc, "lm_loss": lm, "flops": gflops * 1e9, "size": size,
                         "multiple": float(m["multiple"]), "chance": OLMO_CHANCE[task]})
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} (checkpoint, task) values with blank loss/accuracy", stacklevel=2)
    return rows


def import_olmo(directory: str | Path) -> list[dict]:
    """Rows for every `*.csv` run under `directory` (or its `ladder-runs/`), sorted by run and step."""
    directory = Path(directory)
    if (directory / "ladder-runs").is_dir():
        directory = directory / "ladder-runs"
    files = sorted(directory.glob("*.csv"))
    require(bool(files), str(directory), "no run CSVs found", "point at the directory of {size}-{c}xC.csv files")
    rows = [r for f in files for r in import_olmo_run(f)]
    rows.sort(key=lambda r: (OLMO_N[r["size"]], r["multiple"], r["run"], r["step"], r["task"]))
    return rows


# ------------------------------------------------------------------------------------ any table (csv)
CSV_FIELDS = ("run", "n", "d", "step", "task", "acc", "loss", "lm_loss", "flops", "chance")
SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_mapping(spec: str) -> dict[str, str]:
    """`run=model,n=params,...` or a file of `field=column` lines (or a JSON object) -> {field: column}.

    A value may be a column name, a pattern with one `*` over columns (a wide table: the `*` part is the
    task), or a constant (`chance=0.25`, `task=mmlu`, `step=0`); `run` may join columns with `+`
    (`run=data+size`: run names `DATA-SIZE`, one per combination)."""
    path = Path(spec)
    if path.is_file():
        text = read_utf8(path, "--map")
        if text.lstrip().startswith("{"):
            mapping = parse_json(text, f"--map {spec}", 'write {"run": "COL", ...}', problem=": not valid JSON")
            require(isinstance(mapping, dict), f"--map {spec}", "is not a JSON object", 'write {"run": "COL", ...}')
            return {str(k): str(v) for k, v in mapping.items()}
        items = [line.split("#")[0].strip() for line in text.splitlines()]
    else:
        items = spec.split(",")
    mapping = {}
    for item in filter(None, items):
        require("=" in item, "--map", f"{item!r} is not FIELD=COLUMN", "write e.g. run=model,n=params,acc=accuracy")
        k, v = (s.strip() for s in item.split("=", 1))
        require(k in CSV_FIELDS, "--map", f"unknown field {k!r}", f"fields: {', '.join(CSV_FIELDS)}")
        require(k not in mapping, "--map", f"maps {k!r} twice ({mapping.get(k)!r} and {v!r})", "keep one")
        mapping[k] = v
    return mapping


def _number(v: str, where: str, column: str) -> float:
    """'1.3B' -> 1.3e9; '' -> NaN; anything else not a number is an error naming the cell."""
    v = (v or "").strip().replace(",", "")
    if v == "":
        return float("nan")
    try:
        return float(v[:-1]) * SUFFIX[v[-1]] if v[-1] in SUFFIX else float(v)
    except ValueError:
        raise LadderError(f"{where}: column {column!r} has {v!r}, not a number (suffixes k/M/B/T allowed); "
                          "fix the cell or map another column") from None


def import_csv(path: str | Path, mapping: dict[str, str]) -> list[dict]:
    """Rows for a results table from any CSV, its columns named by `mapping` (parse_mapping).

    Long tables have one row per run (x checkpoint) x task (`task=COL`); wide tables one row per run
    (x checkpoint) with a column per task (`acc=acc_*`, optionally `loss=bpb_*`). Without `step` each
    run's rows are numbered in file order. Without `loss` the task loss is left blank: methods that need
    it say so and the default ensemble keeps those that do not (docs/laws.md). Without `d`, tokens are
    `flops` / 6N."""
    path = Path(path)
    require(path.is_file(), str(path), "no such file", "give the CSV to import")
    _require_fields(mapping)
    header, records = csv_records(read_utf8(path, "import"), path, "import")  # a 5 MB field: one line
    columns = _Columns(path, mapping, header)
    tasks = columns.wide_tasks() if columns.wide else [None]
    rows, steps = [], {}
    for i, rec in enumerate(records, start=2):
        for task in tasks:
            row = columns.row(rec, task, f"{path}:{i}", steps)
            if row is not None:
                rows.append(row)
    require(bool(rows), str(path), "no row with an accuracy", "check the acc mapping")
    columns.require_runs_apart(rows)
    rows.sort(key=lambda r: (r["n"], r["run"], r["step"], r["task"]))
    return rows


def _require_fields(mapping: dict[str, str]) -> None:
    """The fields every results row needs: run, n, acc and tokens (d, or flops to derive it)."""
    for field in ("run", "n", "d", "acc"):
        require(field in mapping or field == "d" and "flops" in mapping, "--map", f"no column for {field!r}",
                f"add {field}=COLUMN (fields: {', '.join(CSV_FIELDS)})"
                + (" or flops=COLUMN (then D = flops / 6N)" if field == "d" else ""))
    require("*" in mapping["acc"] or "task" in mapping, "--map", "no task: map task=COLUMN (long table) or "
            "acc=PATTERN_* (one accuracy column per task)", "e.g. task=benchmark or acc=acc_*")


@dataclasses.dataclass(frozen=True)
class _Columns:
    """Where each mapped field's value comes from in a CSV with this header: one column ("col"), columns
    joined ("cols", run only), a pattern whose `*` is the task ("pattern", a wide table) or a constant
    ("const"). A mapped name that is none of these is refused at once, naming the columns there are."""
    path: Path
    mapping: dict[str, str]
    header: list[str]

    def __post_init__(self):
        for field in self.mapping:
            require(self.kind(field) != "missing", str(self.path),
                    f"has no column {self.mapping[field]!r} (mapped to {field})", f"columns: {self._some_columns()}")

    @property
    def wide(self) -> bool:
        return "*" in self.mapping["acc"]

    def _some_columns(self) -> str:
        return f"{', '.join(self.header[:12])}{'...' if len(self.header) > 12 else ''}"

    def kind(self, field: str) -> str | None:
        v = self.mapping.get(field)
        if v is None:
            return None
        if "*" in v:
            return "pattern"
        if v in self.header:
            return "col"
        if field == "run" and "+" in v and all(c in self.header for c in v.split("+")):
            return "cols"  # run=data+size(+seed): one run per combination (a ladder of several training sets)
        try:
            _number(v, "--map", field)
            return "const"
        except LadderError:
            return "const" if field in ("task", "run") else "missing"

    def wide_tasks(self) -> list[str]:
        """The tasks of a wide table: what `*` stands for in the accuracy columns that match acc's pattern."""
        pre, post = self.mapping["acc"].split("*", 1)
        tasks = [c[len(pre): len(c) - len(post) if post else None] for c in self.header
                 if c.startswith(pre) and c.endswith(post) and len(c) > len(pre) + len(post)]
        require(bool(tasks), str(self.path), f"no column matches {self.mapping['acc']!r}",
                f"columns: {', '.join(self.header[:12])}")
        return tasks

    def value(self, field: str, rec: dict, task: str | None, where: str):
        """The field's value in record `rec` (for `task` in a wide table): run and task as text, the rest as
        numbers (NaN when unmapped or blank)."""
        k, v = self.kind(field), self.mapping.get(field)
        if k is None:
            return float("nan")
        if k == "pattern":
            v = v.replace("*", task)
            require(v in self.header, str(self.path), f"has no column {v!r} (pattern {self.mapping[field]!r}, "
                    f"task {task!r})", "map a pattern every task has, or leave the field out")
            return _number(rec[v], where, v)
        if k == "col":
            return rec[v] if field in ("run", "task") else _number(rec[v], where, v)
        if k == "cols":
            return "-".join(rec[c].strip() for c in v.split("+"))
        return v if field in ("run", "task") else _number(v, where, field)

    def row(self, rec: dict, task: str | None, where: str, steps: dict) -> dict | None:
        """The results row of record `rec` (and `task` in a wide table); None where its accuracy is blank (that
        task was not evaluated at this checkpoint). Unmapped steps count each (run, task)'s rows in `steps`."""
        t = task if self.wide else self.value("task", rec, None, where)
        run = str(self.value("run", rec, t, where))
        acc = self.value("acc", rec, t, where)
        if acc != acc:
            return None
        step = self.value("step", rec, t, where)
        if step != step:
            step = steps[(run, t)] = steps.get((run, t), -1) + 1
        n = self.value("n", rec, t, where)
        # tokens: mapped, else from training FLOPs by the 6ND rule (docs/laws.md, "Any published ladder in")
        d = self.value("d", rec, t, where) if "d" in self.mapping else self.value("flops", rec, t, where) / (6 * n)
        row = {"run": run, "n": n, "d": d, "step": int(step), "task": str(t), "acc": acc,
               "loss": self.value("loss", rec, t, where)}
        for extra in ("lm_loss", "flops", "chance"):
            if extra in self.mapping:
                row[extra] = self.value(extra, rec, t, where)
        return row

    def require_runs_apart(self, rows: list[dict]) -> None:
        """run=NAME that is no column is a constant: right for a one-run file, but over several sizes it merges
        every run into one (a misspelt column name, or a byte-order mark glued to it, did exactly that)."""
        sizes = len({r["n"] for r in rows})
        require(self.kind("run") != "const" or sizes == 1, "--map",
                f"run={self.mapping['run']!r} is not a column of {self.path}, so every row would be one run over "
                f"{sizes} sizes", f"map run to the column naming each run (columns: {', '.join(self.header[:12])})")
