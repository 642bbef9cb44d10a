"""Every figure the tool draws (matplotlib, Agg backend), from values the earlier stages computed.

- The predictor's, as in Bhagia et al. 2024: step 1 (task loss over tokens, one curve per N, or per bin of
  sizes past 8 distinct N, target marked), step 2 (accuracy over task loss with every checkpoint and the
  fitted sigmoid), and the chained prediction (accuracy over compute). One PNG per figure, one panel per task.
- The report's training loss curves (ladder.report).
- The specialization study's (ladder.specialization): compute effectiveness, the D-CPT and split-law fits,
  the pretrain/specialize allocation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ladder.plan.sizes import format_count


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, n):
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


MAX_SIZE_GROUPS = 8  # curves and legend entries per panel; more distinct N are drawn in bins of sizes


def _size_groups(plt, ns) -> list[tuple[float, np.ndarray, str, tuple]]:
    """(N for the curve, which entries of `ns` belong, legend label, color) per size, or, past
    MAX_SIZE_GROUPS distinct sizes (a table of 62,500 runs each with its own N), per bin of consecutive
    sizes (the curve at the bin's middle size), so a figure stays a handful of calls and legend entries."""
    ns = np.asarray(ns)
    uniq = np.unique(ns)
    bins = np.array_split(uniq, min(len(uniq), MAX_SIZE_GROUPS))
    cmap = plt.get_cmap("viridis")
    out = []
    for i, b in enumerate(bins):
        label = f"N={format_count(b[0])}" + ("" if len(b) == 1 else f"-{format_count(b[-1])}")
        out.append((float(b[len(b) // 2]), np.isin(ns, b), label, cmap(i / max(1, len(bins) - 1) * 0.85)))
    return out


def _feature_label(fit) -> str:
    return "task loss (bits/byte)" if fit.method.feature == "loss" else f"{fit.method.feature} (nats/token)"


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    _savefig(fig, path, 110)
    plt.close(fig)
    return path


def _savefig(fig, path, dpi: int) -> None:
    """Every figure goes through here: rendered in memory, then written atomically (storage.write_bytes), so a
    kill or a full disk mid-write never leaves a torn PNG over the previous one."""
    import io

    from ladder import storage

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    storage.write_bytes(path, buf.getvalue())


def _target(ax, x: float, r: dict, key: str, marker: str, label: str) -> None:
    """A predicted target at x: r[key] with its interval r[key_lo]..r[key_hi] as an error bar."""
    y = r[key]
    if not (np.isfinite(x) and np.isfinite(y)):  # e.g. the task loss of an accuracy-only fit
        return
    # max(0, .): a prediction file from elsewhere (or an older ladder) may hold an interval that misses its point
    yerr = [[max(0.0, y - r[f"{key}_lo"])], [max(0.0, r[f"{key}_hi"] - y)]]
    ax.errorbar([x], [y], yerr=yerr, color="crimson", marker=marker,
                ms=10, capsize=3, zorder=4, label=label)


def _no_feature(ax, fit, task: str, step: str) -> bool:
    """A panel for a fit without an intermediate feature (single-step on an accuracy-only table): say so."""
    if np.isfinite(fit.data.feature).any():
        return False
    ax.text(0.5, 0.5, f"{task}: no intermediate feature\n({fit.method.name} fits accuracy directly)",
            ha="center", va="center", fontsize=8, transform=ax.transAxes)
    ax.set_title(f"{task} — {step}", fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    return True


TARGET_MARKERS = "*PXD^v"  # one per target, in the order of pred.targets


def plot_prediction(pred, cols: dict, out_dir) -> list[Path]:
    """Write step1.png, step2.png, chain.png for a `ladder.laws.predict.Prediction`; returns the paths."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_figure(plt, pred, draw, out_dir / f"{name}.png")
            for name, draw in (("step1", _step1_panel), ("step2", _step2_panel), ("chain", _chain_panel))]


def _figure(plt, pred, draw_panel, path: Path) -> Path:
    """One figure, a panel per task drawn by draw_panel(plt, ax, pred, task)."""
    fig, axes = _panels(plt, len(pred.fits))
    for ax, task in zip(axes, pred.fits):
        draw_panel(plt, ax, pred, task)
    return _save(plt, fig, path)


def _plain_log_y(ax) -> None:
    """A log y axis labelled 0.8, 0.9, 1 rather than 8 x 10^-1: a range within one decade (a task loss, a
    training loss) has at most one major tick, so matplotlib labels the minor ones, in that notation."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:.3g}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = ax.get_ylim()
    if 0 < lo and hi / lo < 10:
        ax.yaxis.set_minor_formatter(plain)


def _step1_panel(plt, ax, pred, task: str) -> None:
    """Step 1: the feature over D, one curve per ladder N (and per target N), final points, targets with
    intervals."""
    fit = pred.fits[task]
    data = fit.data
    if _no_feature(ax, fit, task, "step 1"):
        return
    d_max = max([data.d.max()] + [D for _, D in pred.targets.values()])
    grid = np.geomspace(data.d.min() / 2, d_max * 1.5, 200)
    for n, m, label, color in _size_groups(plt, data.n):
        L, _ = fit.predict(n, grid)
        ax.plot(grid, L, color=color, lw=1)
        ax.scatter(data.d[m], data.feature[m], color=color, s=18, zorder=3, label=label)
    for (name, (N, D)), mk in zip(pred.targets.items(), TARGET_MARKERS):
        L, _ = fit.predict(N, grid)
        r = pred.results[name][task]
        ax.plot(grid, L, color="crimson", lw=1, ls="--")
        _target(ax, D, r, "loss", mk, f"{name} (predicted)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel("tokens D")
    ax.set_ylabel(_feature_label(fit))
    ax.set_title(f"{task} — step 1 ({fit.method.name})", fontsize=9)
    ax.legend(fontsize=6)


def _step2_panel(plt, ax, pred, task: str) -> None:
    """Step 2: accuracy over the feature; every smoothed checkpoint, the sigmoid, targets."""
    fit = pred.fits[task]
    data = fit.data
    if _no_feature(ax, fit, task, "step 2"):
        return
    for _, m, label, color in _size_groups(plt, data.n[data.point_run]):
        ax.scatter(data.point_feature[m], data.point_acc[m], color=color, s=4, alpha=0.5,
                   label=f"{label} checkpoints")
    lo = min([0.0] + [r[task]["loss"] for r in pred.results.values() if np.isfinite(r[task]["loss"])])
    xs = np.linspace(lo, data.point_feature.max() * 1.05, 300)
    if fit.step2 is not None:  # an accuracy-only fit (single-step on a table without task loss) has none
        ax.plot(xs, fit.sigmoid.predict(fit.step2.x, xs), color="k", lw=1.2, label="fitted sigmoid")
    if data.chance is not None:
        ax.axhline(data.chance, color="gray", ls=":", lw=1, label="chance")
    for (name, _), mk in zip(pred.targets.items(), TARGET_MARKERS):
        r = pred.results[name][task]
        _target(ax, r["loss"], r, "acc", mk, f"{name} (predicted)")
    ax.set_xlabel(_feature_label(fit))
    ax.set_ylabel("accuracy")
    ax.set_title(f"{task} — step 2", fontsize=9)
    ax.legend(fontsize=6)


def _chain_panel(plt, ax, pred, task: str) -> None:
    """Chained: accuracy over compute 6ND; ladder finals (observed and predicted) and targets with intervals."""
    fit = pred.fits[task]
    data = fit.data
    _, acc_hat = fit.predict(data.n, data.d)
    for _, m, label, color in _size_groups(plt, data.n):
        ax.scatter(6 * data.n[m] * data.d[m], data.acc[m], color=color, s=18, label=f"{label} observed")
        ax.scatter(6 * data.n[m] * data.d[m], acc_hat[m], facecolors="none", edgecolors=color, s=30)
    for (name, (N, D)), mk in zip(pred.targets.items(), TARGET_MARKERS):
        r = pred.results[name][task]
        _target(ax, 6 * N * D, r, "acc", mk, f"{name}: {r['acc']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("training compute 6ND (FLOPs)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{task} — chained ({fit.method.name}); open: fitted", fontsize=9)
    ax.legend(fontsize=6)


# --- the report's training curves -------------------------------------------------------------------------

def plot_loss_curves(plan: dict, run_root: str, out: Path) -> Path | None:
    """Training loss over tokens seen, one line per rung (colour = size, style = multiple); log-log."""
    from ladder import rundir, storage

    plt = _plt()
    sizes = sorted({r["n"] for r in plan["rungs"]})
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for r in plan["rungs"]:
        rows = rundir.read_metrics(storage.join(run_root, r["name"]))  # local or gs://
        # a row without numeric tokens and loss (edited by hand) is left out, not a KeyError in the report
        rows = [m for m in rows if all(isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool)
                                       for k in ("tokens", "loss"))]
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
    _plain_log_y(ax)
    ax.set_xlabel("tokens seen D")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Training loss of every rung")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path = out / "plots" / "loss_curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    _savefig(fig, path, 110)
    plt.close(fig)
    return path


# --- the specialization study (ladder.specialization) ------------------------------------------------------

def plot_effectiveness(report: dict, out_dir) -> list[str]:
    """PNG plots: the domain metric and the general loss (forgetting) against CPT compute, and the ratio vs N."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = {k: np.asarray(v) for k, v in report["curves"].items()}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paths = []
    for key, ylabel, fname in (("value", report["metric"], "domain_metric_vs_compute.png"),
                               ("general_loss", "general loss (bits per byte)", "general_loss_vs_compute.png")):
        if not np.isfinite(c[key].astype(float)).any():
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for j, n in enumerate(sorted(set(c["n"].tolist()))):
            for kind, style in (("general", "--o"), ("domain", "-s")):
                sel = (c["n"] == n) & (c["kind"] == kind)
                order = np.argsort(c["compute"][sel])
                ax.plot(c["compute"][sel][order], c[key][sel][order].astype(float), style, color=colors[j % len(colors)],
                        label=f"N={n:.3g}, {kind} CPT")
        ax.set_xscale("log")
        ax.set_xlabel("CPT compute 6 N D_cpt (FLOPs)")
        ax.set_ylabel(ylabel)
        ax.set_title("Specialized vs general continued pretraining" if key == "value" else "Forgetting: general loss after CPT")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        _savefig(fig, out_dir / fname, 120)
        plt.close(fig)
        paths.append(str(out_dir / fname))
    fitted = [s for s in report["sizes"] if math.isfinite(s.get("compute_ratio_geomean") or math.nan)]
    if fitted:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        pts = [p for p in report["points"] if math.isfinite(p["compute_ratio"] or math.nan)]
        ax.scatter([p["n"] for p in pts], [p["compute_ratio"] for p in pts], alpha=0.5, label="per budget")
        ax.plot([s["n"] for s in fitted], [s["compute_ratio_geomean"] for s in fitted], "o", color="k", label="geometric mean per size")
        if report["trend"]:
            ns = np.geomspace(min(s["n"] for s in fitted), max(s["n"] for s in fitted), 50)
            t = report["trend"]
            ax.plot(ns, np.exp(t["u"]) * ns ** t["v"], "-", color="k", alpha=0.6, label=f"fit: ratio ∝ N^{t['v']:.2f}")
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("model size N (parameters)")
        ax.set_ylabel("general CPT compute / domain CPT compute\nto reach the same domain metric")
        ax.set_title("Compute effectiveness of specialization")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        _savefig(fig, out_dir / "compute_ratio_vs_n.png", 120)
        plt.close(fig)
        paths.append(str(out_dir / "compute_ratio_vs_n.png"))
    return paths


def plot_dcpt(fits: dict, points: dict, path) -> str:
    """One PNG for D-CPT fits: per loss, observed points and fitted curves against the share r, one line
    per (N, D); `fits`/`points` map "domain"/"general" to a DcptFit and its Points."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(fits), figsize=(6.0 * len(fits), 4.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    r_line = np.linspace(0.0, 1.0, 200)
    for ax, (name, fit) in zip(axes[0], fits.items()):
        p = points[name]
        combos = sorted({(a, b) for a, b in zip(p.n.tolist(), p.d.tolist())})
        for j, (n, d) in enumerate(combos):
            sel = (p.n == n) & (p.d == d)
            color = colors[j % len(colors)]
            ax.plot(p.r[sel], p.loss[sel], "o", color=color, ms=4)
            k = None if p.k is None else np.full_like(r_line, p.k[sel][0])
            ax.plot(r_line, fit.law(n, d, r_line, k), "-", color=color, lw=1, label=f"N={n:.3g}, D={d:.3g}")
        ax.set_xlabel("own-data share r of the CPT mixture" + (" (general share)" if name == "general" else " (domain share)"))
        ax.set_ylabel(f"{name} loss (bits per byte)")
        ax.set_yscale("log")
        ax.set_title(f"D-CPT law, {name} loss: R^2 = {fit.r2:.4f}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _savefig(fig, path, 120)
    plt.close(fig)
    return str(path)


def plot_split(fit, points, path) -> str:
    """Observed vs predicted domain loss for a split-law fit, coloured by the domain share D'/(D + D')."""
    plt = _plt()
    pred = fit.law(points.n, points.d, points.d_prime)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    sc = ax.scatter(points.loss, pred, c=points.d_prime / (points.d + points.d_prime), cmap="viridis", s=18)
    lo, hi = float(min(points.loss.min(), pred.min())), float(max(points.loss.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="y = x")
    ax.set_xlabel("observed domain loss (bits per byte)")
    ax.set_ylabel("split law prediction (bits per byte)")
    ax.set_title(f"L(N, D, D') fit: R^2 = {fit.r2:.4f}")
    fig.colorbar(sc, ax=ax, label="domain token share D'/(D+D')")
    ax.legend()
    fig.tight_layout()
    _savefig(fig, path, 120)
    plt.close(fig)
    return str(path)


def plot_allocation(result: dict, path) -> str:
    """The summed domain loss of the best split at each model size N around the optimum (an allocation from
    ladder.specialization.allocate_split, with its "profile")."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    ax.plot(result["profile"]["n"], result["profile"]["loss"], "-", label="best split at this N")
    ax.plot([result["n"]], [result["total_loss"]], "o", color="k",
            label=f"optimum N={result['n']:.3g}, D={result['d']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("model size N (parameters)")
    ax.set_ylabel(f"sum of {len(result['d_prime'])} domain losses (bits per byte)")
    ax.set_title(f"Pretrain/specialize split at C = {result['compute']:.3g} FLOPs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, path, 120)
    plt.close(fig)
    return str(path)
