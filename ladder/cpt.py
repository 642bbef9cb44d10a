"""A continual-pretraining (CPT) study end to end: base runs, a CPT grid, the specialization laws, a check.

    cfg = default_config()                      # or configs/specialization.py
    summary = run_study(cfg, "runs/specialization")

Stages, each resumable (a finished run is skipped, a killed one resumes from its checkpoint):
  1. plan      base rungs from the planner (general data only); CPT rungs from ladder.plan.cpt_grid:
               every base x domain share r x budget (tokens per parameter), a re-warmup and its own decay
  2. train     base runs (mix.r = 0: general data), then CPT runs from each base's final checkpoint
               (init.from_run, with its Adam state when cpt.restore_optimizer) on general (weight 1 - r) +
               domain (weight r) data; each run evaluates general_loss / domain_loss (bits per byte,
               held-out validation split) at its end
  3. collect   every run's results.csv into <out>/results.csv (the columns of docs/specialization.md)
  4. fit       the D-CPT law (as `ladder fit dcpt --holdout`) with rule (a) at the largest size and budget; with
               fit.positive_share also the law fitted on own-data share > 0 (dcpt.positive_share: why)
  5. check     a CPT run at rule (a)'s ratio: its measured general-loss rise against the tolerance and both
               losses against each fitted law's prediction
  6. report    the compute effectiveness of domain vs general CPT (as `ladder report specialization`)
  7. split     the split law against its baselines on held-out runs
  8. domains   with cross_domains: every domain held out in turn (ladder.cpt_domains)
This module plans and trains; stages 4-7 are library calls on the runs' results (ladder.cpt_laws, no JAX).
Output: <out>/study.json (every figure above plus stage times), the fit's and report's JSON/CSV/PNG under
<out>/specialization/. docs/specialization.md ("Smoke study") has the measured figures.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import ml_collections

from ladder import rundir, storage
from ladder.cpt_domains import cross_domain_stage, study_domains
from ladder.cpt_laws import (compare_split_laws, final_row, fit_study, grid_table, predicted_at, report_study,
                             rule_a_budget)
from ladder.errors import LadderError, require


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "specialization"
    c.out_dir = "runs/specialization"
    # Base runs: planner sizes of a preset family, one Chinchilla multiple, general data only.
    # Four sizes: with three, the held-out largest size left two to fit alpha and A on (5-8% error).
    c.base = dict(preset="smoke", sizes=["45k", "93k", "160k", "250k"], multiple=0.5)
    c.general = "prose,code"  # embedded domains of the general mixture (natural proportions)
    c.domain = "legal"  # the embedded domain specialized to
    # More embedded domains for the cross-domain D-CPT law held out (ladder.laws.dcpt_cross): each gets the
    # grid's r > 0 runs (the r = 0 runs are general CPT, shared), every run scores every domain's loss
    # (eval.lm_loss_domains), and the stage `cross_domain` leaves each domain out in turn.
    c.cross_domains = []
    c.cross_domain_sizes = []  # base sizes their runs continue (default: every size)
    c.ratios = [0.0, 0.1, 0.2, 0.33, 0.5, 0.67, 0.8, 0.9, 1.0]  # domain shares r of the CPT mixture
    # CPT tokens per parameter. The re-warmup first raises the loss (the "stability gap"); at 0.25 tokens per
    # parameter the runs were still inside it, so the budgets start at 0.5 (docs/specialization.md).
    c.budgets = [0.5, 1.0, 2.0]
    # Extra general-CPT (r = 0) budgets, tokens per parameter: longer than `budgets` so that general CPT reaches
    # the domain runs' domain loss and the compute ratio is interpolated rather than bounded (report stage).
    c.general_budgets = []
    # CPT runs: batch (sequences), peak LR as a factor of the base's, re-warmup share of steps, whether the
    # base's Adam moments come along (a fresh Adam state makes the first updates sign-like: at 160k after
    # 0.25 tokens per parameter at r = 0 general loss rose 5.5% over the base without them, 3.6% with them),
    # data seed offset (a CPT run reads its data from batch 0: another seed avoids replaying the base's order).
    c.cpt = dict(global_batch=8, lr_factor=0.5, warmup_fraction=0.05, restore_optimizer=True, seed_offset=1)
    # Train-config overrides (`key=value`, as --config.key=value) for every run, base and CPT.
    c.train_overrides = ["model.scan_layers=False", "eval.tasks=legal_continuation", "eval.n_questions=500",
                         "eval.lm_loss_batches=8", "eval.batch_size=16", "train.log_every=50",
                         "train.checkpoint_every=0"]
    # positive_share: also fit the law on own-data share > 0 only (ladder.laws.dcpt.positive_share: why).
    c.fit = dict(holdout=True, starts=24, tolerance=0.03, positive_share=True)
    c.check = True  # train a CPT run at rule (a)'s ratio and compare
    return c


def check_config(cfg) -> None:
    """Unknown keys (typos) and values the study cannot use, as one-line LadderErrors naming the field."""
    from ladder.config_checks import check_known_keys

    check_known_keys(cfg, default_config())
    require(0.0 in list(cfg.ratios) and all(0 <= r <= 1 for r in cfg.ratios), "ratios", f"{list(cfg.ratios)}",
            "give domain shares in [0, 1] including 0 (general CPT: the reference of rule (a) and of the report)")
    require(len(cfg.budgets) >= 2 and all(b > 0 for b in cfg.budgets), "budgets", f"{list(cfg.budgets)}",
            "give 2+ positive CPT budgets in tokens per parameter (the law needs 2+ token counts)")
    require(len(cfg.base.sizes) >= 2, "base.sizes", f"{list(cfg.base.sizes)}", "give 2+ model sizes")
    # checked before the base runs train: global_batch 0 was a ZeroDivisionError, a negative lr_factor and
    # fit.starts 0 failed only after every base run had trained
    def whole(v, lo):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    def positive(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    require(all(positive(b) for b in cfg.general_budgets), "general_budgets", f"{list(cfg.general_budgets)}",
            "give positive CPT budgets in tokens per parameter (or leave it empty)")
    stray = [s for s in cfg.cross_domain_sizes if s not in list(cfg.base.sizes)]
    require(not stray, "cross_domain_sizes", f"{stray} are not base sizes, so no run would continue them",
            f"choose from base.sizes {list(cfg.base.sizes)} (or leave it empty for every size)")
    require(whole(cfg.cpt.global_batch, 1), "cpt.global_batch", f"{cfg.cpt.global_batch!r}", "give a batch >= 1")
    require(positive(cfg.cpt.lr_factor), "cpt.lr_factor", f"{cfg.cpt.lr_factor!r} is not a positive number",
            "give the CPT peak LR as a factor of the base's, e.g. 0.5")
    require(whole(cfg.cpt.seed_offset, 0), "cpt.seed_offset", f"{cfg.cpt.seed_offset!r}", "give a whole number >= 0")
    require(whole(cfg.fit.starts, 1), "fit.starts", f"{cfg.fit.starts!r}", "give 1 or more L-BFGS starts, e.g. 24")
    require(positive(cfg.fit.tolerance) or cfg.fit.tolerance == 0, "fit.tolerance",
            f"{cfg.fit.tolerance!r} is not a number >= 0",
            "give the allowed general-loss rise as a fraction, e.g. 0.03")


# --------------------------------------------------------------------------------------------- planning


def plan_study(cfg) -> tuple[list[dict], list[dict]]:
    """(base rungs, CPT rungs) as plan-like dicts."""
    from ladder.plan import plan_ladder
    from ladder.plan.cpt_grid import cpt_grid

    require(len(cfg.ratios) >= 3, "ratios", f"{len(cfg.ratios)} ratios", "give 3+ domain shares (the law needs them)")
    plan = plan_ladder(preset=cfg.base.preset, sizes=list(cfg.base.sizes), multiples=[cfg.base.multiple])
    bases = plan["rungs"]
    cpt_bases = [dict(b, batch_sequences=cfg.cpt.global_batch, batch_tokens=cfg.cpt.global_batch * b["seq_len"])
                 for b in bases]
    rungs = cpt_grid(cpt_bases, list(cfg.ratios), list(cfg.budgets), warmup_fraction=cfg.cpt.warmup_fraction,
                     lr_factor=cfg.cpt.lr_factor, restore_optimizer=cfg.cpt.restore_optimizer)
    for extra_domain in cfg.cross_domains:
        sized = {b["name"] for b in bases if b["size"] in (cfg.cross_domain_sizes or cfg.base.sizes)}
        rungs += [dict(r, name=r["name"].replace("-cpt-", f"-{extra_domain}-cpt-"), domain=extra_domain)
                  for r in rungs if r["r"] > 0 and "domain" not in r and r["base_run"] in sized]
    extra = [b for b in cfg.general_budgets if b not in list(cfg.budgets)]
    if extra:
        rungs += [dict(r, general_extension=True) for r in cpt_grid(
            cpt_bases, [0.0], extra, warmup_fraction=cfg.cpt.warmup_fraction, lr_factor=cfg.cpt.lr_factor,
            restore_optimizer=cfg.cpt.restore_optimizer)]
    for r in rungs:
        r["seed"] = r["seed"] + cfg.cpt.seed_offset
    return bases, rungs


def study_configs(cfg, out: Path) -> tuple[list[dict], list[dict], list]:
    """(base rungs, CPT rungs, the train config of each, bases first), every config resolved and checked before
    the first run trains: cross_domains=['nosuch'], a domain inside `general` or budgets of 10^30 tokens per
    parameter were refused only when their CPT run started, after every base run had trained."""
    bases, rungs = plan_study(cfg)
    return bases, rungs, [run_config(cfg, rung, out) for rung in bases + rungs]


def run_config(cfg, rung: dict, out: Path):
    """The train config of a base rung (no `init_from`) or a CPT rung: the study's train_overrides, then
    embedded data mixed general/domain at the rung's share r, then (CPT) the base run to continue from."""
    from ladder.train_config import resolve_rung

    study = ["data.source=embedded", f"mix.general={cfg.general}", f"mix.domain={rung.get('domain', cfg.domain)}",
             f"mix.r={float(rung.get('r', 0.0))!r}"]
    if len(study_domains(cfg)) > 1:
        study.append(f"eval.lm_loss_domains={','.join(study_domains(cfg))}")
    if "init_from" in rung:
        study += [f"init.from_run={out / 'runs' / rung['base_run']}",
                  f"init.restore_optimizer={bool(rung['init_from']['restore_optimizer'])}"]
    config, _ = resolve_rung(None, rung, list(cfg.train_overrides) + study)
    return config


