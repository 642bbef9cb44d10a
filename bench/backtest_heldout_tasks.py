"""The default out of sample: the back-test suite and the default ensemble on OLMo task keys that chose nothing.

The default's weights and its interval rule (q g^2) were chosen on the paper's 8 tasks of the OLMo ladder
(bench/backtest_olmo.py). The same CSVs hold task keys that never entered any choice
(ladder.importers.OLMO_HELDOUT_TASKS): BoolQ and WinoGrande (outside the 8), and the validation splits of
ARC-Easy, ARC-Challenge, OpenBookQA and MMLU (other questions of tasks inside the 8, so not independent of
them). This runs the default's own back-test suite (same runs, splits, methods) on them and scores:

- per task x method, mean |predicted - measured| accuracy in points; the ensemble two ways: `LOSO` (as
  `ladder predict` would on these tasks: weights from these tasks' suite, refitted without the cell's
  split, as in the 8-task table) and `frozen` (the weights fitted on the 8 tasks' suite, applied as they are);
- 95% interval coverage, overall and on the far cells (g > 1.5), for the band q g^k with k = 1, 1.5, 2:
  q conformal over the held-out suite's other splits (LOSO), or q fitted on the 8 tasks (frozen);
- with --acc-only, the same on the accuracy-only cut (each run's final checkpoint, C4 loss, no task loss):
  ensemble vs lm-loss (the paper's chain on the C4 loss) vs single-step;
- with --lm-losses, the 11 LM validation losses as loss targets (the paper's step 1 per split): relative
  error and the coverage of the loss band, q from the 8 tasks' task loss or LOSO over the LM losses;
- with --rules, candidate changes (the paper's prior weight, equal weights) and candidate interval rules
  (RULES: the pooled q, a task's own q, their max, studentised q x shrunk per-task scale) on the 8 tasks,
  the held-out tasks and all 14 pooled; with --designs the same rules on the size designs.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/backtest_heldout_tasks.py [--acc-only] [--workers 1]
        [--cache DIR] [--lm-losses] [--rules]

--cache keeps each suite (pickle) so a second call only re-scores. Needs ../shared/reference/olmo_ladder
(exits otherwise). Two suites (8 tasks, 6 held-out tasks), each ~15-30 CPU-s. docs/laws.md, "Held-out
tasks: the default out of sample".
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "reference"

from ladder.laws.backtest import run_suite  # noqa: E402
from ladder.laws.ensemble import FAR, MENU, _cells, _combine, conformal_quantile, weights_from  # noqa: E402

EXPONENTS = (1.0, 1.5, 2.0)


def load(tasks=None, chance=None, acc_only: bool = False) -> dict:
    """The OLMo ladder as a results table with the given task list (default: the paper's 8)."""
    from ladder.importers import import_olmo
    from ladder.results import append_rows, read_table

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        append_rows(Path(d) / "olmo.csv", import_olmo(SHARED / "olmo_ladder", tasks, chance))
        cols = read_table(Path(d) / "olmo.csv", validate=True)
    if acc_only:
        sys.path.insert(0, str(ROOT / "bench"))
        from backtest_olmo import acc_only_table
        cols = acc_only_table(cols)
    return cols


def suite_for(cols: dict, workers: int):
    from ladder.laws.predict import select_runs, unavailable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        menu = [m for m in MENU if m not in unavailable(cols, MENU)]  # as `ladder predict` does
        tasks = sorted(set(cols["task"]))
        return run_suite(cols, tasks, select_runs(cols), menu, progress=lambda m: print(m, file=sys.stderr),
                         workers=workers), menu


def cached_suite(name: str, cache: Path | None, make):
    path = cache / f"{name}.pkl" if cache else None
    if path and path.exists():
        return pickle.loads(path.read_bytes())
    out = make()
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return out


def loso(c: dict, methods, k: float):
    """Leave-one-split-out ensemble errors and band half-widths (weights and q from the other splits)."""
    err, half = np.full(len(c["g"]), np.nan), np.full(len(c["g"]), np.nan)
    for s in np.unique(c["split"]):
        tr, te = c["split"] != s, c["split"] == s
        w, _ = weights_from(c["err"][tr], methods)
        q = conformal_quantile(np.abs(_combine(c["err"][tr], w, methods)) / c["g"][tr] ** k)
        err[te], half[te] = _combine(c["err"][te], w, methods), q * c["g"][te] ** k
    return err, half


def frozen(c: dict, c8: dict, methods, k: float):
    """Ensemble errors and half-widths with the weights and q fitted on the 8 tasks' whole suite."""
    w, _ = weights_from(c8["err"], methods)
    q = conformal_quantile(np.abs(_combine(c8["err"], w, methods)) / c8["g"] ** k)
    return _combine(c["err"], w, methods), q * c["g"] ** k, w, q


def report(c: dict, c8: dict, methods, title: str) -> str:
    e_loso, h_loso = loso(c, methods, 2.0)
    e_frz, h_frz, w8, _ = frozen(c, c8, methods, 2.0)
    cols = methods + ["ensemble (LOSO)", "ensemble (8-task weights)"]
    allerr = np.column_stack([c["err"], e_loso, e_frz])

    def row(name, mask):
        vals = np.nanmean(np.abs(allerr[mask]), 0)
        best = np.nanargmin(vals)
        cover = (f"{np.mean(np.abs(e_loso[mask]) <= h_loso[mask]):.0%} / "
                 f"{np.mean(np.abs(e_frz[mask]) <= h_frz[mask]):.0%}")
        return f"| {name} | " + " | ".join(("**%.2f**" if j == best else "%.2f") % (100 * v)
                                          for j, v in enumerate(vals)) + f" | {cover} |"

    head = ("| | " + " | ".join(cols) + " | covered, LOSO / 8-task q |\n|---|" + "---|" * (len(cols) + 1))
    far = c["g"] > FAR
    out = [f"### {title}", "", f"{len(c['g'])} cells ({int(far.sum())} far, g > {FAR}); mean |predicted - "
           "measured| accuracy in points, best in bold.", "", head]
    out += [row(t, c["task"] == t) for t in sorted(set(c["task"].tolist()))]
    out.append(row("**all tasks**", np.ones(len(c["g"]), bool)))
    out.append(row("far cells", far))
    rmse = np.sqrt(np.nanmean(allerr ** 2, 0))
    out += ["", "RMSE (points): " + ", ".join(f"{m} {100 * v:.2f}" for m, v in zip(cols, rmse)) + ".",
            "Bias (mean predicted - measured, points): " + ", ".join(
                f"{m} {100 * v:+.2f}" for m, v in zip(cols, np.nanmean(allerr, 0))) + "."]
    pj = methods.index("paper") if "paper" in methods else None
    if pj is not None:
        per_task = [(t, np.mean(np.abs(e_loso[c["task"] == t])), np.mean(np.abs(c["err"][c["task"] == t, pj])))
                    for t in sorted(set(c["task"].tolist()))]
        out.append(f"Ensemble (LOSO) below the paper on {sum(a < b for _, a, b in per_task)} of {len(per_task)} "
                   "tasks.")
    out.append("8-task weights: " + ", ".join(f"`{m}` {v:.3f}" for m, v in w8.items()) + ".")
    out += ["", "95% band q g^k, coverage (all cells / far cells) and mean half-width on the far cells (points):",
            "", "| k | LOSO on these tasks | half-width far | q from the 8 tasks | half-width far | 8 tasks (LOSO) |",
            "|---|---|---|---|---|---|"]
    for k in EXPONENTS:
        el, hl = loso(c, methods, k)
        ef, hf, _, _ = frozen(c, c8, methods, k)
        e8, h8 = loso(c8, methods, k)
        f8 = c8["g"] > FAR

        def cov(e, h, m):
            return f"{np.mean(np.abs(e[m]) <= h[m]):.1%}"

        out.append(f"| {k:g} | {cov(el, hl, slice(None))} / {cov(el, hl, far)} | {100 * np.mean(hl[far]):.2f} | "
                   f"{cov(ef, hf, slice(None))} / {cov(ef, hf, far)} | {100 * np.mean(hf[far]):.2f} | "
                   f"{cov(e8, h8, slice(None))} / {cov(e8, h8, f8)} |")
    return "\n".join(out)


def ensemble_loss(c: dict, methods) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's task-loss relative error per cell as ensemble.calibrate weighs it (members that
    predict the task loss, lm-loss left out), and where it exists."""
    w, _ = weights_from(c["err"], methods)
    lw = np.array([0.0 if m == "lm-loss" else w[m] for m in methods])
    finite = np.isfinite(c["loss"]) & (lw > 0)
    lsum = (finite * lw).sum(1)
    return np.where(finite, c["loss"], 0.0) @ lw / np.where(lsum > 0, lsum, 1.0), lsum > 0


def lm_loss_cells(cols8: dict) -> dict:
    """The 11 LM validation losses as held-out loss targets: per split of the default's suite, the paper's
    step 1 (L = E + A/N^a + B/D^b, chinchilla.FORMS["nd"]) fitted to the fit runs' final values (mean of the
    last 5 evaluations, as taskdata does) predicts the test runs'. Relative errors, distance g, split, loss."""
    import csv

    from ladder.laws.backtest import run_table, splits
    from ladder.laws.chinchilla import FORMS, fit_loss
    from ladder.laws.ensemble import distance
    from ladder.laws.predict import select_runs
    from ladder.laws.taskdata import FINAL_WINDOW

    runs, nd = select_runs(cols8), run_table(cols8)
    final = {}
    for r in runs:
        with open(SHARED / "olmo_ladder" / "ladder-runs" / f"{r}.csv", newline="") as f:
            recs = list(csv.DictReader(f))
        keys = [k for k in recs[0] if k.startswith("eval/") and k.endswith("/CrossEntropyLoss")]
        for k in keys:
            vals = [float(x[k]) for x in sorted(recs, key=lambda x: float(x["_step"])) if x[k] not in ("", None)]
            final[(k.split("/")[1].removesuffix("-validation"), r)] = np.mean(vals[-FINAL_WINDOW:])
    names = sorted({k for k, _ in final})
    out = {"rel": [], "g": [], "split": [], "task": []}
    for i, sp in enumerate(splits(cols8, runs)):
        fn, fd = np.array([nd[r] for r in sp.fit_runs]).T
        tn, td = np.array([nd[r] for r in sp.test_runs]).T
        g = distance(tn, td, fn, fd)
        for name in names:
            fit = fit_loss(FORMS["nd"], fn, fd, np.array([final[(name, r)] for r in sp.fit_runs]))
            actual = np.array([final[(name, r)] for r in sp.test_runs])
            out["rel"] += list(FORMS["nd"].predict(fit.x, tn, td) / actual - 1)
            out["g"] += list(g)
            out["split"] += [i] * len(g)
            out["task"] += [name] * len(g)
    return {k: np.array(v) for k, v in out.items()}


