"""The end-to-end report: `report.md` in the run directory, built only from files the earlier stages wrote.

Sections: plan, training curves, fits (the predictor's step-1 / step-2 / chained figures), predictions with
intervals, back-test, self-check, and wall time and compute per stage. Every number here is read from
plan.json, predictions.json, backtest.json, self_check.json, stages.json or the rungs' metrics.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def plot_loss_curves(plan: dict, run_root: str, out: Path) -> Path | None:
    """Training loss over tokens seen, one line per rung (colour = size, style = multiple); log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ladder import rundir
    from ladder.plan.sizes import format_count

    sizes = sorted({r["n"] for r in plan["rungs"]})
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for r in plan["rungs"]:
        rows = rundir.read_metrics(rundir.join(run_root, r["name"]))  # local or gs://
        if not rows:
            continue
        color = cmap(sizes.index(r["n"]) / max(1, len(sizes) - 1) * 0.85)
        ax.plot([m["tokens"] for m in rows], [m["loss"] for m in rows], color=color, lw=1,
                alpha=0.5 + 0.5 * (r["multiple"] == max(x["multiple"] for x in plan["rungs"])),
                label=f"{r['name']} (N={format_count(r['n'])})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens seen D")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Training loss of every rung")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path = out / "plots" / "loss_curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def write_report(out: Path, run_root: str, stages: dict) -> Path:
    from ladder import rundir
    from ladder.plan import format_table

    out = Path(out)
    plan = _load(out / "plan.json")
    pred = _load(out / "predictions.json") or {}
    backtest = _load(out / "backtest.json") or {}
    check = _load(out / "self_check.json")
    lines = [f"# Ladder report: {', '.join(t['name'] for t in plan['targets'])}", ""]

    lines += ["## Plan", "", f"{len(plan['rungs'])} rungs spending {plan['fraction']:.3%} of the targets' "
              "combined 6ND (formulas: docs/planning.md, docs/flops.md).", "", "```", format_table(plan), "```", ""]

    curves = plot_loss_curves(plan, run_root, out)
    if curves:
        lines += ["## Training", "", f"![loss curves]({curves.relative_to(out)})", ""]

    lines += ["## Fits", "", "Step 1, task loss L(N, D) per task with the targets marked; step 2, accuracy as a "
              "sigmoid of task loss over every checkpoint; and the chained prediction over compute "
              "(docs/laws.md).", ""]
    for name in ("step1", "step2", "chain"):
        if (out / "plots" / f"{name}.png").exists():
            lines += [f"![{name}](plots/{name}.png)", ""]

    lines += ["## Predictions", "", "The default method `ensemble` weighs the methods by their back-test errors and "
              "its 95% intervals are the bootstrap's united with back-test errors scaled by extrapolation distance; "
              "other methods' intervals are 95% bootstrap intervals over whole runs (docs/laws.md). The "
              "intermediate value is the task loss (bits/byte) or, for lm-loss, the held-out LM loss "
              "(nats/token). Flags are codes, explained under the table.", ""]
    rows = []
    for target, per_task in pred.items():
        for task, r in per_task.items():
            rows.append([target, task, r["method"], f"{r['loss']:.4f} ({r.get('feature', 'loss')})", f"{r['acc']:.3f}",
                         f"[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]", f"{r['compute_ratio']:.0f}x",
                         "; ".join(r["flags"]) or "-"])
    lines += _table(["target", "task", "method", "intermediate (feature)", "acc", "95% interval",
                     "compute / largest rung", "flags"], rows) + [""]
    from ladder.laws.flags import LEGEND

    used = {c for per_task in pred.values() for r in per_task.values() for c in r["flags"]}
    lines += (["Flags:", ""] + [f"- `{c}`: {text}" for c, text in LEGEND.items() if c in used] + [""]) if used else []

    if backtest:
        methods = list(next(iter(backtest.values())))
        lines += ["## Back-test", "", "Parts of the ladder predicted from the rest (with `ensemble`: every split of "
                  "docs/laws.md pooled; with `auto`: the largest rung from the smaller ones), per method: mean "
                  "|predicted - measured| accuracy, and in brackets the mean relative error of its task loss "
                  "(lower is better; n/a: the method could not be fitted, reason below).", ""]
        lines += _table(["task"] + methods, [[task] + [_backtest_cell(bt[m]) for m in methods]
                                             for task, bt in backtest.items()]) + [""]
        problems = {m: h["problem"] for bt in backtest.values() for m, h in bt.items() if h.get("problem")}
        lines += [f"- n/a {m}: {why}" for m, why in problems.items()] + ([""] if problems else [])

    if not backtest:
        lines += ["## Back-test", "", "None: no back-test split of docs/laws.md fits this ladder (too few sizes or "
                  "runs to hold any out), or the method needs none; `ensemble` then falls back to `paper` (flag "
                  "`FB`). Add sizes or multiples to test the predictor on its own ladder.", ""]

    if check:
        lines += ["## Self-check", "", f"A model larger than every rung, `{check['run']}` (N = {check['n']:,}, "
                  f"D = {check['tokens']:,} tokens), trained here and measured like the rungs (mean of its last "
                  "5 evaluations), against the ladder's prediction for it.", ""]
        yes_no = {True: "yes", False: "no", None: "-"}
        rows = [[task, r.get("method", "-"), r.get("feature", "loss"), _num(r["loss_pred"], ".4f"),
                 _num(r["loss_meas"], ".4f"), _num(r["loss_err"], "+.1%"),
                 _interval(r.get("loss_lo"), r.get("loss_hi"), 4), yes_no[r.get("loss_covered")],
                 f"{r['acc_pred']:.3f}", f"{r['acc_meas']:.3f}", f"{r['acc_err'] * 100:+.1f}",
                 _interval(r["acc_lo"], r["acc_hi"], 3), yes_no[bool(r["covered"])]]
                for task, r in check["tasks"].items()]
        lines += _table(["task", "method", "loss", "loss pred", "loss meas", "loss err", "loss 95% interval", "covered",
                         "acc pred", "acc meas", "acc err (pts)", "acc 95% interval", "covered"], rows)
        lines += ["", self_check_summary(check["tasks"]).capitalize() + ".", ""]

    lines += ["## Time and compute", ""]
    rows = [[name, f"{s['seconds']:.1f}", f"{s['flops']:.3g}" if "flops" in s else "-"] for name, s in stages.items()]
    total = sum(s["seconds"] for s in stages.values())
    lines += _table(["stage", "wall time (s)", "training FLOPs (6N+attention)"], rows)
    lines += ["", f"Total wall time so far: {total / 60:.1f} min (the report stage itself not included)."]
    path = out / "report.md"
    rundir.write_text(path, "\n".join(lines) + "\n")  # atomic: a crash never leaves half a report
    return path