# --------------------------------------------------------------------------------------------- training


def train_run(config, run_dir: Path, log) -> float:
    """Train (or resume, or skip when done) one run with evaluation; returns seconds spent."""
    from ladder.eval import make_on_eval
    from ladder.train import train

    if rundir.read_status(run_dir).get("state") == "done":
        log(f"# {run_dir.name}: done, skipped")
        return 0.0
    t = time.perf_counter()
    summary = train(config, run_dir, on_eval=make_on_eval(config, run_dir))
    require(summary["state"] == "done", str(run_dir), f"stopped in state {summary['state']}",
            "run the same command again to resume")
    seconds = time.perf_counter() - t
    log(f"# {run_dir.name}: loss {summary['loss']:.4f} in {seconds:.1f}s")
    return seconds


def collect(runs: list[dict], out: Path, path: Path) -> int:
    """Every run's results.csv (run dirs <out>/runs/<name>) into one table at `path` (rewritten); returns the
    number of rows. The rows are kept as the evaluator wrote them (no plan columns: these are not plan rungs)."""

    n, missing = rundir.collect({"rungs": runs}, out / "runs", path, overwrite=True, plan_columns=False)
    if missing:
        raise LadderError(f"{out / 'runs' / missing[0]}: has no results.csv; train it with evaluation first")
    return n


