"""`ladder run CONFIG`: plan -> train every rung -> collect -> predict -> self-check -> report.

Each stage writes its outputs into the run directory and records itself in `stages.json` (wall time and
the compute it spent); a re-run skips recorded stages, and the train stages resume partial rungs from their
checkpoints (the launcher skips finished rungs and the trainer resumes the others). With a cloud backend the
train stage submits the rungs and stops: run the same command again once they are done to go on.

The self-check trains a model larger than every rung (at a size this machine affords) and compares its
measured task loss and accuracy with what the ladder predicted for it: an honest out-of-sample check.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path

import ml_collections
import numpy as np

from ladder.errors import require
from ladder.run_config import validate

from ladder.run_state import STAGES  # the stages in order (run_state checks their records)


@dataclasses.dataclass
class Context:
    cfg: ml_collections.ConfigDict
    out: Path
    dry_run: bool = False
    print_fn: object = print
    plan_dir: Path | None = None  # where plans are written when not into `out` (a dry run on an existing run)
    resumed: bool = False  # `out` held this config's run already (its rungs may have trained from its plan)

    @property
    def plan_path(self) -> Path:
        return (self.plan_dir or self.out) / "plan.json"

    @property
    def check_plan_path(self) -> Path:
        return (self.plan_dir or self.out) / "self_check_plan.json"

    @property
    def run_root(self) -> str:
        return self.cfg.launch.run_root or str(self.out / "rungs")


# ------------------------------------------------------------------------------------------- stages
def make_plans(ctx: Context) -> tuple[dict, dict | None]:
    """(the ladder's plan, the self-check's plan or None): a pure function of the config, so a re-run can
    check the plan files it finds against them (`run_state.check_plan_files`)."""
    from ladder import plan as plan_lib
    from ladder.train_config import resolve_rung

    p = ctx.cfg.plan
    eval_fractions = list(p.eval_fractions) or None
    plan = plan_lib.plan_ladder(list(p.targets), fraction=p.fraction or None, sizes=list(p.sizes) or None,
                                multiples=list(p.multiples) or None, preset=p.preset or None, seed=p.seed,
                                eval_fractions=eval_fractions)
    _skip_rungs(plan, list(p.skip))
    for rung in plan["rungs"]:  # unknown keys and wrong types in train_overrides fail here, not on a paid slice
        resolve_rung(plan, rung, ctx.cfg.train_overrides)
    if not ctx.cfg.self_check.enabled:
        return plan, None
    from ladder.laws.predict import FINAL_WINDOW
    from ladder.plan.presets import FAMILIES

    # The check is compared on the mean of its last FINAL_WINDOW evaluations only, so it is evaluated there
    # only (earlier evaluations of the largest model cost ~3% of the smoke job and were never read).
    tail = sorted(eval_fractions or FAMILIES[plan["family"]].eval_fractions)[-FINAL_WINDOW:]
    check = plan_lib.plan_ladder(list(p.targets), sizes=[ctx.cfg.self_check.size],
                                 multiples=[ctx.cfg.self_check.multiple], preset=None, seed=p.seed,
                                 eval_fractions=tail)
    check["rungs"][0]["name"] = f"check-{check['rungs'][0]['name']}"
    largest = max(r["n"] for r in plan["rungs"])
    require(check["rungs"][0]["n"] > largest, "self_check.size",
            f"{check['rungs'][0]['n']:,} parameters is not larger than the largest rung ({largest:,})",
            "a self-check must extrapolate: choose a larger size")
    return plan, check


def stage_plan(ctx: Context) -> dict:
    from ladder import plan as plan_lib

    plan, check = make_plans(ctx)
    if ctx.resumed:
        from ladder.run_state import check_plan_files

        check_plan_files(ctx, plan, check)  # never replace the plan a run's rungs were trained from
    plan_lib.write_plan(plan, ctx.plan_path)
    ctx.print_fn(plan_lib.format_table(plan))
    if check is not None:
        plan_lib.write_plan(check, ctx.check_plan_path)
    return {"rungs": len(plan["rungs"]), "fraction": plan["fraction"]}


def _launch(ctx: Context, plan_path: Path, label: str, extra_plans: tuple[Path, ...] = ()) -> dict:
    """Launch a plan's rungs with the configured backend; block (with a progress line) for `local`. The rungs of
    `extra_plans` (local only) train in the same pool; the stage's record counts the plan's own rungs."""
    from ladder.launch import LaunchOptions, launch_plan
    from ladder.launch.jobs import load
    from ladder.launch.status import ladder_status

    L = ctx.cfg.launch
    opts = LaunchOptions(
        str(plan_path), ctx.run_root, backend=L.backend, dry_run=ctx.dry_run, chip=L.chip,
        overrides=tuple(ctx.cfg.train_overrides), parallel=L.parallel, max_attempts=L.max_attempts,
        stall_minutes=L.stall_minutes,
        project=L.project or None, zone=L.zone or None, package=L.package or None, image=L.image or None,
        cluster=L.cluster or None, spot=L.spot, devices=list(L.devices) or None,
        extra_plans=tuple(map(str, extra_plans)))
    plan = load(str(plan_path))
    if ctx.dry_run or L.backend != "local":
        rc = launch_plan(opts, print_fn=ctx.print_fn)
        require(rc == 0, "launch", f"the {L.backend} launch exited {rc}", "see the messages above")
        if ctx.dry_run:
            return {"dry_run": True}
        rows = ladder_status(plan, ctx.run_root)
        if any(r.state != "done" for r in rows):
            raise Pending(f"{label}: rungs submitted to {L.backend}; run the same command again when "
                          f"`ladder status {plan_path} --run-root {ctx.run_root}` shows them done")
        return {}
    # The launcher runs in this thread, so Ctrl-C / SIGTERM reach it and it stops its trainers (which save a
    # checkpoint); a daemon thread draws the progress line from the rungs' status files meanwhile.
    log, stop = [], threading.Event()
    start = time.time()
    extras = [load(str(p)) for p in extra_plans]

    def every_row():
        return [r for p in (plan, *extras) for r in ladder_status(p, ctx.run_root)]

    def progress():
        while not stop.wait(2.0):
            show_progress(label, every_row(), time.time() - start)

    thread = threading.Thread(target=progress, daemon=True)
    thread.start()
    try:
        launch_plan(opts, print_fn=log.append)
    finally:
        stop.set()
        thread.join()
        show_progress(label, every_row(), time.time() - start, final=True)
        for line in log:
            ctx.print_fn(line)
    rows = ladder_status(plan, ctx.run_root)
    failed = [r.name for r in rows if r.state != "done"]
    require(not failed, "train", f"rungs {', '.join(failed)} did not finish", "see launch.log in their run "
            "directories; run the same command again to retry them")
    return {"flops": sum(r.flops_spent for r in rows), "tokens": sum(r.tokens for r in rows)}


class Pending(Exception):
    """A stage handed work to a cloud backend and cannot finish now (not an error)."""


def show_progress(label: str, rows, elapsed: float, final: bool = False) -> None:
    """Stage, running rung and its step, rungs done, share of compute, ETA for the stage: one line that
    rewrites itself on a terminal, and a plain line every 30 s (and at the end) in a log."""
    tty = sys.stderr.isatty()
    if not (tty or final or int(elapsed) // 30 != int(elapsed - 2.0) // 30):
        return
    done = sum(r.state == "done" for r in rows)
    spent = sum(r.flops_spent for r in rows)
    planned = sum(r.flops_planned for r in rows)
    running = [r for r in rows if r.state == "running"]
    now = ", ".join(f"{r.name} {r.step}/{r.total_steps}" for r in running) or ("-" if final else "starting")
    eta = elapsed * (planned - spent) / spent if spent > 0 else None
    eta_s = f"{eta / 60:.1f} min" if eta is not None else "?"
    line = (f"[{label}] {done}/{len(rows)} rungs done | {now} | {spent / planned:.0%} of compute | "
            f"elapsed {elapsed / 60:.1f} min | ETA {eta_s}")
    sys.stderr.write(f"\r{line}   " + ("\n" if final else "") if tty else line + "\n")
    sys.stderr.flush()


def stage_train(ctx: Context) -> dict:
    """The ladder's rungs and, on the local backend, the self-check's beside them (it reads nothing of theirs; the
    predict stage reads the ladder's rows only): the largest job starts first and both cores stay busy to the end,
    instead of the check training alone afterwards (docs/run.md "Time"). The self-check stage finds it done."""
    check = ctx.cfg.self_check.enabled and ctx.cfg.launch.backend == "local" and not ctx.dry_run
    return _launch(ctx, ctx.plan_path, "train", (ctx.check_plan_path,) if check else ())


def stage_collect(ctx: Context) -> dict:
    from ladder.launch.jobs import load
    from ladder.rundir import collect

    n, missing = collect(load(str(ctx.plan_path)), ctx.run_root, str(ctx.out / "results.csv"), overwrite=True)
    require(not missing, "collect", f"rungs without evaluation rows: {', '.join(missing)}",
            "set eval.tasks in train_overrides and re-run the rungs")
    return {"rows": n}


def _targets(ctx: Context) -> dict[str, tuple[float, float]]:
    from ladder.plan import load_plan

    targets = {t["name"]: (float(t["n"]), float(t["tokens"])) for t in load_plan(ctx.plan_path)["targets"]}
    if ctx.cfg.self_check.enabled:
        r = load_plan(ctx.check_plan_path)["rungs"][0]
        targets[r["name"]] = (float(r["n"]), float(r["tokens"]))
    return targets


def stage_predict(ctx: Context) -> dict:
    import warnings

    from ladder import results
    from ladder.laws.predict import predict
    from ladder.plots import plot_prediction

    cols = results.read_table(ctx.out / "results.csv", validate=True)
    P = ctx.cfg.predict
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(cols, _targets(ctx), method=P.method, n_bootstrap=P.bootstrap, seed=P.seed)
        plot_prediction(pred, cols, ctx.out / "plots")
    from ladder.storage import write_json

    write_json(ctx.out / "predictions.json", pred.to_json(), sort_keys=True)
    backtests = {task: {m: {"error": h.error if np.isfinite(h.error) else None, "loss_error": h.loss_error,
                            "problem": h.problem}
                        for m, h in bt.items()} for task, bt in pred.backtests.items()}
    write_json(ctx.out / "backtest.json", backtests, sort_keys=True)
    ctx.print_fn(pred.table())
    return {"tasks": len(pred.fits)}


def stage_self_check(ctx: Context) -> dict:
    if not ctx.cfg.self_check.enabled:
        return {"skipped": True}
    from ladder import results
    from ladder.laws.predict import FINAL_WINDOW
    from ladder.plan import load_plan
    from ladder.rundir import read_results
    from ladder.storage import join, read_json, write_json

    info = _launch(ctx, ctx.check_plan_path, "self-check")
    rung = load_plan(ctx.check_plan_path)["rungs"][0]
    rows = read_results(join(ctx.run_root, rung["name"]))
    require(bool(rows), "self_check", "the self-check run wrote no evaluation rows", "check its launch.log")
    cols = results.validate_table(results.columns(rows, "self-check results"), "self-check results")
    predicted = (read_json(ctx.out / "predictions.json") or {}).get(rung["name"])  # readable: run_state checked
    require(isinstance(predicted, dict), str(ctx.out / "predictions.json"), f"holds no prediction for the "
            f"self-check run {rung['name']}", "delete it and the 'predict' entry of stages.json so it is written again")
    table = {task: _check_task(cols, task, p, FINAL_WINDOW) for task, p in predicted.items()}
    write_json(ctx.out / "self_check.json",
               {"run": rung["name"], "n": rung["n"], "tokens": rung["tokens"], "tasks": table}, sort_keys=True)
    for task, r in table.items():
        loss = ("loss: n/a (single-step)" if r["loss_err"] is None else
                f"{r['feature']} {r['loss_pred']:.3f} pred vs {r['loss_meas']:.3f} measured ({r['loss_err']:+.1%})")
        ctx.print_fn(f"self-check {task:<20} {loss}; acc {r['acc_pred']:.3f} vs {r['acc_meas']:.3f} "
                     f"({r['acc_err'] * 100:+.1f} pts, interval {'covers' if r['covered'] else 'misses'})")
    from ladder.report import self_check_summary

    ctx.print_fn(self_check_summary(table))
    return info


def _check_task(cols: dict, task: str, p: dict, window: int) -> dict:
    """Predicted vs measured for one task of the self-check run, measured like the ladder's step-1 points
    (mean of the last `window` evaluations). The loss compared is the method's intermediate feature (task loss,
    or the held-out LM loss for lm-loss); single-step has none that is measured."""
    mask = cols["task"] == task
    last = np.argsort(cols["step"][mask])[-window:]
    acc = float(cols["acc"][mask][last].mean())
    feature = p.get("feature", "loss")
    single = p["method"] == "single-step" or p.get("loss") is None  # null: no method predicted the loss
    loss = None if single else float(cols[feature][mask][last].mean())
    lo, hi = (None, None) if single else (p.get("loss_lo"), p.get("loss_hi"))
    return {"method": p["method"], "feature": feature,
            "loss_pred": None if single else p["loss"], "loss_meas": loss,
            "loss_err": None if single else p["loss"] / loss - 1, "loss_lo": lo, "loss_hi": hi,
            "loss_covered": None if lo is None or hi is None else bool(lo <= loss <= hi),
            "acc_pred": p["acc"], "acc_meas": acc, "acc_err": p["acc"] - acc,
            "acc_lo": p["acc_lo"], "acc_hi": p["acc_hi"], "covered": bool(p["acc_lo"] <= acc <= p["acc_hi"])}


def stage_report(ctx: Context) -> dict:
    from ladder.report import write_report

    from ladder.run_state import read_stages

    path = write_report(ctx.out, ctx.run_root, read_stages(ctx.out))
    ctx.print_fn(f"report: {path}")
    return {}


RUNNERS = {"plan": stage_plan, "train": stage_train, "collect": stage_collect, "predict": stage_predict,
           "self_check": stage_self_check, "report": stage_report}


# ------------------------------------------------------------------------------------------- driver
def run(cfg: ml_collections.ConfigDict, out_dir: str | None = None, *, dry_run: bool = False,
        print_fn=print) -> dict:
    """Run (or resume) every stage; returns stages.json's content. A dry run plans and prints the launch,
    writing nothing into an existing run directory (its plan goes to a temporary directory instead)."""
    validate(cfg)
    require(bool(str(out_dir or cfg.out_dir).strip()), "out_dir", "is empty (the run would land in the current "
            "directory)", "set --config.out_dir=DIR or pass -o DIR")
    out = Path(out_dir or cfg.out_dir)
    require(not out.exists() or out.is_dir(), "--out", f"{out} is a file, not a run directory",
            "give a directory (new, or a run to resume)")
    if dry_run:
        import tempfile

        if out.exists() and any(out.iterdir()):
            with tempfile.TemporaryDirectory(prefix="ladder-dry-run-") as scratch:
                print_fn(f"# dry run: {out} is an existing run and is left untouched; the plan below is written "
                         f"to {scratch} and removed afterwards")
                return _run_stages(Context(cfg, out, True, print_fn, Path(scratch)), ("plan", "train"), {})
        out.mkdir(parents=True, exist_ok=True)
        return _run_stages(Context(cfg, out, True, print_fn), ("plan", "train"), {})
    from ladder import run_state
    from ladder.runlock import hold

    with hold(out, "--out"):  # one `ladder run` per run directory
        resumed = run_state.open_run_dir(out, cfg)
        ctx = Context(cfg, out, False, print_fn, resumed=resumed)
        note = lambda m: print(f"ladder run: {m}", file=sys.stderr)  # noqa: E731
        return _run_stages(ctx, STAGES, run_state.recorded_stages(ctx, make_plans, note) if resumed else {})


def _run_stages(ctx: Context, names, stages: dict) -> dict:
    print_fn, out, dry_run = ctx.print_fn, ctx.out, ctx.dry_run
    for name in names:
        if name in stages:
            print_fn(f"== {name}: done earlier ({stages[name]['seconds']:.0f} s), skipped")
            continue
        print_fn(f"== {name}")
        start = time.time()
        try:
            info = RUNNERS[name](ctx)
        except Pending as e:
            print_fn(str(e))
            return stages
        stages[name] = dict(info, seconds=time.time() - start)
        if not dry_run:
            from ladder.run_state import write_stages

            write_stages(out, stages)
    return stages


def _skip_rungs(plan: dict, names: list[str]) -> None:
    """Leave the named rungs out of the sizes x multiples grid (in place; the plan's compute share follows).
    A ladder's cost is dominated by its largest size's longest run: skipping that one rung buys a wider span
    of sizes for the same time (configs/smoke.py, docs/run.md)."""
    grid = [r["name"] for r in plan["rungs"]]
    unknown = [n for n in names if n not in grid]
    require(not unknown, "plan.skip", f"{', '.join(unknown)} is not a rung of this plan",
            f"name rungs of the grid: {', '.join(grid)}")
    plan["rungs"] = [r for r in plan["rungs"] if r["name"] not in names]
    require(bool(plan["rungs"]), "plan.skip", "it leaves no rung", "skip fewer rungs")
    plan["fraction"] = sum(r["share"] for r in plan["rungs"])