def lm_loss_report(lc: dict, c8: dict, methods) -> str:
    """Mean |relative error| per LM loss and the loss band's coverage: q_loss fitted on the 8 tasks' task-loss
    cells (frozen), or conformal over the LM losses' other splits (LOSO), for each exponent."""
    ens8, has8 = ensemble_loss(c8, methods)
    far = lc["g"] > FAR
    a = np.abs(lc["rel"])
    h2 = conformal_quantile(np.abs(ens8[has8]) / c8["g"][has8] ** 2) * lc["g"] ** 2
    out = ["### Held-out LM losses (the paper's step 1, L(N, D), on 11 validation sets)", "",
           f"{len(a)} cells ({int(far.sum())} far); mean |predicted / measured - 1| in %; covered by the "
           "8 tasks' loss band q g^2; bias: mean signed error on the far cells.", "",
           "| LM loss | all | far | bias far | covered |", "|---|---|---|---|---|"]
    for t in sorted(set(lc["task"].tolist())):
        m = lc["task"] == t
        out.append(f"| {t} | {100 * a[m].mean():.2f} | {100 * a[m & far].mean():.2f} | "
                   f"{100 * lc['rel'][m & far].mean():+.2f} | {np.mean(a[m] <= h2[m]):.0%} |")
    out.append(f"| **all** | {100 * a.mean():.2f} | {100 * a[far].mean():.2f} | "
               f"{100 * lc['rel'][far].mean():+.2f} | {np.mean(a <= h2):.0%} |")
    out += ["", "| k | q from the 8 tasks' task loss: all / far | half-width far | LOSO over the LM losses: all / far "
            "| half-width far |", "|---|---|---|---|---|"]
    for k in EXPONENTS:
        hf = conformal_quantile(np.abs(ens8[has8]) / c8["g"][has8] ** k) * lc["g"] ** k
        hl = np.full(len(a), np.nan)
        for s in np.unique(lc["split"]):
            tr, te = lc["split"] != s, lc["split"] == s
            hl[te] = conformal_quantile(a[tr] / lc["g"][tr] ** k) * lc["g"][te] ** k
        out.append(f"| {k:g} | {np.mean(a <= hf):.1%} / {np.mean(a[far] <= hf[far]):.1%} | "
                   f"{100 * hf[far].mean():.1f}% | {np.mean(a <= hl):.1%} / {np.mean(a[far] <= hl[far]):.1%} | "
                   f"{100 * hl[far].mean():.1f}% |")
    half = loso_rules_fixed(a, lc)
    out += ["", "Interval rules (x g^2, LOSO over the LM losses' splits; each LM loss a task): coverage all / far, "
            "worst LM loss, mean far half-width (%):", "", "| rule | LM losses |", "|---|---|"]
    out += [f"| {r} | {band_summary(lc['rel'], half, lc, r)} |" for r in RULES]
    return "\n".join(out)


