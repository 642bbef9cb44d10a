"""`ladder import olmo DIR -o results.csv` (the OLMo ladder's W&B exports) or `ladder import csv FILE --map
run=COL,n=COL,d=COL,task=COL,acc=COL,... -o results.csv` (any table): a published ladder as a results table."""

from __future__ import annotations

import warnings

from ladder.commands.common import add_out, check_out
from ladder.errors import require

SOURCES = ("olmo", "csv")
EXAMPLES = """
ladder import olmo shared/reference/olmo_ladder/ladder-runs -o olmo.csv
ladder import csv my-ladder.csv --map run=model,n=params,d=tokens,step=step,task=task,acc=accuracy -o results.csv
ladder import csv export.csv --map set=data,run=params+seed,n=params,d=tokens,task=task,acc=metrics.acc_norm -o mixes.csv
"""


def add_arguments(parser) -> None:
    parser.add_argument("source", choices=SOURCES, help="olmo (Bhagia et al. 2024's W&B exports) or csv (any "
                        "table, columns named by --map)")
    parser.add_argument("directory", metavar="PATH", help="olmo: directory of run CSVs, e.g. "
                        "shared/reference/olmo_ladder/ladder-runs; csv: the CSV file")
    parser.add_argument("--map", dest="mapping", help="csv: FIELD=COLUMN,... (fields run, n, d, step, task, acc, "
                        "loss, lm_loss, flops, chance, tpp (tokens per parameter: D = tpp x N), set (training "
                        "set / data mix: one law per set, `predict --set`); COLUMN may be a pattern acc_* for one "
                        "column per task, "
                        "COL+COL for run or set (one per combination), COL.KEY for a key of a JSON-object "
                        "column, or a constant), or a file of such lines; "
                        "docs/laws.md")
    add_out(parser, "results table to write (CSV, docs/results.md)", required=True)


def run(args) -> int:
    from ladder.importers import import_csv, import_olmo, parse_mapping
    from ladder.results import columns, validate_table, write_table

    out = check_out(args.out, args.overwrite)
    with warnings.catch_warnings(record=True) as notes:  # printed as notes, not Python's file:line warnings
        warnings.simplefilter("always")
        if args.source == "csv":
            require(bool(args.mapping), "--map", "csv import needs the column mapping",
                    "pass --map run=COL,n=COL,d=COL,task=COL,acc=COL (docs/laws.md)")
            rows = import_csv(args.directory, parse_mapping(args.mapping))
        else:
            rows = import_olmo(args.directory)
    for note in notes:
        print(f"note: {note.message}")
    # the table predict will read, checked now against its schema (a row twice, an accuracy in percent), so
    # the mistake is named with its source file, not found later in the written table
    validate_table(columns(rows), f"{args.directory} (as imported)")
    write_table(out, rows)
    runs = sorted({r["run"] for r in rows})
    tasks = sorted({r["task"] for r in rows})
    print(f"wrote {len(rows)} rows ({len(runs)} runs x checkpoints x {len(tasks)} tasks: {', '.join(tasks)}) to {out}")
    if all(r["loss"] != r["loss"] for r in rows):
        print("no task loss mapped: `ladder predict` uses the methods that need none (docs/laws.md)")
    return 0
