"""What a `ladder run` directory holds, and the checks each re-run makes before any stage: every entry of
the right kind, config.json the same config, plan files that are this config's plan, and stage records that
still hold (a record whose files are gone or unreadable runs that stage again, with those after it).
docs/run.md, "Resuming, and damaged state files". No JAX here.

`ctx` below is a `ladder.run.Context` (out, plan_path, check_plan_path, run_root, cfg).
"""

from __future__ import annotations

import json
from pathlib import Path

from ladder.errors import LadderError, require

STAGES = ("plan", "train", "collect", "predict", "self_check", "report")

# What `ladder run` keeps in its run directory, by kind: something of the other kind there is named at the
# start (rundir.check_layout), never met later as a failed write.
RUN_FILES = ("config.json", "plan.json", "self_check_plan.json", "stages.json", "results.csv", "predictions.json",
             "backtest.json", "self_check.json", "report.md", "lock.json")
RUN_DIRECTORIES = ("rungs", "plots")
# The files each recorded stage wrote and a later stage reads (a stage whose files are gone or unreadable is
# run again, with those after it).
STAGE_FILES = {"collect": ("results.csv",), "predict": ("predictions.json", "backtest.json"),
               "self_check": ("self_check.json",), "report": ("report.md",)}


def read_stages(out: Path) -> dict:
    from ladder.storage import read_json

    return read_json(out / "stages.json") or {}


def write_stages(out: Path, stages: dict) -> None:
    from ladder.storage import write_json

    write_json(out / "stages.json", stages, sort_keys=True)


def recorded_stages(ctx, make_plans, note) -> dict:
    """stages.json's records that still hold: the longest run of stages, in order, each well formed and its
    files readable. Whatever follows a record that does not hold runs again, with a note: stages are
    deterministic and resumable (finished rungs are skipped, partial ones resume), so nothing is lost but time,
    and the plan check keeps another plan's rungs out."""
    from ladder.storage import read_bytes, read_json

    path = ctx.out / "stages.json"
    raw = read_json(path)
    if raw is None and read_bytes(path) is not None:
        note(f"{path} is unreadable (not the JSON `ladder run` writes); every stage runs again (finished rungs "
             "are skipped, partial ones resume from their checkpoints)")
    raw = raw or {}
    kept = {}
    for name in STAGES:
        record = raw.get(name)
        if record is None:
            break
        problem = None
        if not (isinstance(record, dict) and isinstance(record.get("seconds"), (int, float))):
            problem = f"{path}: the record of {name} is not one `ladder run` writes"
        elif name == "plan":
            damaged = check_plan_files(ctx, *make_plans(ctx))
            problem = damaged and "; ".join(damaged) + " (written again from this run's config: the same plan)"
        elif name == "train":  # its rungs matter until collect has read them (never re-train a finished ladder)
            problem = None if "collect" in raw else _rungs_not_done(ctx)
        else:
            problem = _unreadable(ctx, name)
        if problem:
            note(f"{problem}; the stage {name} runs again, with those after it")
            break
        kept[name] = record
    return kept


def _rungs_not_done(ctx) -> str | None:
    """Which rungs of a recorded train stage are no longer done (a run directory deleted or replaced)."""
    from ladder.launch.jobs import load
    from ladder.launch.status import ladder_status

    names = [r.name for r in ladder_status(load(str(ctx.plan_path)), ctx.run_root) if r.state != "done"]
    return names and f"the rungs {', '.join(names)} under {ctx.run_root} are not done (run directories changed since)"


def _unreadable(ctx, stage: str) -> str | None:
    """Which of a finished stage's files is missing or unreadable, or None."""
    from ladder import results
    from ladder.storage import read_json

    if stage == "self_check" and not ctx.cfg.self_check.enabled:
        return None
    for name in STAGE_FILES.get(stage, ()):
        path = ctx.out / name
        if not path.is_file():
            return f"{path} is missing"
        try:  # an empty JSON object is readable (backtest.json of a ladder too small to back-test)
            ok = (bool(results.read_table(path)) if name.endswith(".csv") else
                  path.suffix != ".json" or read_json(path) is not None)
        except LadderError:
            ok = False
        if not ok:
            return f"{path} is unreadable"
    return None


def open_run_dir(out: Path, cfg) -> bool:
    """Check the run directory's layout and its config.json against `cfg` (writing it for a new run); True when
    `out` already held this config's run (a resume)."""
    from ladder import rundir, storage

    rundir.check_layout(out, "--out", files=RUN_FILES, directories=RUN_DIRECTORIES)
    saved = out / "config.json"
    text = cfg.to_json(sort_keys=True)
    if saved.exists():
        require(read_saved_config(saved) == json.loads(text), str(out),
                "this run directory was made with another config", "use another --out, or delete it")
        return True
    # A new run (a dry run may have left its plan here: it is written again).
    left = sorted(n for n in ("stages.json", "rungs") if (out / n).exists())
    require(not left, "--out", f"{out} holds {' and '.join(left)} but no config.json, so the config that made "
            "them is unknown (going on could mix two ladders)", "restore config.json, or use another --out")
    storage.write_text(saved, text)
    return False


def read_saved_config(path: Path) -> dict:
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
        if isinstance(saved, dict):
            return saved
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    raise LadderError(f"--out: {path} is unreadable (not the JSON `ladder run` writes), so the config of this "
                      "run is unknown; restore it, or use another --out")


def check_plan_files(ctx, plan: dict, check: dict | None) -> list[str]:
    """The plan files of the run directory that are absent or unreadable (to be written again from the config:
    a plan is a function of it). A readable plan file that differs from the config's plan is a LadderError: the
    rungs trained so far may come from it, and training on from another plan would mix two ladders."""
    from ladder.plan import load_plan

    damaged = []
    for path, want in ((ctx.plan_path, plan), (ctx.check_plan_path, check)):
        if want is None:
            continue
        if not path.exists():
            damaged.append(f"{path} is missing")
            continue
        try:
            found = load_plan(path)
        except LadderError:
            damaged.append(f"{path} is unreadable")
            continue
        if found != json.loads(json.dumps(want, default=float)):
            raise LadderError(f"--out: {path} is not the plan this run's config gives (edited by hand, or written by "
                              "another version of ladder), and its rungs may have trained from it; restore it, or "
                              "use another --out")
    return damaged
