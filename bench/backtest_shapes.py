"""Ladders of other shapes (docs/laws.md "Ladders of other shapes"): the default on ladders like the second
published ladder #13 is judged on (several training sets, ONE final checkpoint per run, C4 loss and per-task
accuracy only, and every run at one tokens-per-parameter ratio, so D = k N).

Two studies, both predicting the largest size from the smaller ones at the same ratio:
  - `olmo`: the published OLMo ladder cut to that shape (final checkpoint, C4 loss, no task loss, no FLOPs,
    one budget: 1xC with its reruns as a second seed); 3B from 190M-1B and 1B from 190M-760M;
  - `synthetic`: ladders drawn from laws fitted on the OLMo ladder (two generators: the paper's chain on the C4
    loss, and the paper's single step), in the SHAPES below (sizes at one ratio, 2-3 seeds each), seed noise
    per task from the OLMo 1xC reruns; each draw predicts the 3.2B runs at the same ratio; error against the
    noisy "measured" target, and whether the default's band covers it.

Methods: the default (`ensemble`, with the menu the table allows: `single-step` and `lm-loss`, the paper's prior
2 on `lm-loss` since C2, and its session-10 rule, ensemble.RULE), `lm-loss` (the paper's chain on the C4 loss:
the paper's method without a task loss), `single-step` (the paper's ablation); `--rules` scores the session-10
candidates (S steep guard, Z unjudged member, P per-task shrink; U upward cells, as S+Z+U) and prints the
pre-registered pass rule's numbers; `--candidates` adds the default before C2 and candidate C1 (`lm-compute`:
the C4 chain with step 1 L(C); not adopted). Intervals are the calibrated band alone (q g^2; `ladder predict`
reports its union with the bootstrap's, at least as wide), so coverage here is a lower bound.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/backtest_shapes.py [--draws 12] [--rules] [--candidates]

Needs ../shared/reference/olmo_ladder (exits otherwise). --rules --draws 6: ~5 CPU-minutes on the shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
SHARED = ROOT.parent / "shared" / "reference"

from ladder.laws import ensemble as ens_mod  # noqa: E402
from ladder.laws.backtest import fit_methods, holdout_fits, run_suite  # noqa: E402
from ladder.laws.ensemble import PAPER_STAND_IN, Rule, calibrate, predicted  # noqa: E402
from ladder.laws.predict import FALLBACK_ORDER, unavailable  # noqa: E402
from ladder.laws.taskfit import METHODS, Method  # noqa: E402

TARGET_N = 3.17e9  # the target: OLMo's 3B, one size step past the ladders' largest 1.28B (g = 1.39)
# (label, fitted sizes, tokens per parameter, runs per size, training sets): OLMo's range at its 1xC and 10xC
# ratios, OLMo's own 4 sizes (the real cut's shape), a DataDecide-like wide ladder (10 sizes from 20M, 100 tokens
# per parameter), and (session 10) 12 sizes over 250x from 5.1M, 3 seeds, several training sets: draw i is set
# i mod 3, a recipe worth m x the tokens (m in 0.5, 1, 2: the law at D_eff = m D), small models near chance
SHAPES = (("8 sizes 150M-1.3B, 20 tok/param", np.geomspace(150e6, 1.28e9, 8), 20.0, 2, (1.0,)),
          ("8 sizes 150M-1.3B, 200 tok/param", np.geomspace(150e6, 1.28e9, 8), 200.0, 2, (1.0,)),
          ("4 sizes 190M-1.3B, 20 tok/param", np.array([190e6, 371e6, 758e6, 1.28e9]), 20.0, 2, (1.0,)),
          ("10 sizes 20M-1.3B, 100 tok/param", np.geomspace(20e6, 1.28e9, 10), 100.0, 2, (1.0,)),
          ("12 sizes 5.1M-1.3B x 3 seeds, 100 tok/param, 3 sets", np.geomspace(1.28e9 / 250, 1.28e9, 12), 100.0, 3,
           (0.5, 1.0, 2.0)))
# the session-10 candidates (docs/laws.md "Ladders of other shapes"): S steep guard, Z unjudged member, P per task
RULES = {"now": Rule(False, False, False), "S": Rule(True, False, False), "Z": Rule(False, True, False),
         "P": Rule(False, False, True), "S+Z": Rule(True, True, False), "S+P": Rule(True, False, True),
         "Z+P": Rule(False, True, True), "S+Z+P": Rule(True, True, True),
         "S+Z+U": Rule(True, True, False, True)}  # U: the upward cells' band (docs/laws.md "interval coverage")
CANDIDATE_METHODS = {"lm-compute": Method("lm-compute", feature="lm_loss", form="c")}


def load_olmo():
    from ladder.importers import import_olmo
    from ladder.results import append_rows, read_table
    from backtest_olmo import acc_only_table

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        append_rows(Path(d) / "olmo.csv", import_olmo(SHARED / "olmo_ladder"))
        full = read_table(Path(d) / "olmo.csv", validate=True)
    return full, acc_only_table(full)


def score(cols: dict, fit_runs, test_runs, tasks, variants: dict) -> dict:
    """Each method's and each variant of the default's errors at the test runs, as `ladder predict` would fit
    them: the ensemble's weights and band from back-tests inside the fit set (one suite of every method the
    variants use, each variant calibrated on its own menu and rule), without splits the fallback method.
    variants: {name: (menu, prior or None, Rule)}. Returns {variant: {"err": {method: [cells]}, "covered", "half", "weights",
    "fallback"}}; the members' errors are the same in every variant."""
    every = list(dict.fromkeys(m for menu, _, _ in variants.values() for m in menu))
    every = [m for m in every if m not in unavailable(cols, every)]
    # the fits and back-tests see a table of the fitted runs only: on the whole table the suite's `beyond`
    # split would predict the test runs themselves, and the weights and band would have seen the answer
    seen = {k: v[np.isin(cols["run"], list(fit_runs))] for k, v in cols.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = run_suite(seen, tasks, list(fit_runs), every, workers=1)
        assert not any(n.startswith("beyond") for n in (next(iter(next(iter(p.values())).values())).split
                                                        for p in suite))
        hs_all = {}
        for task in tasks:
            fits, problems = fit_methods(seen, task, list(fit_runs), every)
            hs_all[task] = holdout_fits(cols, task, fits, list(fit_runs), list(test_runs), problems)
    out = {}
    for vname, (menu, prior, rule) in variants.items():
        menu = [m for m in menu if m in every]
        old = dict(ens_mod.PRIOR)
        if prior is not None:
            ens_mod.PRIOR.clear(), ens_mod.PRIOR.update(prior)
        try:
            cal = calibrate(suite, menu, rule=rule) if suite else None
        finally:
            ens_mod.PRIOR.clear(), ens_mod.PRIOR.update(old)
        # `ladder predict`'s fallback order, `lm-compute` where predict's `lm-loss` is on one ratio
        order = tuple(x for m in FALLBACK_ORDER for x in ((m, "lm-compute") if m == "lm-loss" else (m,)))
        fallback = "" if cal else next(m for m in order + tuple(menu) if m in menu)
        res = {"err": {}, "covered": [], "half": [], "weights": cal.weights if cal else {}, "fallback": fallback}
        for task in tasks:
            hs = hs_all[task]
            for m, h in hs.items():
                res["err"].setdefault(m, []).extend((h.predicted - h.actual).tolist())
            fitted = {m for m, h in hs.items() if m in menu and not h.problem}
            # the default: EnsembleFit's weighted mean of the fitted members (weights renormalised over them),
            # each member held within its steep guard where the rule says so
            tw = cal.weights_for(task) if cal else {fallback: 1.0}
            if cal and not any(tw.get(m, 0) > 0 for m in fitted):
                tw = cal.weights
            w = {m: v for m, v in tw.items() if v > 0 and m in fitted}
            steep = rule.steep and cal is not None
            e = (sum(v * (predicted(hs[m], steep) - hs[m].actual) for m, v in w.items()) / sum(w.values())
                 if w else np.full(len(test_runs), np.nan))
            res["err"].setdefault("ensemble", []).extend(np.asarray(e).tolist())
            if cal and w:
                half = cal.half_width(next(iter(hs.values())).distance)
                res["covered"] += (np.abs(e) <= half).tolist()
                res["half"] += np.broadcast_to(half, np.shape(e)).tolist()
        out[vname] = res
    return out


def olmo_designs(cols: dict) -> list[tuple[str, list[str], list[str]]]:
    """(name, fit runs, test runs): one budget (1xC and its rerun: two seeds per size), largest size out."""
    sizes = ("190M", "370M", "760M", "1B", "3B")
    runs = lambda ss: [f"{s}-1xC{r}" for s in ss for r in ("", "-rerun")]
    return [("OLMo 1xC: 3B from 190M-1B (8 runs)", runs(sizes[:4]), runs(sizes[4:])),
            ("OLMo 1xC: 1B from 190M-760M (6 runs)", runs(sizes[:3]), runs(sizes[3:4]))]


def seed_noise(acc_only: dict, tasks) -> tuple[dict, float]:
    """Seed-to-seed s.d. per task (accuracy) and of the C4 loss (relative), from OLMo's 1xC run/rerun pairs:
    rms(difference) / sqrt(2) over the 5 sizes."""
    final = {(r, t): (a, l) for r, t, a, l in zip(acc_only["run"], acc_only["task"], acc_only["acc"],
                                                    acc_only["lm_loss"])}
    sizes = ("190M", "370M", "760M", "1B", "3B")
    sd = {t: float(np.sqrt(np.mean([(final[(f"{s}-1xC", t)][0] - final[(f"{s}-1xC-rerun", t)][0]) ** 2
                                    for s in sizes]) / 2)) for t in tasks}
    t0 = tasks[0]
    rel = [final[(f"{s}-1xC", t0)][1] / final[(f"{s}-1xC-rerun", t0)][1] - 1 for s in sizes]
    return sd, float(np.sqrt(np.mean(np.square(rel)) / 2))


def generators(full: dict, tasks) -> dict:
    """Laws fitted on the OLMo ladder's default 20 runs (final points and checkpoints): {name: fn(N, D) ->
    (C4 loss, {task: accuracy})}. `chain`: the paper's chain on the C4 loss; `single-step`: C4 loss from the
    same step 1, accuracy from the paper's single step."""
    from ladder.laws.taskdata import select_runs

    runs = select_runs(full)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = {t: fit_methods(full, t, runs, ["lm-loss", "single-step"])[0] for t in tasks}

    def chain(N, D):
        L = fits[tasks[0]]["lm-loss"].predict(N, D)[0]
        return L, {t: fits[t]["lm-loss"].predict(N, D)[1] for t in tasks}

    def single(N, D):
        L = fits[tasks[0]]["lm-loss"].predict(N, D)[0]
        return L, {t: fits[t]["single-step"].predict(N, D)[1] for t in tasks}

    return {"chain": chain, "single-step": single}


def synthetic_table(gen, sizes, ratio: float, tasks, acc_sd: dict, loss_sd: float, rng, seeds: int = 2,
                    worth: float = 1.0) -> tuple[dict, list, list]:
    """One drawn ladder: sizes x `seeds` runs at D = ratio N, plus `seeds` target runs at TARGET_N; one row per
    run and task (the final checkpoint); a training set whose tokens are `worth` x the generator's (the law at
    D_eff = worth D). Returns (cols, fit runs, test runs)."""
    rows = {k: [] for k in ("run", "n", "d", "step", "task", "loss", "acc", "lm_loss")}
    fit, test = [], []
    for N in list(sizes) + [TARGET_N]:
        L, accs = gen(N, worth * ratio * N)
        for s in range(seeds):
            run = f"{N / 1e6:.0f}M-s{s}"
            (test if N == TARGET_N else fit).append(run)
            lm = float(L) * (1 + loss_sd * rng.standard_normal())
            for t in tasks:
                rows["run"].append(run), rows["n"].append(N), rows["d"].append(ratio * N)
                rows["step"].append(0), rows["task"].append(t), rows["loss"].append(np.nan)
                rows["acc"].append(float(np.clip(accs[t] + acc_sd[t] * rng.standard_normal(), 0, 1)))
                rows["lm_loss"].append(lm)
    cols = {k: np.array(v) for k, v in rows.items()}
    return cols, fit, test


def per_task_wins(res: list[dict], tasks, a: str = "ensemble", b: str = "lm-loss") -> str:
    """How many tasks `a` beats or ties `b` on (mean |error| over the draws' cells), and the worst task's gap."""
    def by_task(m):
        out = np.zeros(len(tasks))
        for r in res:  # cells are task-major within a score: tasks x test runs
            e = np.abs(np.asarray(r["err"].get(m, [np.nan] * len(tasks)), dtype=float)).reshape(len(tasks), -1)
            out += e.mean(1)
        return out / len(res)
    ea, eb = by_task(a), by_task(b)
    if not np.isfinite(ea).all() or not np.isfinite(eb).all():
        return "-"
    worst = int(np.argmax(ea - eb))
    return f"{int(np.sum(ea <= eb + 1e-12))} of {len(tasks)} (worst {tasks[worst]} {100 * (ea - eb)[worst]:+.2f})"


def summary_row(name: str, res: list[dict], methods, tasks=None) -> str:
    cells = []
    for m in methods:
        e = np.concatenate([r["err"].get(m, [np.nan]) for r in res])
        cells.append("n/a" if not np.isfinite(e).any() else f"{100 * np.nanmean(np.abs(e)):.2f}")
    cov = np.concatenate([r["covered"] for r in res]) if any(r["covered"] for r in res) else np.array([])
    half = np.concatenate([r["half"] for r in res]) if cov.size else np.array([])
    fb = sorted({r["fallback"] for r in res if r["fallback"]})
    return (f"| {name} | " + " | ".join(cells)
            + f" | {'%.0f%%' % (100 * cov.mean()) if cov.size else '-'} | {'%.1f' % (100 * half.mean()) if cov.size else '-'}"
            + f" | {', '.join(fb) or '-'} |" + (f" {per_task_wins(res, tasks)} |" if tasks else ""))


def rule_checks(raw: dict, tasks) -> str:
    """The pre-registered pass rule's numbers per variant (docs/laws.md "Ladders of other shapes", session 10):
    mean over rows of the rows' mean |error| (points), per generator the default's and `lm-loss`'s, coverage
    of every banded cell, and the (row, task) pairs where the default is worse than `lm-loss`."""
    def mean_abs(res, m):
        e = np.concatenate([r["err"].get(m, [np.nan]) for r in res])
        return 100 * np.nanmean(np.abs(e)) if np.isfinite(e).any() else np.nan

    lines = ["| variant | rows' mean | chain: default / lm-loss | single-step: default / lm-loss | OLMo: default / "
             "lm-loss | covered | (row, task) worse than lm-loss | covered: chain / single-step / OLMo | median "
             "synthetic half-width |", "|---|---|---|---|---|---|---|---|---|"]
    for v, pairs in raw.items():
        gen = {"chain": [], "single-step": [], "OLMo": []}
        gcov: dict = {k: [] for k in gen}
        worse, cov, half = 0, [], []
        for name, res in pairs:
            key = "OLMo" if name.startswith("OLMo") else name.split()[1].rstrip(":")
            gen[key].append((mean_abs(res, "ensemble"), mean_abs(res, "lm-loss")))
            cov += [c for r in res for c in r["covered"]]
            gcov[key] += [c for r in res for c in r["covered"]]
            half += [h for r in res for h in r["half"]] if key != "OLMo" else []  # the synthetic targets'
            w = per_task_wins(res, tasks)
            worse += len(tasks) - int(w.split()[0]) if w != "-" else 0
        cells = [f"{np.mean([a for a, _ in g]):.3f} / {np.mean([b for _, b in g]):.3f}" if g else "-"
                 for g in gen.values()]
        lines.append(f"| {v} | {np.mean([mean_abs(r, 'ensemble') for _, r in pairs]):.3f} | " + " | ".join(cells)
                     + f" | {100 * np.mean(cov):.1f}% of {len(cov)} | {worse} | "
                     + " / ".join(f"{100 * np.mean(c):.1f}%" if c else "-" for c in gcov.values())
                     + f" | {100 * np.median(half):.2f} |")
    return "\n".join(lines)


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=6, help="synthetic ladders per generator and ratio")
    ap.add_argument("--candidates", action="store_true",
                    help="also score the default before C1 and candidate C2 (the pre-registered check)")
    ap.add_argument("--rules", action="store_true",
                    help="score the session-10 candidates S, Z, P in every combination (RULES), not the default alone")
    ap.add_argument("--shapes", help="comma list of SHAPES indices (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="the synthetic draws' seed (fresh draws for a second check)")
    ap.add_argument("--only-rules", help="comma list of RULES names to score (with --rules)")
    ap.add_argument("--stand-in-prior", type=float,
                    help="also score each rule with this prior on lm-loss in place of C2's 2 (candidate P2)")
    ap.add_argument("--tasks", help="comma list (default: all 8)")
    ap.add_argument("--only", choices=("olmo", "synthetic"))
    return ap.parse_args()


def variants_of(args) -> dict:
    """{name: (menu, prior, Rule)}: the default on a one-ratio table without task loss is C2, the paper's prior
    on lm-loss (ensemble.PAPER_STAND_IN), under its rule (or each of RULES); `lm-compute` (candidate C1, not
    adopted) is the C4 chain with step 1 L(C)."""
    variants = {f"rule {name}": (["single-step", "lm-loss"], dict(PAPER_STAND_IN), rule)
                for name, rule in (RULES.items() if args.rules else [("default", ens_mod.RULE)])
                if not args.only_rules or name in args.only_rules.split(",")}
    if args.stand_in_prior:
        variants.update({f"{v}, stand-in prior {args.stand_in_prior:g}": (menu, {"lm-loss": args.stand_in_prior},
                                                                         rule)
                         for v, (menu, _, rule) in list(variants.items())})
    if args.candidates:
        variants["before C2 (prior 2 on the absent paper)"] = (["paper", "single-step", "compute", "lm-loss",
                                                               "chance-floor"], None, RULES["now"])
        variants["C1 L(C) along the ratio (not adopted)"] = (["single-step", "lm-compute"], None, RULES["now"])
    return variants


def main():
    args = parse_args()
    if not (SHARED / "olmo_ladder").is_dir():
        sys.exit("needs ../shared/reference/olmo_ladder")
    METHODS.update(CANDIDATE_METHODS)
    full, acc_only = load_olmo()
    tasks = args.tasks.split(",") if args.tasks else sorted(set(acc_only["task"].tolist()))
    variants = variants_of(args)
    methods = ["ensemble", "lm-loss", "single-step"]
    head = ("| design | " + " | ".join(methods) + " | covered | half-width | fallback | tasks ensemble <= lm-loss |"
            "\n|---|" + "---|" * (len(methods) + 4))
    rows: dict[str, list[str]] = {v: [] for v in variants}
    raw: dict[str, list[tuple[str, list[dict]]]] = {v: [] for v in variants}

    def report(name, results):
        for v, r in results.items():
            rows[v].append(summary_row(name, r, methods, tasks))
            raw[v].append((name, r))
            print(f"[{v}] {rows[v][-1]}  weights {', '.join(f'{m} {w:.2f}' for m, w in r[0]['weights'].items())}",
                  file=sys.stderr, flush=True)

    if args.only != "synthetic":
        for name, fit, test in olmo_designs(acc_only):
            r = score(acc_only, fit, test, tasks, variants)
            report(name, {v: [r[v]] for v in variants})
            k = len(test)
            for v in variants:
                print(f"    [{v}] {name}: per task, the default's error (points): " + ", ".join(
                    f"{t} {100 * np.mean(r[v]['err']['ensemble'][k * i:k * i + k]):+.1f}"
                    for i, t in enumerate(tasks)), file=sys.stderr)
    if args.only != "olmo":
        acc_sd, loss_sd = seed_noise(acc_only, tasks)
        print("seed noise (s.d., points): " + ", ".join(f"{t} {100 * v:.2f}" for t, v in acc_sd.items())
              + f"; C4 loss {100 * loss_sd:.3f}%", file=sys.stderr)
        for gname, gen in generators(full, tasks).items():
            chosen = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
            for label, sizes, ratio, seeds, worths in chosen:
                rng = np.random.default_rng(args.seed)
                res = {v: [] for v in variants}
                for i in range(args.draws):
                    cols, fit, test = synthetic_table(gen, sizes, ratio, tasks, acc_sd, loss_sd, rng, seeds,
                                                      worths[i % len(worths)])
                    r = score(cols, fit, test, tasks, variants)
                    for v in variants:
                        res[v].append(r[v])
                report(f"synthetic {gname}: {label} ({args.draws} draws)", res)
    for v, (menu, prior, _) in variants.items():
        print(f"\n{v} (menu {', '.join(menu)}{'' if prior is None else f', prior {prior}'}):\n")
        print(head)
        print("\n".join(rows[v]))
    print("\n" + rule_checks(raw, tasks))


if __name__ == "__main__":
    main()