@contextlib.contextmanager
def compilation_cache(directory: Path):
    """JAX's persistent compilation cache for the block: the runs of one size and budget compile the same
    programs (only the data mixture differs), so all but the first load them (compiling is most of a tiny
    run's time). The settings are process-global, so they are put back after: a later compile in the same
    process (a notebook's `ladder compile` for a TPU topology) read this CPU cache and warned."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    keys = {"jax_compilation_cache_dir": str(directory), "jax_persistent_cache_min_compile_time_secs": 0.0,
            "jax_persistent_cache_min_entry_size_bytes": 0}
    before = {k: getattr(jax.config, k) for k in keys}
    try:
        for k, v in keys.items():
            jax.config.update(k, v)
        cc.reset_cache()  # the cache object is made once, at first use, for the directory of that moment
        yield
    finally:
        for k, v in before.items():
            jax.config.update(k, v)
        cc.reset_cache()


def run_study(cfg, out=None, log=print) -> dict:
    """Every stage above; returns (and writes to <out>/study.json) the summary. The fit and the report are
    the library calls under `ladder fit dcpt` and `ladder report specialization` (ladder.specialization)."""
    require(bool(str(out or cfg.out_dir).strip()), "out_dir", "is empty (the run would land in the current "
            "directory)", "set --config.out_dir=DIR or pass -o DIR")
    out = Path(out or cfg.out_dir)
    require(not out.exists() or out.is_dir(), "--out", f"{out} is a file, not a study directory",
            "give a directory (new, or a study to resume)")
    out.mkdir(parents=True, exist_ok=True)
    with compilation_cache(out / "jax_cache"):
        return _run_stages(cfg, out, log)


@contextlib.contextmanager
def _timed(times: dict, stage: str):
    """Record the block's wall seconds as times[stage] (study.json's "seconds": where a study's time goes)."""
    start = time.perf_counter()
    yield
    times[stage] = time.perf_counter() - start


