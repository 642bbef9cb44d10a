"""What `ladder predict` returns: per (target, task) numbers, the fits, back-tests and flags, and its table.

Built by ladder.laws.predict.predict; the formulas behind every printed number are in docs/laws.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ladder.laws import flags as fl
from ladder.laws.backtest import Holdout
from ladder.laws.ensemble import FAR, Calibration, EnsembleFit
from ladder.laws.taskfit import TaskFit


def number_cell(v: float, spec: str, blank: str = "-") -> str:
    """A number in a fixed-width column, or `blank` right-aligned where it is NaN (no task loss, one
    checkpoint per run: "+nan%" read as a value)."""
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return f"{v:{'>' + spec}}" if np.isfinite(v) else f"{blank:>{width}}"


@dataclass
class Prediction:
    """Everything `ladder predict` prints and writes: per (target, task) numbers, fits, back-tests, flags."""

    targets: dict[str, tuple[float, float]]
    runs: list[str]
    fits: dict[str, TaskFit | EnsembleFit]
    results: dict[str, dict[str, dict]]             # {target: {task: {loss, acc, acc_lo, acc_hi, method, ...}}}
    backtests: dict[str, dict[str, Holdout]] = field(default_factory=dict)  # {task: {method: pooled Holdout}}
    warnings: list[str] = field(default_factory=list)
    samples: dict[str, dict] = field(default_factory=dict)  # {task: bootstrap rows}
    calibration: Calibration | None = None
    suite: list = field(default_factory=list)

    def to_json(self) -> dict:
        return self.results

    def distances_line(self) -> str:
        """Each target's extrapolation distance g (docs/laws.md, "The default", item 3: intervals): the number the
        band's width scales with, which the line above names and the table did not show."""
        g = {t: next((r["distance"] for r in per_task.values() if "distance" in r), np.nan)
             for t, per_task in self.results.items()}
        return "distance: " + ", ".join(f"{t} {number_cell(v, '.2f')}" for t, v in g.items()) + \
            " (1 + decades of N and of tokens per parameter beyond the largest fitted run; docs/laws.md)"

    def table(self) -> str:
        """Plain text: one line per target x task (interval, predicted change vs noise, flag codes), the
        back-test table, and one legend for the codes used."""
        # columns as wide as the longest name (prose_continuation, a hand-named target), never narrower
        tw = max([14] + [len(task) for per_task in self.results.values() for task in per_task]
                 + [len(task) for task in self.backtests])
        gw = max([12] + [len(t) for t in self.results])
        lines = [f"{'target':<{gw}} {'task':<{tw}} {'method':<12} {'loss':>7} {'acc':>6} {'95% interval':>15} "
                 f"{'change':>7} {'noise':>6} {'Lchange':>8} {'Lnoise':>7}  flags"]
        used = []
        for t, per_task in self.results.items():
            for task, r in per_task.items():
                iv = f"[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]"
                lines.append(f"{t:<{gw}} {task:<{tw}} {r['method']:<12} {number_cell(r['loss'], '7.4f')} {r['acc']:>6.3f} "
                             f"{iv:>15} {number_cell(r['acc_change'], '+7.3f')} {number_cell(r['acc_noise'], '6.3f')} "
                             f"{number_cell(r['loss_change_rel'], '+8.1%')} {number_cell(r['loss_noise_rel'], '7.2%')}  "
                             f"{' '.join(r['flags'])}")
                used += r["flags"]
        lines.append("loss: predicted task loss (bits per byte; '-' where no method has one); 95% interval: of acc; "
                     "change: predicted acc minus the largest-compute (N x D) fitted run's")
        lines.append("noise: s.d. of acc over a run's last 5 evaluations, mean over the largest size's runs; "
                     "Lchange, Lnoise: the same for the task loss, relative (docs/laws.md, 'Predictability')")
        if self.backtests:
            methods = list(next(iter(self.backtests.values())))
            what = ("back-test: mean |predicted - actual| accuracy over every split (docs/laws.md)"
                    if self.calibration else "back-test: |predicted - actual| accuracy of the largest rung "
                    "from the smaller ones")
            lines += ["", what, f"{'task':<{tw}} " + " ".join(f"{m:>13}" for m in methods)]
            for task, bt in self.backtests.items():
                lines.append(f"{task:<{tw}} " + " ".join(number_cell(bt[m].error, '13.4f', 'n/a') for m in methods))
            if any(not np.isfinite(h.error) for bt in self.backtests.values() for h in bt.values()):
                lines.append("n/a: the method could not be fitted on any back-test split's runs (too few runs "
                             "for its parameters, or no feature); it gets no weight")
        if self.calibration:
            c = self.calibration
            lines.append("ensemble weights: " + ", ".join(f"{m} {w:.2f}" for m, w in c.weights.items()))
            lines.append(f"interval: +-{c.q_acc:.4f} acc x extrapolation distance^{c.growth:g}, union with the bootstrap; "
                         f"covers {c.coverage:.0%} of {c.n_cells} back-test cells (leave-one-split-out)"
                         + (f", {c.far_coverage:.0%} of the {c.n_far} at distance > {FAR:g}" if c.n_far else ""))
            lines.append(self.distances_line())
        if used:
            lines += ["", "flags:"] + fl.legend(used)
        return "\n".join(lines)