RULES = ("pooled", "per-task", "max", "stud-rms k10", "stud-median k10", "stud-median k30", "max stud-rms k10")
# the last (the larger of the pooled q and stud-rms k10) was added after the others were scored: post hoc
BANDS = [("pooled", k) for k in EXPONENTS[:-1]] + [(r, 2.0) for r in RULES]
MIN_OWN = 19  # cells a task needs for its own 95% quantile (ceil(0.95 (n + 1)) <= n)


def shrunk_scale(a: np.ndarray, task: np.ndarray, fold: np.ndarray, kind: str, k: float):
    """Per-task scale of the scaled errors a = |error| / g^2, shrunk toward the pooled scale by cell count:
    s = (n s_task + k s_pool) / (n + k), relative to s_pool. Returns (per cell: the scale from the cells of
    the other folds only, cross-fitted so a cell never sizes its own score; per task: from all cells)."""
    stat = (lambda x: float(np.sqrt(np.mean(x ** 2)))) if kind == "rms" else (lambda x: float(np.median(x)))

    def scales(m):
        pool = stat(a[m])
        return {t: (np.sum(m & (task == t)) * stat(a[m & (task == t)]) + k * pool)
                / (np.sum(m & (task == t)) + k) / pool if np.any(m & (task == t)) else 1.0
                for t in np.unique(task)}

    cell = np.ones(len(a))
    for f in np.unique(fold):
        sc = scales(fold != f)
        for t in np.unique(task[fold == f]):
            cell[(fold == f) & (task == t)] = sc[t]
    return cell, scales(np.ones(len(a), bool))