def _backtest_cell(h: dict) -> str:
    err, loss_err = h.get("error"), h.get("loss_error")
    if err is None or err != err:  # None (JSON null) or NaN
        return "n/a"
    return f"{err:.4f}" + (f" ({loss_err:.1%})" if loss_err is not None else "")


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _interval(lo, hi, digits: int) -> str:
    return "-" if lo is None or hi is None else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


LOSS_TOLERANCE, ACC_TOLERANCE = 0.05, 0.03  # the self-check's aims (issue #8): 5% in loss, 3 points in accuracy


def self_check_summary(table: dict) -> str:
    """One sentence scoring the self-check against its aims."""
    n = len(table)
    loss_ok = sum(r["loss_err"] is not None and abs(r["loss_err"]) <= LOSS_TOLERANCE for r in table.values())
    acc_ok = sum(abs(r["acc_err"]) <= ACC_TOLERANCE for r in table.values())
    covered = sum(bool(r["covered"]) for r in table.values())
    return (f"self-check: predicted loss (each method's feature) within {LOSS_TOLERANCE:.0%} on {loss_ok} of {n} "
            f"tasks, accuracy within {ACC_TOLERANCE * 100:.0f} points on {acc_ok} of {n}, accuracy interval "
            f"covers {covered} of {n}")
