"""Which runs should the default fit, and how does its error grow with extrapolation distance?
(docs/laws.md, "Which runs the default fits".)

Back-tests that mimic the real use on the published OLMo ladder: predict the runs of a size S from the
smaller sizes only (optionally only from budgets below M x Chinchilla, and predicting S's budgets >= M, so
the test extrapolates in N and in tokens per parameter at once, as the 7B/13B targets do). Each design is
run under two fit policies over the same smaller-size runs:

- P16:  the paper-style runs only (1xC, 2xC, 5xC, 10xC): what the paper's 16 are for the 4 sizes <= 1B;
- PALL: every run of those sizes (plus 0.5xC and the 1xC reruns).

Every design calls `ladder.laws.predict.predict` exactly as `ladder predict` does (the default ensemble with
its own back-test weights and conformal scale computed inside the fit set; n_bootstrap=0, so the interval is
the calibrated band q x g alone), on a table that holds only the fit sizes (so no `beyond` split can see the
answer), with the test runs as targets (N, D, FLOPs/token). The ensemble's members give the single methods'
predictions from the same fits. Measured: each test run's mean of its last 5 accuracies / task losses.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/backtest_runs.py [--cells cells.json] [--designs 1B,3B/M5]

--cells caches the per-cell results (JSON): a second call with the same path only prints the tables.
Needs ../shared/reference/olmo_ladder. Several CPU-minutes (17 designs x 2 policies of full predicts).
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
    nearest size left out, as the paper's 16 leave 3B out of a 7B prediction)."""
    out = []
    for k, size in enumerate(SIZES[2:], start=2):
        for cut in (None, 10.0, 5.0):
            below = (lambda m: True) if cut is None else (lambda m, c=cut: m < c)
            test = [r for r, (s, m, rr) in info.items() if s == size and (cut is None or (m >= cut and not rr))]
            name = size + ("" if cut is None else f"/M{cut:g}")
            for fit_sizes, label, pols in ((SIZES[:k], "", POLICIES), (SIZES[:k - 1], " skip", ("P16",))):
                pol = {p: [r for r, (s, m, rr) in info.items() if s in fit_sizes and below(m) and POLICIES[p](m, rr)]
                       for p in pols}
                if len(pol["P16"]) < 6 or len(fit_sizes) < 2:  # the back-test suite's minimum (MIN_FIT_RUNS)
                    continue
                out.append({"name": name + label, "fit_sizes": fit_sizes, "policies": pol, "test": test})
    return out


def measured(cols: dict, tasks, runs) -> dict:
    from ladder.laws.taskfit import task_data

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
    return {"cells": cells, "cpu_s": cpu, "q": q, "weights": cal.weights if cal else {"fallback": 1.0},
            "coverage_inside": cal.coverage if cal else float("nan"),
            "target_g": {k: float(distance(v[0], v[1], fit_n, fit_d)) for k, v in TARGETS.items()}}


# ------------------------------------------------------------------------------------------- tables
def mae(x):
    x = np.asarray(x, dtype=float)
    return 100 * float(np.mean(np.abs(x))) if len(x) else float("nan")


def policy_tables(results: dict, tasks) -> str:
    cells = [c for r in results.values() for c in r["cells"]]
    names = list(dict.fromkeys(c["design"] for c in cells))
    out = ["Mean |predicted - measured| final accuracy (points) per design; loss: mean |relative error| of the "
           "ensemble's task loss (%); cover: share of cells inside the calibrated band q x g (no bootstrap).", "",
           "| design (test runs; g) | P16 ensemble | PALL ensemble | P16 paper | PALL paper | P16 loss % | "
           "PALL loss % | P16 cover | PALL cover | PALL better (tasks of 8, ens) |", "|---|" + "---|" * 9]
    for n in names:
        row = {}
        for p in ("P16", "PALL"):
            cs = [c for c in cells if c["design"] == n and c["policy"] == p]
            row[p] = {"ens": mae([c["ens_acc"] - c["acc"] for c in cs]),
                      "paper": mae([c["members"]["paper"]["acc"] - c["acc"] for c in cs]),
                      "loss": mae([c["ens_loss"] / c["loss"] - 1 for c in cs]),
                      "cover": np.mean([abs(c["ens_acc"] - c["acc"]) <= c["q"] * c["g"] for c in cs]),
                      "g": (min(c["g"] for c in cs), max(c["g"] for c in cs)),
                      "per_task": {t: mae([c["ens_acc"] - c["acc"] for c in cs if c["task"] == t]) for t in tasks},
                      "n": len({c["run"] for c in cs})}
        better = sum(row["PALL"]["per_task"][t] < row["P16"]["per_task"][t] for t in tasks)
        g = row["P16"]["g"]
        out.append(f"| {n} ({row['P16']['n']}; {g[0]:.2f}-{g[1]:.2f}) | {row['P16']['ens']:.2f} | {row['PALL']['ens']:.2f} | "
                   f"{row['P16']['paper']:.2f} | {row['PALL']['paper']:.2f} | {row['P16']['loss']:.2f} | "
                   f"{row['PALL']['loss']:.2f} | {row['P16']['cover']:.0%} | {row['PALL']['cover']:.0%} | {better} |")
    for p in ("P16", "PALL"):
        cs = [c for c in cells if c["policy"] == p]
        out.append(f"| **all designs, {p}** | ens {mae([c['ens_acc'] - c['acc'] for c in cs]):.2f} | | paper "
                   f"{mae([c['members']['paper']['acc'] - c['acc'] for c in cs]):.2f} | | loss "
                   f"{mae([c['ens_loss'] / c['loss'] - 1 for c in cs]):.2f} | | cover "
                   f"{np.mean([abs(c['ens_acc'] - c['acc']) <= c['q'] * c['g'] for c in cs]):.0%} | | |")
    # per task x method, pooled over designs
    methods = list(dict.fromkeys(m for c in cells for m in c["members"]))
    out += ["", "Per task, pooled over designs (points): ensemble and each member, P16 / PALL.", "",
            "| task | " + " | ".join(f"{m}" for m in ["ensemble"] + methods) + " |", "|---|" + "---|" * (len(methods) + 1)]
    for t in tasks + ["**all**"]:
        vals = []
        for m in ["ensemble"] + methods:
            pair = []
            for p in ("P16", "PALL"):
                cs = [c for c in cells if c["policy"] == p and (t == "**all**" or c["task"] == t)]
                e = [(c["ens_acc"] if m == "ensemble" else c["members"][m]["acc"]) - c["acc"] for c in cs
                     if m == "ensemble" or m in c["members"]]
                pair.append(mae(e))
            vals.append(f"{pair[0]:.2f} / {pair[1]:.2f}")
        out.append(f"| {t} | " + " | ".join(vals) + " |")
    out += ["", "Weights and interval scale each policy's default chose (per design): "]
    for key, r in results.items():
        out.append(f"- {key}: q = {r['q']:.4f}, weights " + ", ".join(f"{m} {w:.2f}" for m, w in r["weights"].items())
                   + f"; g at 7B-4T {r['target_g']['7B-4T']:.2f}, 13B-5T {r['target_g']['13B-5T']:.2f}; {r['cpu_s']:.0f} CPU-s")
    return "\n".join(out)