def rule_scale(a: np.ndarray, task: np.ndarray, fold: np.ndarray, rule: str) -> dict[str, float]:
    """The band's multiplier of g^2 per task under `rule`, from calibration cells a = |error| / g^2."""
    qp = conformal_quantile(a)
    if rule == "pooled":
        return {t: qp for t in np.unique(task)}
    if rule in ("per-task", "max"):
        own = {t: conformal_quantile(a[task == t]) if np.sum(task == t) >= MIN_OWN else qp for t in np.unique(task)}
        return {t: max(qp, v) if rule == "max" else v for t, v in own.items()}
    if rule.startswith("max "):
        return {t: max(qp, v) for t, v in rule_scale(a, task, fold, rule.removeprefix("max ")).items()}
    kind, k = rule.split()[0].removeprefix("stud-"), float(rule.split()[1][1:])
    cell, per_task = shrunk_scale(a, task, fold, kind, k)
    qn = conformal_quantile(a / cell)
    return {t: qn * s for t, s in per_task.items()}


def loso_rules(c: dict, methods, k: float = 2.0) -> tuple[np.ndarray, dict]:
    """Leave-one-split-out ensemble errors and band half-widths under each interval rule in RULES: the
    held-out split's cells never calibrate their own band (nor, for the studentised rules, a scale)."""
    err, half = np.full(len(c["g"]), np.nan), {r: np.full(len(c["g"]), np.nan) for r in RULES}
    for s in np.unique(c["split"]):
        tr, te = c["split"] != s, c["split"] == s
        w, _ = weights_from(c["err"][tr], methods)
        e_tr = _combine(c["err"][tr], w, methods)
        err[te] = _combine(c["err"][te], w, methods)
        a = np.abs(e_tr) / c["g"][tr] ** k
        for rule in RULES:
            sc = rule_scale(a, c["task"][tr], c["split"][tr], rule)
            for t in np.unique(c["task"][te]):
                m = te & (c["task"] == t)
                half[rule][m] = sc.get(t, conformal_quantile(a)) * c["g"][m] ** k
    return err, half


