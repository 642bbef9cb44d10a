"""Everything read from or written to a run directory, local or gs://, in one place (no JAX here).

A run directory holds: config.json (the train config and its hash), status.json (state, step, loss, ETA),
init.json (the base a continued run started from), metrics.jsonl (one row per logged step), results.csv
(evaluation rows, docs/results.md), launch.json (what the local launcher saw) and checkpoints/. The
trainer, the evaluator, the launcher, `ladder status`, `ladder collect`, the CPT study and the report all
go through these functions, so a gs:// root works wherever a local one does. The checks the trainer makes
before writing anything (check_run_dir, check_run_dir_outside_data) are here too, next to the layout they
check.

Reading and writing go through ladder/storage.py (local or gs://, every write atomic).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path

import ml_collections

from ladder.errors import LadderError, require
from ladder import storage

STATUS, CONFIG, INIT, METRICS, RESULTS, LAUNCH = (
    "status.json", "config.json", "init.json", "metrics.jsonl", "results.csv", "launch.json")


# What each entry of a run directory must be when present. Something of the other kind there (a directory
# named status.json, a file named checkpoints) is named before any work, not reported later as a failed write.
FILES = (STATUS, CONFIG, INIT, METRICS, RESULTS, LAUNCH, "lock.json", "launch.log")
DIRECTORIES = ("checkpoints", "checkpoints.corrupt", "tb")


def check_layout(run_dir, field: str = "--run-dir", files=FILES, directories=DIRECTORIES) -> None:
    """A LadderError naming the first entry of `run_dir` that is of the wrong kind (local directories only);
    `files` and `directories`: what must be which (a trainer's run directory by default; `ladder run` passes its
    own)."""
    if storage.is_remote(run_dir) or not os.path.isdir(run_dir):
        return
    for name in files + directories:
        p = os.path.join(run_dir, name)
        if name in files and os.path.isdir(p) or name in directories and os.path.lexists(p) and not os.path.isdir(p):
            want = "a file" if name in files else "a directory"
            raise LadderError(f"{field}: {p} is not {want}, which ladder keeps there; move it away (or restore it)")


# ------------------------------------------------------------------------------------------ metrics.jsonl


def check_run_dir_outside_data(config, run_dir) -> None:
    """A run directory that data.files (or a mixture component's files) reads: its lock.json, config.json and
    metrics.jsonl became corpus documents, so the run failed at once on "run/lock.json:1: malformed JSON"
    (`--config.data.files=.` with the default run directory runs/<name> does it). Refused naming both."""
    import fnmatch

    if "://" in str(run_dir):
        return
    run = Path(run_dir).expanduser().resolve()
    parts = [config.data] + (list(config.data.mixture.values()) if config.data.source == "mixture" and
                             isinstance(config.data.mixture, (dict, ml_collections.ConfigDict)) else [])
    specs = [p.get("files", "") for p in parts if p.get("source", config.data.source) == "files"]
    written = [str(run / name) for name in ("lock.json", "config.json", "status.json", "metrics.jsonl")]
    for spec in specs:
        for part in [q.strip() for q in str(spec or "").split(",") if q.strip()]:
            path = Path(part).expanduser()
            inside = path.is_dir() and (run == path.resolve() or path.resolve() in run.parents)
            matched = any(fnmatch.fnmatch(w, os.path.abspath(path)) for w in written)  # a glob (* spans /)
            require(not (inside or matched), "--run-dir", f"{run_dir} is where data.files {part!r} reads, so the "
                    "run's own lock.json, config.json and metrics.jsonl would be read as training documents",
                    "put the run directory outside the corpus (--run-dir elsewhere)")


def check_run_dir(run_dir) -> None:
    """The run directory must be creatable and writable; checked without writing anything.

    gs:// directories need credentials or an emulator (ladder.gcs: one line at once, not minutes of retries);
    a missing bucket or permission fails at the first write. Other URL schemes are refused.
    """
    if "://" in str(run_dir):
        require(str(run_dir).startswith("gs://"), "--run-dir", f"{run_dir}: only gs:// URLs are supported",
                "use a local path or gs://BUCKET/...")
        from ladder import gcs

        gcs.require_access(run_dir, "--run-dir")
        return
    run_dir = Path(run_dir)
    check_local_path(run_dir, "--run-dir", LONGEST_INSIDE)
    require(not run_dir.exists() or run_dir.is_dir(), "--run-dir", f"{run_dir} exists and is not a directory",
            "pass a directory path")
    check_layout(run_dir)
    probe = run_dir
    while not probe.exists():
        probe = probe.parent
    require(probe.is_dir(), "--run-dir", f"{probe} is a file, so {run_dir} cannot be created", "choose another path")
    require(os.access(probe, os.W_OK | os.X_OK), "--run-dir", f"{probe} is not writable",
            "choose a directory you can write to")


# The longest path ladder writes below a run directory, with room to spare: an orbax save's
# checkpoints/<step>.orbax-checkpoint-tmp/default.orbax-checkpoint-tmp/ocdbt.process_0/d/<32 hex> is ~130.
LONGEST_INSIDE = 256


def check_local_path(p, field: str, inside: int = 0) -> None:
    """A local path that can be used at all: not a loop of symbolic links (Python's resolve raised a
    RuntimeError traceback), and short enough that the files written `inside` characters below it stay under
    the system's path limit (a 4,100-character --run-dir trained every step, then failed at the first save), and
    the same name for the C++ checkpoint writer as for Python (storage.native_path_problem)."""
    problem = storage.native_path_problem(p)
    require(problem is None, field, str(problem), storage.NATIVE_PATH_FIX)
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LadderError(f"{field}: {p} is a loop of symbolic links; remove the link or choose another "
                              "path") from None
    limit = _path_max(p)
    length = len(os.fsencode(os.path.abspath(p)))
    require(length + inside <= limit, field, f"{str(p)[:60]}... is {length:,} bytes long, and the files written "
            f"under it would pass this system's {limit:,}-byte limit on a path", "choose a shorter path")


def _path_max(p) -> int:
    probe = os.path.abspath(p)
    while not os.path.isdir(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)
    try:
        return os.pathconf(probe, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 4096


def read_run_config(run_dir, field: str = "--run-dir") -> dict | None:
    """A run directory's config.json; None when absent. Present but unreadable is an error, never "no run":
    a fresh start there would train on top of (and later mix with) the old run's checkpoints."""
    file = storage.path(run_dir) / CONFIG
    # Read, never exists(): on gs:// exists() answers from gcsfs's listing cache, which a launcher that listed
    # the rung before its trainer wrote config.json still holds (the rehearsal's resume saw "no config.json").
    try:
        raw = storage.read_bytes(file)
    except IsADirectoryError:
        raw = None
    except NotADirectoryError:  # init.from_run naming a file: was "storage: cannot write .../config.json", exit 1
        raise LadderError(f"{field}: {run_dir} is a file, not a run directory; give the --run-dir `ladder train` "
                          "wrote") from None
    if raw is None:
        if file.is_dir():
            raise LadderError(f"{field}: {file} is a directory, not the config file `ladder train` writes; move it "
                              "away (or restore the file)")
        ckpts = storage.path(run_dir) / "checkpoints"
        storage.forget_listing(ckpts)
        if ckpts.is_dir() and any(True for _ in ckpts.iterdir()):  # whose model, which config? unknown
            raise LadderError(f"{field}: {run_dir} has checkpoints but no config.json, so what wrote them is "
                              "unknown (training on would restore or mix another run's state); restore config.json, "
                              "or use a new --run-dir")
        return None
    try:
        saved = json.loads(raw.decode("utf-8"))
        if not isinstance(saved, dict):
            raise LadderError(f"{field}: {file} is not a JSON object")
        return saved
    except (ValueError, UnicodeDecodeError, LadderError):
        raise LadderError(f"{field}: {file} is unreadable (not the JSON `ladder train` writes), so this run's "
                          "config is unknown; restore it from a backup, or use a new --run-dir") from None


def read_metrics(run_dir, warn=None) -> list[dict]:
    """The rows of <run dir>/metrics.jsonl, in file order; [] when there is none. The one reader of that file.

    A torn last line (a crash mid-write) is dropped with a note (`warn`, default stderr); a bad line before
    the last is damage, not a crash, and is a LadderError naming file and line."""
    rows = []
    lines = _metrics_lines(run_dir)
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("no integer step")
        except ValueError as e:
            where = storage.path(run_dir) / METRICS
            if i == len(lines) - 1:
                (warn or (lambda m: print(m, file=sys.stderr)))(
                    f"ladder: {where}: dropped a torn last line ({len(line)} characters) left by a crash")
                break
            raise LadderError(f"{where}: line {i + 1} is not a metrics row ({e}); delete that line, or the file "
                              "(metrics are rewritten as the run resumes from its checkpoint)") from None
        rows.append(row)
    return rows


def _metrics_lines(run_dir) -> list[str]:
    raw = storage.read_bytes(storage.path(run_dir) / METRICS)
    text = (raw or b"").decode("utf-8", errors="replace")  # a torn multi-byte character is a torn line
    return [line for line in text.split("\n") if line.strip()]


def truncate_metrics(run_dir, last_step: int) -> None:
    """Drop rows past `last_step` (written after the checkpoint a resumed run starts from) and a torn last
    line; the file is rewritten whole and atomically, so new rows never join a torn one."""
    p = storage.path(run_dir) / METRICS
    if not p.exists():
        return
    rows = read_metrics(run_dir)
    storage.write_text(p, "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= last_step))


# ------------------------------------------------------------------------------------------ status, launch


def read_status(run_dir) -> dict:
    """status.json ({} when the run has not started): state, step, total_steps, loss, tokens, eta_s, updated."""
    return storage.read_json(storage.path(run_dir) / STATUS) or {}


def write_launch_record(run_dir, **record) -> None:
    """launch.json: what a launcher saw (attempts, state; local: exit codes; cloud: resource, logs), stamped."""
    storage.write_json(storage.path(run_dir) / LAUNCH, dict(record, updated=time.time()), indent=None, sort_keys=True)


def read_launch_record(run_dir) -> dict:
    """launch.json ({} when absent)."""
    return storage.read_json(storage.path(run_dir) / LAUNCH) or {}


# ------------------------------------------------------------------------------------------ results.csv


def read_results(run_dir) -> list[dict]:
    """The rows of <run dir>/results.csv as dicts of strings (local or gs://); [] when the run has none yet."""
    from ladder import results

    file = storage.path(run_dir) / RESULTS
    text = storage.read_text(file)
    if not text or not text.strip():
        return []
    header, fields = results._split_csv(text, file)  # the table reader's checks: field counts, quotes, names
    missing = [k for k in results.REQUIRED if k not in header]
    if missing:
        raise LadderError(f"{file}: lacks the columns {missing}, so it is not the table the evaluator writes; "
                          "move it away and re-run the evaluation (`ladder eval`)")
    return [dict(zip(header, values)) for values in zip(*fields)]


def write_results(csv_path, step: int, rows: list[dict], warn=None) -> None:
    """An evaluation's rows into a run's results.csv (local or gs://), replacing the rows of `step` and later
    (left by a run killed after evaluating and now resuming from an earlier checkpoint), so a resumed run leaves
    no duplicates. The whole table is rewritten atomically (write_text): a crash leaves the old table or the new
    one, never a torn row (an append did: a SIGKILL mid-append left half a row, and the next evaluation failed
    on it with a traceback). A torn last line left that way is dropped with a note (`warn`, default stderr)."""
    with storage.editing(csv_path):  # another process adding rows to this table (`ladder eval -o`) waits for this edit
        _write_results(csv_path, step, rows, warn)


def _write_results(csv_path, step: int, rows: list[dict], warn) -> None:
    import csv
    import io

    from ladder import results

    text = storage.read_text(csv_path) or ""
    if text and not text.endswith("\n"):  # rows end in \r\n: a table not ending in \n ends in a torn row
        cut = text.rfind("\n") + 1
        (warn or (lambda m: print(m, file=sys.stderr)))(
            f"ladder: {csv_path}: dropped a torn last line ({len(text) - cut} characters) left by a crash")
        text = text[:cut]
    header, kept = None, []
    if text.strip():
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames
        for i, r in enumerate(reader, start=2):
            try:
                before = float(r.get("step")) < step
            except (TypeError, ValueError):
                raise LadderError(f"{csv_path}: line {i} has no step ({r.get('step')!r}), so it is not a row the "
                                  "evaluator writes; delete that line, or move the file away (`ladder eval` "
                                  "rescores a run's checkpoints)") from None
            if before:
                kept.append(r)
    header = header or results.header_for(rows)
    results._check_columns(csv_path, rows, header)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    for r in kept + rows:
        w.writerow({k: r.get(k, "") for k in header})
    storage.write_text(csv_path, buf.getvalue())


def collect(plan: dict, run_root, out, *, overwrite: bool = False, plan_columns: bool = True
            ) -> tuple[int, list[str]]:
    """Gather the evaluation rows of every rung in plan["rungs"] (run dir <run_root>/<name>) into one results
    table at `out`. Returns (rows written, names of rungs without results).

    With plan_columns, rows missing the plan-level columns get them from the rung: size, multiple, and
    flops (tokens seen `d` x the plan's FLOPs per token). An existing `out` is never overwritten unless
    asked. LadderError when no rung has results yet."""
    from ladder import results

    if os.path.exists(out) and not overwrite:
        raise LadderError(f"-o {out}: file exists; pass --overwrite to replace it, or choose another name")
    rows, missing = [], []
    for rung in plan["rungs"]:
        got = read_results(storage.join(run_root, rung["name"]))
        if not got:
            missing.append(rung["name"])
        for row in got:
            # a rung's rows are its own: a results.csv copied from another run mixed a stranger into the fit
            require(row.get("run") == rung["name"], f"{storage.join(run_root, rung['name'])}/results.csv",
                    f"has rows for run {row.get('run')!r}, not for the rung {rung['name']!r}",
                    "collect only rungs the plan trained (is the file from another run?)")
            if plan_columns:
                row.setdefault("size", rung["size"])
                row.setdefault("multiple", rung["multiple"])
                if "flops" not in row and row.get("d") not in (None, ""):
                    row["flops"] = float(row["d"]) * float(rung["flops_per_token"])
            rows.append(row)
    if not rows:
        raise LadderError(f"{run_root}: no rung has evaluation results (results.csv) yet; "
                          f"see `ladder status` for progress")
    # the table `ladder predict` would reject (a row twice, a NaN accuracy) is refused before it is written
    results.validate_table(results.columns(rows, f"the rungs' results under {run_root}"),
                           f"the rungs' results under {run_root}")
    results.write_table(out, rows)
    return len(rows), missing

