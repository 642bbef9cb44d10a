"""One task's result for every target: the point, its interval, its predictability and its flags.

The last stage of `predict` (predict.py fits; this reads the fits and writes `Prediction.results`), kept in
one place because every number of a result row is decided here: the bootstrap's percentile interval widened
by the ensemble's calibrated band, the predicted change against the checkpoint noise, and the flags about the
target (X100, IN, BELOW, RATIO, FPT, NOISY, SUB, DIR, FLAT). The formulas are in docs/laws.md ("The default: a
back-tested ensemble", "Bootstrap over whole runs", "Flags", "Predictability").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ladder.laws import flags as fl
from ladder.laws.backtest import LEVEL_SPAN, run_table, tpp_levels
from ladder.laws.ensemble import Calibration, EnsembleFit, distance
from ladder.laws.prediction import Prediction
from ladder.laws.taskdata import FINAL_WINDOW, TaskData, groups, present, task_constants, task_data

EXTRAPOLATION_FLAG = 100.0  # flag targets more than 100x the largest rung's compute (6ND)
INTERVAL = (2.5, 97.5)  # bootstrap percentiles (a 95% interval)
NOISY_RATIO = 2.0       # flag a task whose predicted change is under 2x its checkpoint noise
FLAT_RHO = 0.5          # flag a task whose final accuracy ranks with compute under this (Spearman)
BOOT_SHARE = 0.05       # BOOT: more than 5% of the bootstrap refits stopped short of their optimum


@dataclass
class FittedLadder:
    """The fitted runs and the numbers every target is measured against."""

    runs: list[str]
    nd: dict                # run -> (N, D), every run of the table
    c_max: float            # the largest fitted 6ND
    n_max: float            # the largest fitted N
    reference: str          # the run the predicted change is measured from (largest N x D)
    ratio: tuple[float, float] | None = None  # (lowest, highest) tokens per parameter when every fitted run
    # sits on one ratio D = k N (one token budget, backtest.tpp_levels), else None
    n_min: float = 0.0      # the smallest fitted N
    tpp: tuple = (0.0, float("inf"))  # the fitted runs' fewest and most tokens per parameter D/N

    @classmethod
    def of(cls, cols: dict, runs: list[str]) -> "FittedLadder":
        nd = run_table(cols)
        levels = tpp_levels(nd[r][1] / nd[r][0] for r in runs)
        tpp = [nd[r][1] / nd[r][0] for r in runs]
        return cls(runs, nd, max(6 * nd[r][0] * nd[r][1] for r in runs), max(nd[r][0] for r in runs),
                   max(runs, key=lambda r: nd[r][0] * nd[r][1]),
                   (levels[0][0], levels[0][-1]) if len(levels) == 1 else None,
                   n_min=min(nd[r][0] for r in runs), tpp=(min(tpp), max(tpp)))

    def inside(self, N: float, D: float) -> bool:
        """Within the fitted range on both sides of both axes the interval's distance measures (N, and tokens
        per parameter D/N): not an extrapolation. (Before: 6ND <= the largest rung's or N <= its N, so a
        target far below the smallest rung was 'inside'.)"""
        return self.n_min <= N <= self.n_max and self.tpp[0] <= D / N <= self.tpp[1]

    def below(self, N: float, D: float) -> str:
        """Why (N, D) lies below the ladder ('' when it does not): N under the smallest fitted N, or fewer tokens
        per parameter than any fitted run. A downward extrapolation: the laws were never checked there."""
        why = []
        if N < self.n_min:
            why.append(f"N={N:.3g} < the smallest fitted N={self.n_min:.3g}")
        if D / N < self.tpp[0]:
            why.append(f"D/N={D / N:.3g} < the fewest fitted tokens per parameter {self.tpp[0]:.3g}")
        return ", ".join(why)

    def below_decades(self, N: float, D: float) -> float:
        """Decades below the ladder: of N under the smallest fitted N plus of D/N under the fewest fitted tokens
        per parameter (0 within or above it); added to a target's distance g (ensemble.distance counts only
        decades above), so a target below the ladder gets a band as wide as one as far above."""
        return float(np.log10(max(self.n_min / N, 1.0)) + np.log10(max(self.tpp[0] / (D / N), 1.0)))

    def ratio_text(self) -> str:
        """The one ratio as printed: '20', or '18.5-21' where the runs spread over the level."""
        lo, hi = self.ratio
        return f"{lo:.3g}" if f"{lo:.3g}" == f"{hi:.3g}" else f"{lo:.3g}-{hi:.3g}"

    def off_ratio(self, N: float, D: float) -> bool:
        """Whether a target leaves a one-ratio ladder's line D = k N (by more than its level's span): there
        the data say nothing about how accuracy moves with D at fixed N (flag RATIO)."""
        if self.ratio is None:
            return False
        lo, hi = self.ratio
        return not lo / LEVEL_SPAN <= D / N <= hi * LEVEL_SPAN


def noise(cols: dict, task: str, runs: list[str], window: int = FINAL_WINDOW) -> dict:
    """Checkpoint-to-checkpoint noise of one task (Bhagia et al. 2024 §4's predictability analysis): the
    standard deviation of accuracy (points) and of the task loss (relative) over each run's last `window`
    evaluations, averaged over the runs of the largest fitted size (the closest to a target). Runs with
    fewer than 2 evaluations of the task give no spread and are left out."""
    nd = run_table(cols)
    top = max(nd[r][0] for r in runs)
    chosen = present(cols, task, [r for r in runs if nd[r][0] == top])
    nan = {"acc_sd": float("nan"), "loss_sd_rel": float("nan")}
    if not chosen:
        return nan
    rows, starts = groups(cols, task, chosen)
    sizes = np.diff(starts)
    from_end = np.repeat(starts[1:], sizes) - 1 - np.arange(starts[-1])
    tail = from_end < window
    rows, starts = rows[tail], np.concatenate([[0], np.cumsum(np.minimum(sizes, window))])
    spread = np.diff(starts) >= 2
    if not spread.any():
        return nan

    def sd(v):  # per run: s.d. (ddof 1) of its tail values
        count = np.diff(starts)
        mean = np.add.reduceat(v, starts[:-1]) / count
        dev = v - np.repeat(mean, count)
        return np.sqrt(np.add.reduceat(dev * dev, starts[:-1]) / np.maximum(count - 1, 1)), mean

    acc_sd, _ = sd(cols["acc"][rows])
    out = {"acc_sd": float(np.mean(acc_sd[spread])), "loss_sd_rel": float("nan")}
    if "loss" in cols:
        L = cols["loss"][rows]
        finite = np.logical_and.reduceat(np.isfinite(L), starts[:-1]) & spread
        if finite.any():
            loss_sd, loss_mean = sd(np.where(np.isfinite(L), L, 0.0))
            out["loss_sd_rel"] = float(np.mean((loss_sd / loss_mean)[finite]))
    return out


def direction(cols: dict, task: str, runs: list[str], acc_sd: float) -> tuple[str, str] | None:
    """("DIR", why) when the task's accuracy runs the wrong way, ("FLAT", why) when it does not clearly rise,
    else None. Over the fitted runs' final accuracies: DIR is a Spearman rank correlation with compute 6ND of
    -0.5 or below **and** a fall, by the least-squares line in log compute across the fitted range, of more
    than 2x the checkpoint noise (0.01 where unknown). The step-2 sigmoid cannot bend that way (k >= 0), so it
    fits a flat line at the ceiling and predicts ~1: a number from nothing. Near-chance tasks wobble, hence the
    noise bar. FLAT is any other rank correlation under +0.5: accuracies as noise around a level (probed:
    uniform draws in [0.2, 0.9] predicted 0.997 for 7B, flagged only X100), so the rise the law extrapolates is
    its assumption, not the data's (docs/laws.md, "Flags": DIR, FLAT; every OLMo task has +0.98 or more)."""
    chosen = present(cols, task, runs)
    if len(chosen) < 3:
        return None
    rows, starts = groups(cols, task, chosen)
    acc = cols["acc"][rows[starts[1:] - 1]]
    nd = run_table(cols)
    logc = np.log(np.array([6.0 * nd[r][0] * nd[r][1] for r in chosen]))
    ok = np.isfinite(acc) & np.isfinite(logc)
    acc, logc = acc[ok], logc[ok]
    if len(acc) < 3 or np.ptp(logc) == 0 or np.ptp(acc) == 0:
        return None
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(float)
    rho = float(np.corrcoef(rank(logc), rank(acc))[0, 1])
    fall = -float(np.polyfit(logc, acc, 1)[0]) * float(np.ptp(logc))
    bar = 2 * acc_sd if np.isfinite(acc_sd) else 0.01
    if rho <= -0.5 and fall > bar:
        return "DIR", f"final accuracy falls {fall:.3f} across the fitted compute range (rank correlation {rho:+.2f})"
    if rho < FLAT_RHO:
        return "FLAT", f"final accuracy barely follows compute on the fitted runs (rank correlation {rho:+.2f})"
    return None


def below_chance(cols: dict, task: str, runs: list[str], acc_sd: float) -> tuple[str | None, float]:
    """(Why the task's accuracy sits below chance on every fitted run, or None; the best fitted final accuracy).
    Below chance means the best final accuracy is more than 2x the checkpoint noise (0.01 where unknown) under
    the task's chance level: the task scores worse than guessing everywhere (a wrong chance level, a scoring
    bug, or a task the models get systematically wrong at this scale). The laws assume accuracy rises from
    chance, so their rise is one guess among others (docs/laws.md, "Flags": SUB)."""
    chance = task_constants(cols, task)[1]
    chosen = present(cols, task, runs)
    if not chance or not chosen:
        return None, float("nan")
    rows, starts = groups(cols, task, chosen)
    acc = cols["acc"][rows[starts[1:] - 1]]
    acc = acc[np.isfinite(acc)]
    if not len(acc):
        return None, float("nan")
    best = float(acc.max())
    bar = 2 * acc_sd if np.isfinite(acc_sd) else 0.01
    if best < chance - bar:
        return (f"{task}: every fitted run's final accuracy is below chance {chance:.3g} (the best {best:.3f}, "
                f"the worst {float(acc.min()):.3f})"), best
    return None, best


@dataclass
class _TaskFacts:
    """What every target's row of one task shares: the task's checkpoint noise (`noise`), its trend on the
    fitted runs (`direction`: DIR, FLAT or None), why it sits below chance (`below_chance`, or None) with the
    best fitted final accuracy, the reference run's point (the predicted change is measured from it), whether
    an ensemble member or the method fits compute from FLOPs/token (FPT), and which bootstrap refits
    converged (None without a bootstrap)."""

    noise: dict
    trend: tuple[str, str] | None
    below_chance: str | None
    best: float
    reference: TaskData     # the reference run's point
    uses_compute: bool
    converged: np.ndarray | None

    @classmethod
    def of(cls, pred: Prediction, cols: dict, task: str, ladder: FittedLadder) -> "_TaskFacts":
        fit, samples = pred.fits[task], pred.samples.get(task)
        converged = None
        if samples is not None:  # an ensemble's refit converged where every member's did
            converged = (np.all([s["converged"] for s in samples.values()], 0) if isinstance(fit, EnsembleFit)
                         else samples["converged"])
        noisy = noise(cols, task, ladder.runs)
        trend = direction(cols, task, ladder.runs, noisy["acc_sd"])
        why_below, best = below_chance(cols, task, ladder.runs, noisy["acc_sd"])
        reference = task_data(cols, task, [ladder.reference], "loss" if np.isfinite(noisy["loss_sd_rel"]) else "")
        uses_compute = any(f.method.form == "c" and f.data.fpt is not None
                           for f in getattr(fit, "members", {"": fit}).values())
        return cls(noisy, trend, why_below, best, reference, uses_compute, converged)


def task_results(pred: Prediction, cols: dict, task: str, ladder: FittedLadder, flag_list: list,
                 flops: dict) -> None:
    """One task's result for every target (pred.results), in four phases: the point and its change against
    the reference run (`_point_row`), the bootstrap's interval (`_widen_to_bootstrap`), the distance and
    the calibrated band (`widen_to_calibration`), and the flags, about where the target lies (`_where_flags`)
    and about the task's data (`_task_flags`, which also widens the interval where the law's rise is not in
    the data)."""
    fit, samples = pred.fits[task], pred.samples.get(task)
    facts = _TaskFacts.of(pred, cols, task, ladder)
    for name, (N, D) in pred.targets.items():
        F = flops.get(name)
        L, acc = fit.predict(N, D, F)
        r = _point_row(fit, facts, ladder, N, D, L, acc)
        short = "" if samples is None else _widen_to_bootstrap(r, fit, samples, facts.converged, N, D, F, L, acc)
        r["distance"] = float(distance(N, D, [ladder.nd[x][0] for x in ladder.runs],
                                       [ladder.nd[x][1] for x in ladder.runs])) + ladder.below_decades(N, D)
        if pred.calibration is not None:
            widen_to_calibration(r, pred.calibration)
            r["weights"] = dict(fit.weights)
        f = list(flag_list) + ([("BOOT", short)] if short else [])
        f += _where_flags(fit, ladder, N, D, F, facts.uses_compute, r["compute_ratio"])
        f += _task_flags(r, facts, cols, task)
        r["flags"], r["flag_details"] = fl.merge(f)
        if task in pred.backtests:
            r["backtest_error"] = {k: h.error for k, h in pred.backtests[task].items()}
        pred.results[name][task] = r


def _point_row(fit, facts: _TaskFacts, ladder: FittedLadder, N: float, D: float, L, acc) -> dict:
    """A target's result row before its interval: the predicted loss L and accuracy acc (the interval starts
    as the point), the method, the compute ratio to the ladder's largest run, and the predicted change from
    the reference run beside the checkpoint noise (NOISY compares them)."""
    ref = facts.reference
    return {"loss": float(L), "acc": float(acc), "acc_lo": float(acc), "acc_hi": float(acc),
            "loss_lo": float(L), "loss_hi": float(L), "method": fit.method.name,
            "feature": fit.method.feature, "compute_ratio": 6 * N * D / ladder.c_max,
            "acc_change": float(acc - ref.acc[0]), "acc_noise": facts.noise["acc_sd"],
            "loss_change_rel": float(L / ref.feature[0] - 1), "loss_noise_rel": facts.noise["loss_sd_rel"]}


def _widen_to_bootstrap(r: dict, fit, samples, converged, N, D, F, L, acc) -> str:
    """r's accuracy (and, where the refits predict one, loss) interval from the bootstrap refits' predictions
    at the target; returns why the interval is unreliable ('' when it is not: `refits_short`)."""
    loss_samples, acc_samples = fit.predict(N, D, F, samples)
    r["acc_lo"], r["acc_hi"] = bootstrap_interval(acc_samples, acc)
    short = refits_short(acc_samples, converged)
    if np.isfinite(loss_samples).any():
        r["loss_lo"], r["loss_hi"] = bootstrap_interval(loss_samples, L)
    return short


def _where_flags(fit, ladder: FittedLadder, N: float, D: float, F, uses_compute: bool, ratio: float) -> list:
    """The flags about where the target lies against the fitted ladder: far beyond its compute (X100),
    inside it (IN) or below it (BELOW), off its one tokens-per-parameter ratio (RATIO), where an ensemble
    member's curve is clipped as too steep (STEEP), and FLOPs/token extrapolated for the compute law (FPT)."""
    f = []
    if ratio > EXTRAPOLATION_FLAG:
        f.append(("X100", f"{ratio:,.0f}x the compute (6ND) of {ladder.reference}" if ratio < 1e6
                        else f"{ratio:.3g}x the compute (6ND) of {ladder.reference}"))  # not 39 digits
    if ladder.inside(N, D):
        f.append(("IN", f"N={N:.3g}, 6ND={6 * N * D:.3g}"))
    elif ladder.below(N, D):
        f.append(("BELOW", ladder.below(N, D)))
    if ladder.off_ratio(N, D):
        f.append(("RATIO", f"every fitted run has {ladder.ratio_text()} tokens per parameter, the target "
                           f"{D / N:.3g}"))
    if isinstance(fit, EnsembleFit):
        f += fit.steep_clips(N, D, F)
    if uses_compute and F is None:
        f.append(("FPT", "FLOPs/token extrapolated as 6N + k N^g from the ladder"))
    return f


def _task_flags(r: dict, facts: _TaskFacts, cols: dict, task: str) -> list:
    """The flags about the task's own data, NOISY (the predicted change within the checkpoint noise), SUB
    (below chance on every fitted run) and the trend's DIR or FLAT, and what they do to r's interval: under
    SUB the law's rise from chance is not in the data, so staying at the best measured accuracy is as likely
    (the interval reaches down to it); under DIR the number is no prediction, so the interval is the whole
    range accuracy can take."""
    f, acc_sd = [], facts.noise["acc_sd"]
    if np.isfinite(acc_sd) and abs(r["acc_change"]) < NOISY_RATIO * acc_sd:
        f.append(("NOISY", f"change {r['acc_change']:+.3f} vs noise {acc_sd:.3f}"))
    if facts.below_chance:
        f.append(("SUB", facts.below_chance))
        r["acc_lo"] = min(r["acc_lo"], facts.best)
    if facts.trend:
        f.append(facts.trend)
        if facts.trend[0] == "DIR":
            r["acc_lo"], r["acc_hi"] = float(task_constants(cols, task)[1] or 0.0), 1.0
    return f


def refits_short(samples, converged) -> str:
    """Why the bootstrap interval of `samples` [B] is unreliable ('' when it is not): more than BOOT_SHARE of the
    refits stopped short of their optimum, after their extra iterations (chinchilla.REFIT_MORE): the solver
    gave up (no step lowered the objective) or ran out of iterations still gaining. The detail says how far
    leaving them out moves the interval's ends: a biased subset (the resamples hardest to fit), so a hint of
    their weight, not the move continuing them would make. (Before: every refit past 1,000 iterations, or at
    an exact fit where a relative tolerance cannot hold, counted; BOOT fired on every clean ladder.)"""
    samples, converged = np.asarray(samples, dtype=np.float64), np.asarray(converged, dtype=bool)
    share = float((~converged).sum()) / max(len(converged), 1)
    if (~converged).sum() <= BOOT_SHARE * len(converged):
        return ""
    lo, hi = np.nanpercentile(samples, INTERVAL)
    kept = samples[converged & np.isfinite(samples)]
    if len(kept) < 2:
        return f"{share:.0%} of refits stopped short of their optimum (fewer than 2 converged)"
    klo, khi = np.percentile(kept, INTERVAL)
    move = max(abs(klo - lo), abs(khi - hi))
    return f"{share:.0%} of refits stopped short of their optimum (without them the interval's ends move {move:.3f})"


def bootstrap_interval(samples, point: float) -> tuple[float, float]:
    """The bootstrap's percentile interval, stretched to hold the point estimate.

    A percentile interval can miss its own point when the refits are biased (a bound that binds in most
    resamples, or an ensemble whose members' refits lean one way; seen with 20 resamples on a 3-size ladder),
    and an interval that excludes the prediction it qualifies is no interval of it."""
    lo, hi = np.nanpercentile(samples, INTERVAL)
    return float(min(lo, point)), float(max(hi, point))


def widen_to_calibration(r: dict, c: Calibration) -> None:
    """The reported interval: the union of the bootstrap's and the calibrated band q x distance^growth."""
    h, hl = c.half_width(r["distance"]), c.half_width(r["distance"], loss=True)
    r["acc_lo"], r["acc_hi"] = min(r["acc_lo"], r["acc"] - h), max(r["acc_hi"], r["acc"] + h)
    # the band is symmetric in accuracy, which is a probability: never report one outside [0, 1]
    r["acc_lo"], r["acc_hi"] = max(r["acc_lo"], 0.0), min(r["acc_hi"], 1.0)
    if np.isfinite(c.q_loss) and np.isfinite(r["loss"]):
        # a task loss (nats or bits per byte) is never negative: a band over 100% stops at 0, not below it
        r["loss_lo"] = max(min(r["loss_lo"], r["loss"] * (1 - hl)), 0.0)
        r["loss_hi"] = max(r["loss_hi"], r["loss"] * (1 + hl))
