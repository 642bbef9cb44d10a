"""`ladder import olmo DIR -o results.csv`: a published ladder's W&B exports as a results table."""

from __future__ import annotations

from pathlib import Path

from ladder.errors import require

SOURCES = ("olmo",)


def add_arguments(parser) -> None:
    parser.add_argument("source", choices=SOURCES, help="which published format: olmo (Bhagia et al. 2024)")
    parser.add_argument("directory", help="directory of run CSVs, e.g. shared/reference/olmo_ladder/ladder-runs")
    parser.add_argument("-o", "--output", required=True, help="results table to write (CSV, docs/results.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


def run(args) -> int:
    from ladder.importers import import_olmo
    from ladder.results import write_table

    out = Path(args.output)
    require(args.overwrite or not out.exists(), str(out), "already exists", "pass --overwrite or another -o")
    rows = import_olmo(args.directory)
    write_table(out, rows)
    runs = sorted({r["run"] for r in rows})
    tasks = sorted({r["task"] for r in rows})
    print(f"wrote {len(rows)} rows ({len(runs)} runs x checkpoints x {len(tasks)} tasks: {', '.join(tasks)}) to {out}")
    return 0