def distance_tables(results: dict) -> str:
    """How |error| grows with g and with the compute ratio, and what the trend says at the targets."""
    out = []
    for p in ("P16", "PALL"):
        cs = [c for r in results.values() for c in r["cells"] if c["policy"] == p]
        e = np.abs(np.array([c["ens_acc"] - c["acc"] for c in cs]))
        g = np.array([c["g"] for c in cs])
        lr = np.log10(np.maximum([c["ratio"] for c in cs], 1e-9))
        out += [f"", f"**{p}**: {len(cs)} cells. |error| (points) by distance g:", "",
                "| g | cells | mean abs | 90th pct | 95th pct | 95th pct of abs/g (q) |", "|---|---|---|---|---|---|"]
        for lo, hi in ((1.0, 1.0001), (1.0001, 1.2), (1.2, 1.35), (1.35, 1.5), (1.5, 9)):
            m = (g >= lo) & (g < hi)
            if m.sum():
                out.append(f"| {lo:.2f}-{min(hi, g[m].max()):.2f} | {m.sum()} | {100 * e[m].mean():.2f} | "
                           f"{100 * np.percentile(e[m], 90):.2f} | {100 * np.percentile(e[m], 95):.2f} | "
                           f"{100 * np.percentile(e[m] / g[m], 95):.2f} |")
        # trends: mean |err| = a + b (g - 1); log |err| = c + k log g; mean |err| = a + b log10(ratio)
        b, a = np.polyfit(g - 1, e, 1)
        pos = e > 1e-6
        k, c0 = np.polyfit(np.log(g[pos]), np.log(e[pos]), 1)
        b2, a2 = np.polyfit(np.maximum(lr, 0), e, 1)
        out.append(f"\nTrends ({p}): mean |err| = {100 * a:.2f} + {100 * b:.2f} (g - 1) points; "
                   f"|err| ~ g^{k:.2f}; mean |err| = {100 * a2:.2f} + {100 * b2:.2f} log10(max(r, 1)) points "
                   f"(r = 6ND / the largest fitted 6ND; cells reach g <= {g.max():.2f}, r <= {10 ** lr.max():.1f}).")
        tg = {n: r["target_g"] for n, r in results.items() if n.endswith(p)}
        q = np.mean([r["q"] for n, r in results.items() if n.endswith(p)])
        out.append(f"Implied at the targets (mean |err|, from the g-trend / the compute trend), vs the default's "
                   f"half-width q g (q = {100 * q:.2f} points, mean over designs):")
        for name in TARGETS:
            for fitset, gt, rt in (("the paper's 16", 2.19 if name == "7B-4T" else 2.29, None),):
                pass
        out.append("(target g and r are printed by `main` for the real fit sets)")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", help="JSON cache of the per-design results (read if present, else written)")
    ap.add_argument("--designs", help="comma list of design names (default: all)")
    ap.add_argument("--tasks", help="comma list (default: all 8)")
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
            if key in results:
                continue
            print(f"{key}: fit {len(des['policies'][policy])} runs, test {len(des['test'])}", file=sys.stderr, flush=True)
            results[key] = run_design(cols, info, des, policy, tasks)
            print(f"  {results[key]['cpu_s']:.0f} CPU-s", file=sys.stderr, flush=True)
            if cache:
                cache.write_text(json.dumps(results))
    print(policy_tables(results, tasks))
    print(distance_tables(results))


if __name__ == "__main__":
    main()
