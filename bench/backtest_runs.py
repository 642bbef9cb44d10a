"""Which runs should the default fit, and how does its error grow with extrapolation distance?
(docs/laws.md, "Which runs the default fits".)

Back-tests that mimic the real use on the published OLMo ladder: predict the runs of a size S from the
smaller sizes only (S/M10, S/M5: also only from budgets below 10xC / 5xC, predicting S's runs at those
budgets, so the test extrapolates in N and in tokens per parameter at once, as the 7B/13B targets do). Each
size design runs under four fit policies over the same smaller sizes:

- P16:   the paper-style runs only (1xC, 2xC, 5xC, 10xC; for the 3B designs exactly the paper's 16);
- P16+R: and the 1xC reruns;  P16+H: and the 0.5xC runs;  PALL: every run of those sizes.

and, under P16, with the nearest smaller size left out ("skip") and, as the control, the smallest ("drop").

Every design calls `ladder.laws.predict.predict` exactly as `ladder predict` does (the default ensemble with
its own back-test weights and conformal scale computed inside the fit set; n_bootstrap=0, so the interval is
the calibrated band q x g alone), on a table that holds only the fit sizes (so no `beyond` split can see the
answer), with the test runs as targets (N, D, FLOPs/token). The ensemble's members give the single methods'
predictions from the same fits. Measured: each test run's mean of its last 5 accuracies / task losses.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/backtest_runs.py [--cells cells.json] [--designs 1B,3B/M5]
        [--policies P16] [--tables-only]

--cells caches the per-design results (JSON): a second call with the same path fits only what is missing.
Needs ../shared/reference/olmo_ladder. About 4 CPU-minutes (45 predicts of 1-9 CPU-s, and the default once).
The tables are in docs/laws.md, "Which runs the default fits".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "reference"

SIZES = ("190M", "370M", "760M", "1B", "3B")
PAPER_MULTIPLES = (1.0, 2.0, 5.0, 10.0)
PAPER_RUNS_OLMO = [f"{s}-{m}xC" for s in SIZES[:4] for m in (1, 2, 5, 10)]
# the judged targets (README of shared/reference/olmo_ladder): N, D, FLOPs/token; no accuracies anywhere here
TARGETS = {"7B-4T": (6_887_575_552, 3_945_065_873_408, 49_412_071_424),
           "13B-5T": (13_202_396_160, 5_000_088_518_656, 91_335_915_520)}


def load_olmo() -> dict:
    from ladder.importers import import_olmo
    from ladder.results import append_rows, read_table

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        append_rows(Path(d) / "olmo.csv", import_olmo(SHARED / "olmo_ladder"))
        return read_table(Path(d) / "olmo.csv", validate=True)


def run_info(cols: dict) -> dict[str, tuple[str, float, bool]]:
    """run -> (size, multiple, is a rerun)."""
    out = {}
    for r in dict.fromkeys(cols["run"].tolist()):
        size, rest = r.split("-", 1)
        out[r] = (size, float(rest.split("xC")[0]), rest.endswith("rerun"))
    return out


POLICIES = {  # name -> which runs of the fit sizes (size, multiple, rerun) a policy fits
    "P16": lambda m, rr: m in PAPER_MULTIPLES and not rr,          # the paper-style runs (the paper's 16 on <= 1B)
    "P16+R": lambda m, rr: m in PAPER_MULTIPLES,                   # ... and the 1xC reruns
    "P16+H": lambda m, rr: not rr,                                 # ... and the 0.5xC runs
    "PALL": lambda m, rr: True,                                    # every run
}


def designs(info: dict) -> list[dict]:
    """Size extrapolation: fit sizes below the test size and budgets below M (M None: all); test the test
    size's paper-style runs at budgets >= M (all 6 of its runs when M is None), under every policy.
    Skip-nearest: the same test runs from the paper-style runs of the sizes below the next-smaller size (the
    nearest size left out, as the paper's 16 leave 3B out of a 7B prediction). Drop-smallest, the control:
    the smallest size left out instead (as many sizes as skip-nearest, all of them near)."""
    out = []
    for k, size in enumerate(SIZES[2:], start=2):
        for cut in (None, 10.0, 5.0):
            below = (lambda m: True) if cut is None else (lambda m, c=cut: m < c)
            test = [r for r, (s, m, rr) in info.items() if s == size and (cut is None or (m >= cut and not rr))]
            name = size + ("" if cut is None else f"/M{cut:g}")
            for fit_sizes, label, pols in ((SIZES[:k], "", POLICIES), (SIZES[:k - 1], " skip", ("P16",)),
                                           (SIZES[1:k], " drop", ("P16",))):
                pol = {p: [r for r, (s, m, rr) in info.items() if s in fit_sizes and below(m) and POLICIES[p](m, rr)]
                       for p in pols}
                if len(pol["P16"]) < 6 or len(fit_sizes) < 2:  # the back-test suite's minimum (MIN_FIT_RUNS)
                    continue
                out.append({"name": name + label, "fit_sizes": fit_sizes, "policies": pol, "test": test})
    return out


def measured(cols: dict, tasks, runs) -> dict:
    from ladder.laws.taskdata import task_data

    out = {}
    for t in tasks:
        d = task_data(cols, t, list(runs), "loss")
        out[t] = {"acc": dict(zip(runs, d.acc.tolist())), "loss": dict(zip(runs, d.feature.tolist()))}
    return out


def run_design(cols: dict, info: dict, des: dict, policy: str, tasks) -> dict:
    """One design under one policy: a `predict` on the fit sizes' table, every test run a target."""
    from ladder.laws.predict import predict
    from ladder.laws.backtest import run_table

    keep_runs = {r for r, (s, _, _) in info.items() if s in des["fit_sizes"]}
    keep = np.isin(cols["run"], list(keep_runs))
    sub = {k: v[keep] for k, v in cols.items()}
    nd = run_table(cols)
    fpt = {}
    for r in des["test"]:
        last = np.flatnonzero(cols["run"] == r)
        last = last[np.argmax(cols["d"][last])]
        fpt[r] = float(cols["flops"][last] / cols["d"][last])
    targets = {r: (nd[r][0], nd[r][1], fpt[r]) for r in des["test"]}
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(sub, targets, runs=des["policies"][policy], tasks=tasks, n_bootstrap=0, workers=1)
    cpu = time.process_time() - t0
    truth = measured(cols, tasks, des["test"])
    cal = pred.calibration
    q = cal.q_acc if cal else float("inf")  # no back-test split: the default falls back, bootstrap interval only
    cells = []
    for r in des["test"]:
        N, D, F = targets[r]
        for t in tasks:
            res = pred.results[r][t]
            fit = pred.fits[t]
            per = {}
            members = getattr(fit, "members", {fit.method.name: fit})  # no split: the default's fallback
            for m, f in members.items():
                L, a = f.predict(N, D, F)
                per[m] = {"acc": float(a), "loss": float(L) if f.method.feature == "loss" and not f.method.single_step
                          else None}
            cells.append({"design": des["name"], "policy": policy, "run": r, "task": t,
                          "acc": truth[t]["acc"][r], "loss": truth[t]["loss"][r],
                          "ens_acc": res["acc"], "ens_loss": res["loss"], "lo": res["acc_lo"], "hi": res["acc_hi"],
                          "g": res["distance"], "ratio": res["compute_ratio"], "members": per,
                          "weights": dict(getattr(fit, "weights", {fit.method.name: 1.0})), "q": q,
                          "flags": res["flags"]})
    # the default's band at the real targets, were this fit set all there is (g from these runs)
    from ladder.laws.ensemble import distance
    fit_n = [nd[r][0] for r in des["policies"][policy]]
    fit_d = [nd[r][1] for r in des["policies"][policy]]
    inner = {}
    if cal:  # the default's own back-test cells on this fit set: what its interval rule was calibrated on
        from ladder.laws.ensemble import _cells, _combine
        methods = list(cal.weights)
        c = _cells(pred.suite, methods)
        inner = {"abs_err": np.abs(_combine(c["err"], cal.weights, methods)).tolist(), "g": c["g"].tolist(),
                 "task": c["task"].tolist()}
    return {"cells": cells, "cpu_s": cpu, "q": q, "inner": inner,
            "weights": cal.weights if cal else {"fallback": 1.0},
            "coverage_inside": cal.coverage if cal else float("nan"),
            "target_g": {k: float(distance(v[0], v[1], fit_n, fit_d)) for k, v in TARGETS.items()}}


# ------------------------------------------------------------------------------------------- tables
def mae(x) -> float:
    x = np.asarray(x, dtype=float)
    return 100 * float(np.mean(np.abs(x))) if len(x) else float("nan")


def paper_style(c: dict) -> bool:
    """A test run like the targets: 1xC-10xC, not a rerun (the targets are far past 10xC in tokens/param)."""
    return not c["run"].endswith("rerun") and not c["run"].endswith("-0.5xC")


def errors(cs: list[dict], what: str) -> np.ndarray:
    if what == "ens":
        return np.array([c["ens_acc"] - c["acc"] for c in cs])
    if what == "loss":
        return np.array([c["ens_loss"] / c["loss"] - 1 for c in cs])
    return np.array([c["members"][what]["acc"] - c["acc"] if what in c["members"] else np.nan for c in cs])


def size_designs(results: dict) -> list[str]:
    """The size-extrapolation designs in the results (not skip-nearest / drop-smallest, not "default")."""
    return [n for n in dict.fromkeys(k.rsplit(" ", 1)[0] for k in results if " " in k)
            if not n.endswith(("skip", "drop"))]


def select(results: dict, design: str, policy: str, keep=paper_style) -> list[dict]:
    return sorted([c for c in results.get(f"{design} {policy}", {"cells": []})["cells"] if keep(c)],
                  key=lambda c: (c["run"], c["task"]))


def policy_tables(results: dict, keep=paper_style) -> str:
    """Design x policy: ensemble / paper accuracy error (points), ensemble task-loss error (%), and how many
    designs each policy beats P16 on."""
    names = size_designs(results)
    pols = [p for p in POLICIES if any(f"{n} {p}" in results for n in names)]
    out = ["| design (test runs, g) | " + " | ".join(f"{p} ens / paper / loss %" for p in pols) + " |",
           "|---|" + "---|" * len(pols)]
    wins = {p: [0, 0, 0, 0] for p in pols}
    pooled = {p: {"ens": [], "paper": [], "loss": []} for p in pols}
    for n in names:
        cs0 = select(results, n, "P16", keep)
        base = {w: mae(errors(cs0, w)) for w in ("ens", "paper", "loss")}
        cols_ = []
        for p in pols:
            cs = select(results, n, p, keep)
            v = {w: mae(errors(cs, w)) for w in ("ens", "paper", "loss")}
            for w in v:
                pooled[p][w] += list(errors(cs, w))
            if p != "P16":
                wins[p][0] += v["ens"] < base["ens"]
                wins[p][1] += v["paper"] < base["paper"]
                wins[p][2] += v["loss"] < base["loss"]
                wins[p][3] += 1
            cols_.append(f"{v['ens']:.2f} / {v['paper']:.2f} / {v['loss']:.2f}")
        g = [c["g"] for c in cs0]
        out.append(f"| {n} ({len({c['run'] for c in cs0})}, {min(g):.2f}-{max(g):.2f}) | " + " | ".join(cols_) + " |")
    out.append("| **all cells** | " + " | ".join(
        "**" + " / ".join(f"{mae(pooled[p][w]):.2f}" for w in ("ens", "paper", "loss")) + "**" for p in pols) + " |")
    out.append("| designs better than P16 (ens, paper, loss) | " + " | ".join(
        "—" if p == "P16" else f"{wins[p][0]}, {wins[p][1]}, {wins[p][2]} of {wins[p][3]}" for p in pols) + " |")
    return "\n".join(out)


def task_table(results: dict, tasks, pols=("P16", "PALL"), keep=paper_style) -> str:
    """Task x method, pooled over the size-extrapolation designs: P16 / PALL mean |error| (points)."""
    names = size_designs(results)
    cells = {p: [c for n in names for c in select(results, n, p, keep)] for p in pols}
    methods = ["ens", "paper", "single-step", "compute", "lm-loss", "chance-floor"]
    out = ["| task | " + " | ".join("ensemble" if m == "ens" else m for m in methods) + " |",
           "|---|" + "---|" * len(methods)]
    for t in list(tasks) + ["**all**"]:
        row = []
        for m in methods:
            v = [errors([c for c in cells[p] if t == "**all**" or c["task"] == t], m) for p in pols]
            row.append(" / ".join(f"{mae(x[np.isfinite(x)]):.2f}" for x in v))
        out.append(f"| {t} | " + " | ".join(row) + " |")
    return "\n".join(out)


def skip_table(results: dict, keep=paper_style) -> str:
    """The nearest size in the fit or left out (P16 runs): does fitting the size closest to the target help?"""
    out = ["| test | every smaller size (P16): g, ens / paper / loss % | nearest size left out | smallest size "
           "left out (control) |", "|---|---|---|---|"]
    for n in [k.rsplit(" ", 2)[0] for k in results if k.endswith(" skip P16")]:
        row = []
        for d in (n, n + " skip", n + " drop"):
            if f"{d} P16" not in results:
                row.append("—")
                continue
            cs = select(results, d, "P16", keep)
            g = [c["g"] for c in cs]
            row.append(f"{min(g):.2f}-{max(g):.2f}, {mae(errors(cs, 'ens')):.2f} / {mae(errors(cs, 'paper')):.2f} / "
                       f"{mae(errors(cs, 'loss')):.2f}")
        out.append(f"| {n} | " + " | ".join(row) + " |")
    return "\n".join(out)


def distance_table(results: dict, policy: str = "P16", keep=paper_style) -> tuple[str, dict]:
    """|error| against g over every P16 cell (size-extrapolation and skip-nearest designs), the band's
    coverage per distance, and the trend fits."""
    cs = [c for k, r in results.items() if k.endswith(" " + policy) for c in r["cells"] if keep(c)]
    e = np.abs(errors(cs, "ens"))
    le = np.abs(errors(cs, "loss"))
    g = np.array([c["g"] for c in cs])
    q = np.array([c["q"] for c in cs])
    inside = np.array([c["lo"] <= c["acc"] <= c["hi"] for c in cs])  # the design's reported interval
    ratio = np.maximum([c["ratio"] for c in cs], 1.0)
    out = ["| g | cells | mean abs (points) | 95th pct | 95th pct of abs / g | covered by the design's interval | "
           "loss mean abs % |", "|---|---|---|---|---|---|---|"]
    bins = {"bin_g": [], "bin_p95": [], "bin_n": []}
    for lo, hi in ((1.0, 1.25), (1.25, 1.45), (1.45, 1.75), (1.75, 2.0), (2.0, 9.0)):
        m = (g >= lo) & (g < hi)
        fin = m & np.isfinite(q)
        if m.sum():
            bins["bin_g"].append(float(g[m].mean()))
            bins["bin_p95"].append(float(np.percentile(e[m], 95)))
            bins["bin_n"].append(int(m.sum()))
            out.append(f"| {g[m].min():.2f}-{g[m].max():.2f} | {m.sum()} | {100 * e[m].mean():.2f} | "
                       f"{100 * np.percentile(e[m], 95):.2f} | {100 * np.percentile(e[m] / g[m], 95):.2f} | "
                       + (f"{np.mean(inside[fin]):.0%} of {fin.sum()}" if fin.any() else "—")
                       + f" | {100 * le[m].mean():.2f} |")
    b, a = np.polyfit(g - 1, e, 1)
    pos = e > 1e-6
    k, _ = np.polyfit(np.log(g[pos]), np.log(e[pos]), 1)
    b2, a2 = np.polyfit(np.log10(ratio), e, 1)
    trend = {"a": a, "b": b, "k": k, "a2": a2, "b2": b2, "g_max": float(g.max()), "r_max": float(ratio.max()),
             "n": len(cs), "e": e, "g": g, **bins}
    out.append(f"\n{len(cs)} cells, g up to {g.max():.2f}, r = 6ND / largest fitted 6ND up to {ratio.max():.0f}. "
               f"Trends: mean |err| = {100 * a:.2f} + {100 * b:.2f} (g - 1) points; OLS of log |err| on log g: "
               f"exponent {k:.2f}; mean |err| = {100 * a2:.2f} + {100 * b2:.2f} log10(r) points.")
    return "\n".join(out), trend


def target_table(trend: dict, fit_sets: dict) -> str:
    """What the trends imply at the 7B/13B distance for each fit set (no target accuracy involved): the mean
    |error| by the linear g trend and by the log10 r trend, and 95% half-widths: these cells' conformal
    scale times g (the default's rule before session 7, g^1), times g^k (k the OLS exponent), and the line through the
    distance bins' 95th percentiles."""
    from ladder.laws.ensemble import conformal_quantile, distance

    e, g, k = trend["e"], trend["g"], trend["k"]
    s_1, s_k = conformal_quantile(e / g), conformal_quantile(e / g ** k)
    slope, icpt = np.polyfit(trend["bin_g"], trend["bin_p95"], 1, w=np.sqrt(trend["bin_n"]))
    out = ["| fit set | target | g | r | mean abs err, g trend | mean abs err, log10 r trend | 95%: q g, these "
           "cells' q | 95%: scale x g^k | 95%: line through the bins' 95th pct |", "|---" * 9 + "|"]
    for label, (fit_n, fit_d) in fit_sets.items():
        c_max = float(np.max(6 * np.asarray(fit_n) * np.asarray(fit_d)))
        for name, (N, D, _) in TARGETS.items():
            gt = float(distance(N, D, fit_n, fit_d))
            r = 6 * N * D / c_max
            out.append(f"| {label} | {name} | {gt:.2f} | {r:.0f} | {100 * (trend['a'] + trend['b'] * (gt - 1)):.2f} | "
                       f"{100 * (trend['a2'] + trend['b2'] * np.log10(r)):.2f} | {100 * s_1 * gt:.2f} | "
                       f"{100 * s_k * gt ** k:.2f} | {100 * (icpt + slope * gt):.2f} |")
    return "\n".join(out)


def interval_rules(results: dict, keep=paper_style, ks=(1.0, 1.5, 2.0, 3.0)) -> str:
    """Out-of-sample check of the interval's growth with distance: in every P16 design the default's own
    back-test cells set the scale q_k = conformal quantile of |error| / g^k (k = 2 is the default's rule, 1 its rule before session 7), and
    the band q_k g^k is checked on the design's test cells, by distance. Then the half-width each rule gives
    at the targets on the default's fit set (its own suite's cells; no target accuracy is used)."""
    from ladder.laws.ensemble import conformal_quantile

    rows = []  # (g, |err|, {k: half-width})
    for key, r in results.items():
        if not key.endswith(" P16") or not r.get("inner"):
            continue
        ie, ig = np.array(r["inner"]["abs_err"]), np.array(r["inner"]["g"])
        qk = {k: conformal_quantile(ie / ig ** k) for k in ks}
        for c in r["cells"]:
            if keep(c):
                rows.append((c["g"], abs(c["ens_acc"] - c["acc"]), {k: qk[k] * c["g"] ** k for k in ks}))
    g = np.array([x[0] for x in rows])
    out = ["| g | cells | " + " | ".join(f"covered, band q g^{k:g}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for lo, hi in ((1.0, 1.45), (1.45, 1.75), (1.75, 9.0), (1.0, 9.0)):
        m = [i for i, x in enumerate(rows) if lo <= x[0] < hi]
        if m:
            out.append(f"| {g[m].min():.2f}-{g[m].max():.2f} | {len(m)} | " + " | ".join(
                f"{np.mean([rows[i][1] <= rows[i][2][k] for i in m]):.0%}" for k in ks) + " |")
    d = results.get("default")
    if d:
        ie, ig = np.array(d["inner"]["abs_err"]), np.array(d["inner"]["g"])
        out += ["", "Half-width at the targets on the default's fit set (points; its own back-test cells, g <= "
                f"{ig.max():.2f}):", "", "| target | g | " + " | ".join(f"q g^{k:g}" for k in ks) + " |",
                "|---|---|" + "---|" * len(ks)]
        for name, gt in d["target_g"].items():
            out.append(f"| {name} | {gt:.2f} | " + " | ".join(
                f"{100 * conformal_quantile(ie / ig ** k) * gt ** k:.2f}" for k in ks) + " |")
    return "\n".join(out)


def default_suite(cols: dict, tasks) -> dict:
    """The default on the real targets (n_bootstrap=0): its back-test cells and the targets' distances only."""
    from ladder.laws.ensemble import _cells, _combine
    from ladder.laws.predict import predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = predict(cols, {k: v for k, v in TARGETS.items()}, tasks=tasks, n_bootstrap=0, workers=1)
    cal = pred.calibration
    c = _cells(pred.suite, list(cal.weights))
    return {"cells": [], "inner": {"abs_err": np.abs(_combine(c["err"], cal.weights, list(cal.weights))).tolist(),
                                   "g": c["g"].tolist()}, "q": cal.q_acc, "weights": cal.weights,
            "target_g": {t: pred.results[t][tasks[0]]["distance"] for t in TARGETS}, "cpu_s": 0.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", help="JSON cache of the per-design results (read if present, else written)")
    ap.add_argument("--designs", help="comma list of design names (default: all)")
    ap.add_argument("--tasks", help="comma list (default: all 8)")
    ap.add_argument("--tables-only", action="store_true", help="print the tables of the cached cells, fit nothing")
    ap.add_argument("--policies", help="comma list of policies to run (default: all; the tables use what is cached)")
    args = ap.parse_args()
    if not (SHARED / "olmo_ladder").is_dir():
        sys.exit("needs ../shared/reference/olmo_ladder")
    cols = load_olmo()
    info = run_info(cols)
    tasks = args.tasks.split(",") if args.tasks else sorted(set(cols["task"]))
    cache = Path(args.cells) if args.cells else None
    results = json.loads(cache.read_text()) if cache and cache.exists() else {}
    for des in designs(info):
        if args.designs and des["name"] not in args.designs.split(","):
            continue
        for policy in des["policies"]:
            key = f"{des['name']} {policy}"
            if key in results or args.tables_only or (args.policies and policy not in args.policies.split(",")):
                continue
            print(f"{key}: fit {len(des['policies'][policy])} runs, test {len(des['test'])}", file=sys.stderr,
                  flush=True)
            results[key] = run_design(cols, info, des, policy, tasks)
            print(f"  {results[key]['cpu_s']:.0f} CPU-s", file=sys.stderr, flush=True)
            if cache:
                cache.write_text(json.dumps(results))
    from ladder.laws.backtest import run_table
    rt = run_table(cols)
    print("### Fit policies, paper-style test runs (1xC-10xC, no reruns)\n")
    print(policy_tables(results))
    print("\n### Fit policies, every test run (0.5xC and reruns too)\n")
    print(policy_tables(results, keep=lambda c: True))
    print("\n### Per task and method, pooled over the size designs (P16 / PALL, paper-style test runs)\n")
    print(task_table(results, tasks))
    print("\n### The nearest size fitted or left out (P16 runs)\n")
    print(skip_table(results))
    print("\n### Error against extrapolation distance (every P16 cell, paper-style test runs)\n")
    text, trend = distance_table(results)
    print(text)
    from ladder.laws.predict import select_runs
    fit_sets = {"the paper's 16": np.array([rt[r] for r in PAPER_RUNS_OLMO]).T,
                f"the default ({len(select_runs(cols))} runs)": np.array([rt[r] for r in select_runs(cols)]).T}
    print("\n### At the targets (trends of the P16 cells above; no target accuracy is used)\n")
    print(target_table(trend, fit_sets))
    if "default" not in results and not args.tables_only:
        results["default"] = default_suite(cols, tasks)
        if cache:
            cache.write_text(json.dumps(results))
    print("\n### Interval rules against distance (P16 designs, out of sample)\n")
    print(interval_rules(results))


if __name__ == "__main__":
    main()
