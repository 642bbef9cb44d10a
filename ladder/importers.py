"""Importers from published ladders into the results table (schema: docs/results.md).

`import_olmo(dir)` reads the W&B exports released with "Establishing Task Scaling Laws via Compute-Efficient
Model Ladders" (Bhagia et al. 2024): one CSV per run named `{size}-{multiple}xC[-rerun].csv`, one row per
evaluated checkpoint. Task definitions follow the paper: MMLU is the test split's four category groups
weighted by their question share, the other seven tasks use the split the paper reports.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from ladder.errors import LadderError, read_utf8, require
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
# Task keys the default never chose anything on (its weights and interval rule were set on the 8 above): the
# validation splits of four of them and two tasks outside the paper's 8. bench/backtest_heldout_tasks.py
# checks the default out of sample on them (docs/laws.md, "Held-out tasks"); `import_olmo(dir,
# OLMO_HELDOUT_TASKS, OLMO_HELDOUT_CHANCE)` reads them. MMLU val: its 4 categories with the test split's weights.
OLMO_HELDOUT_TASKS: dict[str, tuple[tuple[str, float], ...]] = {
    "boolq": (("boolq_val", 1.0),),
    "winogrande": (("winogrande_val", 1.0),),
    "arc_easy_val": (("arc_easy_val", 1.0),),
    "arc_challenge_val": (("arc_challenge_val", 1.0),),
    "openbookqa_val": (("openbookqa_val", 1.0),),
    "mmlu_val": tuple((k.replace("_test", "_val"), w) for k, w in OLMO_TASKS["mmlu"]),
}
OLMO_HELDOUT_CHANCE = {"boolq": 0.5, "winogrande": 0.5, "arc_easy_val": 0.25, "arc_challenge_val": 0.25,
                       "openbookqa_val": 0.25, "mmlu_val": 0.25}
# Accuracy metric of a W&B key when not the length-normalised one (BoolQ's export has plain accuracy only).
ACC_METRIC = {"boolq_val": "acc"}
# The held-out LM loss used as the alternative intermediate feature (nats per token on C4 validation).
OLMO_LM_LOSS = "eval/c4_en-validation/CrossEntropyLoss"
RUN_NAME = re.compile(r"^(?P<size>\d+[MB])-(?P<multiple>[\d.]+)xC(?P<rerun>-rerun)?$")


def _bpb(key: str) -> str:
    return f"eval/downstream_bpb/{key}_rc_5shot_bpb"


def _acc(key: str) -> str:
    return f"eval/downstream/{key}_rc_5shot_{ACC_METRIC.get(key, 'len_norm')}"


def _float(row: dict, column: str, where: str) -> float:
    v = row.get(column, "")
    try:
        return float(v) if v not in ("", None) else float("nan")
    except ValueError:
        raise LadderError(f"{where}: column {column!r} has {v!r}, not a number; fix or remove that row") from None


def import_olmo_run(path: str | Path, tasks: dict | None = None, chance: dict | None = None) -> list[dict]:
    """Rows (results-table dicts) for one published run CSV; checkpoints missing a task's values are skipped.
    `tasks` / `chance`: another task list (default OLMO_TASKS / OLMO_CHANCE, e.g. OLMO_HELDOUT_TASKS)."""
    tasks, chance = tasks or OLMO_TASKS, chance or OLMO_CHANCE
    path = Path(path)
    m = RUN_NAME.match(path.stem)
    require(m is not None, str(path), "file name is not {size}-{multiple}xC[-rerun].csv",
            "keep the published file names (e.g. 190M-1xC.csv)")
    size = m["size"]
    require(size in OLMO_N, str(path), f"unknown size {size!r}", f"use one of {', '.join(OLMO_N)}")
    fieldnames, records = csv_records(read_utf8(path, "import"), path, "import")  # UTF-8 named, BOM dropped
    header = set(fieldnames)
    needed = {"_step", "throughput/total_tokens"} | {c(k) for parts in tasks.values()
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
        for task, parts in tasks.items():
            loss = sum(w * _float(rec, _bpb(k), where) for k, w in parts)
            acc = sum(w * _float(rec, _acc(k), where) for k, w in parts)
            if loss != loss or acc != acc or d != d or step != step:
                skipped += 1
                continue
            rows.append({"run": path.stem, "n": OLMO_N[size], "d": d, "step": int(step), "task": task,
                         "loss": loss, "acc": acc, "lm_loss": lm, "flops": gflops * 1e9, "size": size,
                         "multiple": float(m["multiple"]), "chance": chance[task]})
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} (checkpoint, task) values with blank loss/accuracy", stacklevel=2)
    return rows


def import_olmo(directory: str | Path, tasks: dict | None = None, chance: dict | None = None) -> list[dict]:
    """Rows for every `*.csv` run under `directory` (or its `ladder-runs/`), sorted by run and step (`tasks`,
    `chance`: as import_olmo_run)."""
    directory = Path(directory)
    if (directory / "ladder-runs").is_dir():
        directory = directory / "ladder-runs"
    files = sorted(directory.glob("*.csv"))
    what = ("does not exist" if not directory.exists() else "is a file, not a directory" if not directory.is_dir()
            else "holds no run CSVs")  # all three said "no run CSVs found"
    require(bool(files), str(directory), what, "point at the directory of {size}-{c}xC.csv files")
    rows = [r for f in files for r in import_olmo_run(f, tasks, chance)]
    rows.sort(key=lambda r: (OLMO_N[r["size"]], r["multiple"], r["run"], r["step"], r["task"]))
    return rows




# any table (`ladder import csv`): ladder/import_table.py; its names stay importable from here
from ladder.import_table import CSV_FIELDS, import_csv, parse_mapping  # noqa: E402,F401