def band_summary(e: np.ndarray, half: dict, c: dict, rule: str) -> str:
    """coverage all / far, the worst task's coverage (its name), the mean far half-width in points."""
    h, far = half[rule], c["g"] > FAR
    cov = np.abs(e) <= h
    per = {t: np.mean(cov[c["task"] == t]) for t in np.unique(c["task"])}
    worst = min(per, key=per.get)
    return (f"{cov.mean():.1%} / {cov[far].mean():.0%}, worst {per[worst]:.0%} ({worst}), "
            f"{100 * h[far].mean():.2f}")


def loso_rules_fixed(abs_err: np.ndarray, c: dict, k: float = 2.0) -> dict:
    """As loso_rules for errors that need no weights (the LM losses' relative errors): half-widths per rule."""
    half = {r: np.full(len(c["g"]), np.nan) for r in RULES}
    for s in np.unique(c["split"]):
        tr, te = c["split"] != s, c["split"] == s
        a = abs_err[tr] / c["g"][tr] ** k
        for rule in RULES:
            sc = rule_scale(a, c["task"][tr], c["split"][tr], rule)
            for t in np.unique(c["task"][te]):
                m = te & (c["task"] == t)
                half[rule][m] = sc[t] * c["g"][m] ** k
    return half


def rules_report(sets: dict, methods) -> str:
    """Candidate changes scored on the 8 tasks, the held-out tasks and both pooled (what `ladder predict` on
    all 14 would calibrate on), all leave-one-split-out: the paper's prior weight in the ensemble, and the
    interval rule x exponent (coverage all / far, the worst task's coverage, mean half-width on far cells)."""
    import ladder.laws.ensemble as ens

    out = ["### Candidate rules (leave-one-split-out)", "",
           "Ensemble mean |error| (points), all / far cells, by the paper's prior weight (default 2):", "",
           "| weights | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    saved = dict(ens.PRIOR)
    try:
        for name, prior in (("prior 1 (inverse MSE)", 1.0), ("prior 2 (default)", 2.0), ("prior 4", 4.0),
                            ("paper only", 1e12), ("equal weights", None)):
            cells = []
            for c in sets.values():
                if prior is None:
                    ok = [j for j in range(len(methods)) if np.isfinite(c["err"][:, j]).all()]
                    e = np.mean(c["err"][:, ok], 1)
                else:
                    ens.PRIOR.clear()
                    ens.PRIOR["paper"] = prior
                    e, _ = loso(c, methods, 2.0)
                far = c["g"] > FAR
                cells.append(f"{100 * np.mean(np.abs(e)):.2f} / {100 * np.mean(np.abs(e[far])):.2f}")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    finally:
        ens.PRIOR.clear()
        ens.PRIOR.update(saved)
    out += ["", "95% band x g^2 by interval rule (leave-one-split-out): coverage all / far, worst task's coverage, "
            "mean half-width on far cells (points):", "",
            "| rule | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for rule in RULES:
        out.append(f"| {rule}{' (default)' if rule == 'pooled' else ''} | "
                   + " | ".join(band_summary(*loso_rules(c, methods), c, rule) for c in sets.values()) + " |")
    return "\n".join(out)


def design_results(cols: dict, tasks) -> dict:
    """bench/backtest_runs.py's size designs under P16 (predict a size's runs from the smaller sizes only,
    `ladder.laws.predict.predict` as `ladder predict` runs it, n_bootstrap 0) on these tasks: name -> result."""
    sys.path.insert(0, str(ROOT / "bench"))
    from backtest_runs import designs, run_design, run_info

    info, tasks = run_info(cols), list(tasks or sorted(set(cols["task"].tolist())))
    out = {}
    for des in designs(info):
        if des["name"].endswith(("skip", "drop")):
            continue
        print(f"design {des['name']} P16", file=sys.stderr)
        out[des["name"]] = run_design(cols, info, des, "P16", tasks)
    return out


def design_report(results: dict[str, dict]) -> str:
    """Per task set: the ensemble vs the paper on the designs' test cells (paper-style runs, designs where the
    default has back-test splits), and the band x g^k (BANDS: the pooled q at each exponent, every rule at
    g^2) set on each design's own back-test cells and checked on its test cells: coverage near (g < 1.45),
    mid, far (g >= 1.75), all, the worst task, the far half-width. The stored inner cells carry no split, so the studentised rules' scales are
    cross-fitted leaving one cell out (not one split)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from backtest_runs import paper_style

    out = ["### Size designs (bench/backtest_runs.py, P16): the band set on each design's own suite, checked on "
           "its test runs", "", "| tasks | cells | ensemble | paper | rule | covered g < 1.45 / 1.45-1.75 / >= 1.75 "
           "| all | worst task | half-width g >= 1.75 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        rows = []  # (task, g, ensemble error, paper error, {rule: half-width})
        for r in res.values():
            inner = r.get("inner") or {}
            if not inner:
                continue
            ie, ig, it = (np.array(inner[k]) for k in ("abs_err", "g", "task"))
            scales = {(rule, k): rule_scale(ie / ig ** k, it, np.arange(len(ie)), rule) for rule, k in BANDS}
            for c in r["cells"]:
                if not paper_style(c):
                    continue
                half = {(rule, k): sc[c["task"]] * c["g"] ** k for (rule, k), sc in scales.items()}
                pe = c["members"]["paper"]["acc"] - c["acc"] if "paper" in c["members"] else np.nan
                rows.append((c["task"], c["g"], c["ens_acc"] - c["acc"], pe, half))
        t = np.array([x[0] for x in rows])
        g, e, pe = (np.array([x[i] for x in rows]) for i in (1, 2, 3))
        for n, (rule, k) in enumerate(BANDS):
            h = np.array([x[4][(rule, k)] for x in rows])
            cov = np.abs(e) <= h
            bands = " / ".join(f"{cov[m].mean():.0%}" for m in (g < 1.45, (g >= 1.45) & (g < 1.75), g >= 1.75))
            worst = min(cov[t == x].mean() for x in np.unique(t))
            lead = (f"| {name} | {len(e)} ({int((g >= 1.75).sum())} at g >= 1.75) | {100 * np.mean(np.abs(e)):.2f} | "
                    f"{100 * np.nanmean(np.abs(pe)):.2f} |") if n == 0 else "| | | | |"
            out.append(f"{lead} {rule} g^{k:g}{' (default)' if (rule, k) == ('pooled', 2.0) else ''} | {bands} | "
                       f"{cov.mean():.1%} | "
                       f"{worst:.0%} | {100 * h[g >= 1.75].mean():.1f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--acc-only", action="store_true", help="the accuracy-only cut (backtest_olmo.acc_only_table)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache", type=Path, help="directory keeping the suites (pickle)")
    ap.add_argument("--lm-losses", action="store_true",
                    help="also the 11 LM validation losses (step 1 only), with the interval rules")
    ap.add_argument("--designs", action="store_true",
                    help="also the size designs of bench/backtest_runs.py (P16) on both task sets: the interval "
                    "rules out of sample (minutes)")
    ap.add_argument("--rules", action="store_true",
                    help="also candidate weight priors and interval rules on the 8, held-out and pooled 14 tasks")
    args = ap.parse_args()
    if not (SHARED / "olmo_ladder").is_dir():
        sys.exit("needs ../shared/reference/olmo_ladder")
    from ladder.importers import OLMO_HELDOUT_CHANCE, OLMO_HELDOUT_TASKS

    tag = "acc" if args.acc_only else "full"
    s8, m8 = cached_suite(f"tasks8-{tag}", args.cache, lambda: suite_for(load(acc_only=args.acc_only), args.workers))
    sh, mh = cached_suite(f"heldout-{tag}", args.cache, lambda: suite_for(
        load(OLMO_HELDOUT_TASKS, OLMO_HELDOUT_CHANCE, args.acc_only), args.workers))
    assert m8 == mh, (m8, mh)
    c8, ch = _cells(s8, m8), _cells(sh, mh)
    title = "accuracy-only cut" if args.acc_only else "full ladder (checkpoints, task loss)"
    print(report(ch, c8, list(mh), f"Held-out tasks, {title}"))
    if args.rules:
        c14 = {k: np.concatenate([c8[k], ch[k]]) for k in c8}
        print("\n" + rules_report({"8 tasks": c8, "held-out 6": ch, "pooled 14": c14}, list(m8)))
    if args.designs and not args.acc_only:
        res = {"8 tasks": cached_suite("designs-8", args.cache, lambda: design_results(load(), None)),
               "held-out 6": cached_suite("designs-heldout", args.cache, lambda: design_results(
                   load(OLMO_HELDOUT_TASKS, OLMO_HELDOUT_CHANCE), sorted(OLMO_HELDOUT_TASKS)))}
        print("\n" + design_report(res))
    if args.lm_losses and not args.acc_only:
        print("\n" + lm_loss_report(lm_loss_cells(load()), c8, list(m8)))
    ru = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\n(CPU-s this call, incl. workers: {sum(r.ru_utime + r.ru_stime for r in ru):.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()