def _run_stages(cfg, out: Path, log) -> dict:
    from ladder.results import read_table

    times, summary = {}, {"name": cfg.name}
    with _timed(times, "plan"):
        bases, rungs, configs = study_configs(cfg, out)
        storage.write_json(out / "rungs.json", {"base": bases, "cpt": rungs}, indent=1)
        log(f"# plan: {len(bases)} base runs, {len(rungs)} CPT runs ({len(cfg.ratios)} ratios x "
            f"{len(cfg.budgets)} budgets per size)")

    with _timed(times, "train"):
        runs = list(zip(bases + rungs, configs))
        for i, (rung, config) in enumerate(runs, 1):  # the trainer's step lines do not name their run: this line does
            log(f"# run {i}/{len(runs)}: {rung['name']}")
            train_run(config, out / "runs" / rung["name"], log)

    with _timed(times, "collect"):
        results_path = out / "results.csv"
        main = [r for r in rungs if "domain" not in r]  # the study's own domain; cross-domain runs apart
        summary["rows"] = collect(bases + main, out, results_path)
        if cfg.cross_domains:
            collect(bases + rungs, out, out / "results_domains.csv")

    with _timed(times, "fit"):  # rule (a) at the largest size and budget of the grid
        spec = out / "specialization"
        table = read_table(results_path)
        largest = max(bases, key=lambda b: b["n"])
        d_rule = rule_a_budget(rungs, largest)
        fitted, laws = fit_study(cfg, grid_table(table, rungs), largest["n"], d_rule, spec)
        summary |= fitted
        rule = summary["rule_a"]
    log(f"# D-CPT R^2: domain {summary['dcpt']['domain']['r2']:.4f}, general {summary['dcpt']['general']['r2']:.4f}; "
        f"rule (a) at N={largest['n']}, D={d_rule}, T={cfg.fit.tolerance:.0%}: r* = {rule['r']:.4f}")

    if cfg.check:
        with _timed(times, "check"):
            (reference,) = [r for r in rungs if r["base_run"] == largest["name"] and r["r"] == 0
                            and r["d_cpt"] == d_rule]
            summary["check"] = check_rule_a(cfg, out, largest, reference, rule, laws, log)

    with _timed(times, "report"):
        summary["effectiveness"] = report_study(table, spec)  # every general run: the longer ones are its reach
    with _timed(times, "split_comparison"):
        summary["split_comparison"] = compare_split_laws(results_path, cfg.fit.starts, spec)
    if cfg.cross_domains:
        with _timed(times, "cross_domain"):
            summary["cross_domain"] = cross_domain_stage(cfg, out, bases, rungs, spec)
    summary["seconds"] = times
    storage.write_json(out / "study.json", summary, indent=1)
    log(f"# wrote {out / 'study.json'}; stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return summary


def check_rule_a(cfg, out: Path, base: dict, reference: dict, rule: dict, laws: dict, log) -> dict:
    """Train the CPT run rule (a) asks for (same base and budget as `reference`, the grid's r = 0 run) and
    compare: its general-loss rise over the measured reference against the tolerance, and both losses with
    each fitted law's prediction (ladder.cpt_laws.predicted_at)."""
    from ladder.plan.cpt_grid import cpt_grid

    r_star = round(rule["r"], 3)
    cpt_base = dict(base, batch_sequences=cfg.cpt.global_batch, batch_tokens=cfg.cpt.global_batch * base["seq_len"])
    (rung,) = cpt_grid([cpt_base], [r_star], [reference["d_cpt"]], per_param=False,
                       warmup_fraction=cfg.cpt.warmup_fraction, lr_factor=cfg.cpt.lr_factor,
                       restore_optimizer=cfg.cpt.restore_optimizer)
    require(rung["total_steps"] == reference["total_steps"], "check", "the check run's length differs", "report a bug")
    rung["seed"] += cfg.cpt.seed_offset
    rung["name"] = f"{base['name']}-check-r{r_star:g}"
    run_dir = out / "runs" / rung["name"]
    train_run(run_config(cfg, rung, out), run_dir, log)
    measured = final_row(run_dir)
    general_r0 = float(final_row(out / "runs" / reference["name"])["general_loss"])
    check = {
        "run": rung["name"], "r": r_star, "n": float(measured["n"]), "d_cpt": float(measured["d_cpt"]),
        "domain_loss": float(measured["domain_loss"]), "general_loss": float(measured["general_loss"]),
        "general_loss_r0": general_r0, "general_rise": float(measured["general_loss"]) / general_r0 - 1,
        "tolerance": cfg.fit.tolerance,
    }
    check["predicted"] = predicted_at(laws, check, r_star)
    check["within_tolerance"] = bool(check["general_rise"] <= cfg.fit.tolerance)
    log(f"# check r={r_star}: domain loss {check['domain_loss']:.4f} (law {check['predicted']['published']['domain_loss']:.4f}), "
        f"general loss +{check['general_rise']:.2%} over r=0 (tolerance {cfg.fit.tolerance:.0%})")
    return check


def main_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
