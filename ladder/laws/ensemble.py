"""The default predictor: a weighted ensemble of the methods, weights and intervals from back-tests.

Rule (fixed before looking at any target, docs/laws.md "The default"):
  - weights, pooled over tasks: w_m proportional to prior_m / MSE_m, MSE_m the mean squared accuracy error of
    method m over every back-test cell (split x task x held-out run); prior 2 for the paper's method and 1
    for the others, so where back-tests cannot tell methods apart the paper keeps the largest share
    (inverse-MSE combination: Bates & Granger 1969; it beats fitted stacking weights when the errors are
    noisy, Stock & Watson 2004). A method that cannot be fitted on this ladder (no task loss, too few
    runs) gets weight 0 and the others are renormalised; one fitted on all runs but on no back-test cell
    weighs as the worst judged method (rule Z); every member's accuracy past the ladder is held within its
    steep guard (rule S, steep.py), in the back-tests as at the targets;
  - intervals: split-conformal on the ensemble's back-test errors scaled by extrapolation distance g
    (`distance`: 1 + decades of N beyond the largest fitted N + decades of tokens/parameter beyond the
    largest fitted); the half-width at a target is q * g_target^GROWTH, q the ceil(0.95 (n + 1))-th smallest
    |error| / g^GROWTH over the n cells, and at least the same quantile over the cells that extrapolate
    upward (rule U); the reported interval is the union of that and the bootstrap's 95%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ladder.laws.backtest import LEVEL_SPAN, Holdout
from ladder.laws.steep import K as STEEP_K, envelope_of
from ladder.laws.taskfit import Method, TaskFit

MENU = ("paper", "single-step", "compute", "lm-loss", "chance-floor")
PRIOR = {"paper": 2.0}
# On a one-ratio ladder without a task loss the paper's chain can only run on the LM loss: `lm-loss` carries the
# paper's prior there (candidate C2, adopted by a check written before scoring; docs/laws.md "Ladders of other
# shapes"). Chosen by predict.py, which knows the ladder's shape.
PAPER_STAND_IN = {"lm-loss": 2.0}
LEVEL = 0.95
# How the interval grows with distance: half-width q g^GROWTH. Back-test errors grow faster than g (OLS of
# log |error| on log g over 344 OLMo cells up to g 2.32: exponent 2.4); out of sample, in designs whose own
# suite reaches g <= 1.4, a band q g covered 79% of the cells at g 1.79-2.09 and q g^2 96% (docs/laws.md,
# "Error against extrapolation distance"). One suite's g range (1-2) is too short to fit the exponent per
# ladder (fits on the designs' suites scatter from 0.3 to 2.3), so it is fixed.
GROWTH = 2.0
FAR = 1.5  # cells past this distance are reported apart: a target 10x the ladder's compute sits at g ~1.8-2.3
ENSEMBLE = Method("ensemble")
# the fewest cells whose conformal LEVEL quantile is finite: ceil(0.95 (n + 1)) <= n from n = 19
MIN_CELLS = next(n for n in range(1, 10 ** 4) if math.ceil(LEVEL * (n + 1)) <= n)


@dataclass(frozen=True)
class Rule:
    """The session-10 candidates the default applies (pre-registered, docs/laws.md "Ladders of other shapes");
    bench/backtest_shapes.py scores each on and off."""

    steep: bool = True      # S: every member held within its steep guard's envelope (steep.py); off: flag only
    unjudged: bool = True   # Z: a member with no back-test cell weighs as the worst judged member
    per_task: bool = False  # P: a task whose cells the paper member fits better than the ensemble uses it alone
    upward: bool = False    # U: the band's scale is also at least the upward-extrapolating cells' own quantile


# the adopted rule (docs/laws.md "Ladders of other shapes", session 10): Z passed the pre-registered check; S failed
# its clause (b) first (the chain generator, where it changes nothing), then passed the second check on top of Z;
# P failed clause (d) (OLMo's leave-one-split-out coverage fell). U passed its own check ("Session 10: interval
# coverage on other shapes"): single-step rows 89.4% -> 92.8% covered on fresh draws, OLMo's band unchanged.
RULE = Rule(steep=True, unjudged=True, per_task=False, upward=True)


def distance(N, D, fit_n, fit_d) -> np.ndarray:
    """How far (N, D) extrapolates from fitted runs (fit_n, fit_d): 1 inside the ladder, plus one per decade
    of N beyond the largest fitted N, plus one per decade of tokens per parameter beyond the largest fitted
    D/N. (6ND alone cannot see it: OLMo's 1B-10xC run out-computes the 3B runs at 0.5-2xC.)"""
    N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    n_max = np.max(fit_n)
    tpp_max = np.max(np.asarray(fit_d, dtype=np.float64) / np.asarray(fit_n, dtype=np.float64))
    return 1.0 + np.log10(np.maximum(N / n_max, 1.0)) + np.log10(np.maximum(D / N / tpp_max, 1.0))


def conformal_quantile(scores: np.ndarray, level: float = LEVEL) -> float:
    """The ceil(level (n + 1))-th smallest score (split-conformal); inf when there are too few scores."""
    s = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    k = math.ceil(level * (len(s) + 1))
    return float(s[k - 1]) if 0 < k <= len(s) else float("inf")


def band_scale(scores: np.ndarray, level: float = LEVEL) -> float:
    """The band's scale q from the cells' scaled errors: the split-conformal quantile, or where the cells are
    too few for it (fewer than 19 at 95%: the quantile is infinite, and the band was [0, 1] on a one-task,
    one-ratio ladder of 8 sizes, 16 cells) the largest of them, whose conformal level is n / (n + 1)."""
    q = conformal_quantile(scores, level)
    finite = np.asarray(scores, dtype=np.float64)[np.isfinite(scores)]
    return float(finite.max()) if not np.isfinite(q) and len(finite) else q


# U: a cell extrapolates upward when its g is past 1 by more than one token-budget level's span (1.2x, as
# backtest.LEVEL_SPAN): an OLMo rerun's slightly larger token count is not an extrapolation
UPWARD = 1.0 + math.log10(LEVEL_SPAN)


def rule_scale(scores: np.ndarray, g: np.ndarray, upward: bool) -> float:
    """The band's scale from the cells' scaled errors `scores` at distances `g`: `band_scale` over every cell,
    and with U at least `band_scale` over the cells that extrapolate upward (g > UPWARD). Why: on a one-ratio
    ladder the suite is size-out splits only and all but the largest size's sit at g = 1, so the pooled quantile
    is an interpolation error's; the members' bias at a target, one-signed per task, shows in the upward
    cells first (docs/laws.md "Session 10: interval coverage on other shapes")."""
    scores, g = np.asarray(scores, dtype=np.float64), np.asarray(g, dtype=np.float64)
    q = band_scale(scores)
    up = g > UPWARD
    return max(q, band_scale(scores[up])) if upward and up.any() else q


def predicted(h: Holdout, steep: bool) -> np.ndarray:
    """A member's back-test prediction as the ensemble uses it: held within the steep guard when it applies."""
    return h.guarded if steep and h.guarded is not None else h.predicted


def _cells(suite: list[dict[str, dict[str, Holdout]]], methods, steep: bool = False) -> dict:
    """Stack the back-test cells: accuracy errors [n, M], loss relative errors [n, M], distance g [n], split [n]."""
    err, lerr, dist, split, task = [], [], [], [], []
    for i, per_task in enumerate(suite):
        for t, hs in per_task.items():
            T = len(next(iter(hs.values())).test_runs)
            err.append(np.stack([predicted(hs[m], steep) - hs[m].actual if m in hs else np.full(T, np.nan)
                                 for m in methods], 1))
            lerr.append(np.stack([hs[m].loss_rel if m in hs and hs[m].loss_rel is not None else np.full(T, np.nan)
                                  for m in methods], 1))
            dist.append(next(iter(hs.values())).distance)
            split += [i] * T
            task += [t] * T
    return {"err": np.concatenate(err), "loss": np.concatenate(lerr), "g": np.concatenate(dist),
            "split": np.array(split), "task": np.array(task)}


@dataclass
class Calibration:
    """What the back-tests decided: weights, per-method MSE, the interval scale and its coverage."""

    weights: dict[str, float]
    mse: dict[str, float]
    q_acc: float                   # accuracy half-width per unit of distance() ** growth
    q_loss: float                  # relative loss half-width per unit of distance() ** growth
    n_cells: int
    coverage: float                # leave-one-split-out coverage of the acc interval on the back-tests
    loss_coverage: float
    ensemble_mae: float            # leave-one-split-out mean |error| of the ensemble (weights refitted)
    method_mae: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    growth: float = GROWTH         # the half-width at distance g is q g^growth
    far_coverage: float = float("nan")  # the same, over the cells at distance g > FAR (targets sit there)
    n_far: int = 0
    task_weights: dict = field(default_factory=dict)  # {task: weights} where P gives a task the paper member alone

    def weights_for(self, task: str) -> dict[str, float]:
        """The weights a task's ensemble uses: its own where P chose the paper member, else the pooled ones."""
        return self.task_weights.get(task, self.weights)

    def half_width(self, g, loss: bool = False):
        """The calibrated band's half-width at distance g (accuracy points, or the loss's relative error)."""
        return (self.q_loss if loss else self.q_acc) * np.asarray(g, dtype=np.float64) ** self.growth


def weights_from(err: np.ndarray, methods, prior: dict | None = None,
                 unjudged: bool | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """prior / MSE weights over methods with an error on every cell some method could fit. A cell no method
    could fit (a split whose fit set is degenerate: every accuracy at chance) judges none of them; counted, it
    zeroed every weight and the default refused a ladder its own methods fit. A method with an error on some
    cells but not all weighs 0. A method with NO cell (too few runs per split for its parameters, though the
    full fit may have enough) weighs, with `unjudged` (Z), prior / the largest MSE of the judged methods: it
    is judged no better than the worst judged one (its MSE stays NaN: nothing measured it); else 0."""
    err = err[np.isfinite(err).any(1)]
    usable = [j for j, _ in enumerate(methods) if len(err) and np.isfinite(err[:, j]).all()]
    mse = {m: float(np.mean(err[:, j] ** 2)) if j in usable else float("nan") for j, m in enumerate(methods)}
    prior = PRIOR if prior is None else prior
    raw = {m: prior.get(m, 1.0) / max(mse[m], 1e-12) if j in usable else 0.0 for j, m in enumerate(methods)}
    if (RULE.unjudged if unjudged is None else unjudged) and usable:
        worst = max(mse[methods[j]] for j in usable)
        for j, m in enumerate(methods):
            if not np.isfinite(err[:, j]).any():
                raw[m] = prior.get(m, 1.0) / max(worst, 1e-12)
    total = sum(raw.values())
    return {m: v / total for m, v in raw.items()} if total > 0 else raw, mse


def _combine(x: np.ndarray, w: dict[str, float], methods) -> np.ndarray:
    """The weighted mean of the members' errors per cell, over the weighted members with an error there
    (a member no cell judged, Z, has none: the cells show the judged members' mean); NaN where none has."""
    wv = np.array([w.get(m, 0.0) for m in methods])
    on = (wv > 0) & np.isfinite(x)
    total = on @ wv
    return np.where(total > 0, np.where(on, x, 0.0) @ wv / np.where(total > 0, total, 1.0), np.nan)


def _task_weights(err, task, w, methods, prior: dict) -> dict:
    """P: {task: the paper member alone} for each task whose cells the paper member (the method of the largest
    prior: `paper`, or its stand-in) fits with a lower MSE than the pooled ensemble; {} without such a member."""
    anchor = max(methods, key=lambda m: prior.get(m, 1.0))
    if prior.get(anchor, 1.0) <= 1.0:
        return {}
    j, ens = list(methods).index(anchor), _combine(err, w, methods)
    out = {}
    for t in np.unique(task):
        k = (task == t) & np.isfinite(ens) & np.isfinite(err[:, j])
        if k.any() and np.mean(err[k, j] ** 2) < np.mean(ens[k] ** 2):
            out[str(t)] = {m: float(m == anchor) for m in methods}
    return out


def _rule_weights(err, task, methods, prior: dict, rule: Rule):
    """(pooled weights, MSE per method, per-task weights) under `rule`."""
    w, mse = weights_from(err, methods, prior, rule.unjudged)
    return w, mse, (_task_weights(err, task, w, methods, prior) if rule.per_task else {})


def ensemble_errors(err, task, w, task_w, methods) -> np.ndarray:
    """The ensemble's error per cell: each cell's task weights where P set them, else the pooled weights."""
    ens = _combine(err, w, methods)
    for t, wt in task_w.items():
        k = task == t
        if k.any():
            ens[k] = _combine(err[k], wt, methods)
    return ens


def calibrate(suite, methods=MENU, prior: dict | None = None, rule: Rule | None = None) -> Calibration:
    """Weights and interval scale from the whole suite; coverage and error by leaving each split out.
    prior: {method: prior weight} (default PRIOR; others 1); rule: the candidates applied (default RULE)."""
    rule, prior = RULE if rule is None else rule, PRIOR if prior is None else prior
    methods = [m for m in methods if any(m in hs for per in suite for hs in per.values())]
    c = _cells(suite, methods, rule.steep)
    w, mse, task_w = _rule_weights(c["err"], c["task"], methods, prior, rule)
    g = c["g"] ** GROWTH  # the scale of the cells' errors: extrapolation distance ** GROWTH
    ens = ensemble_errors(c["err"], c["task"], w, task_w, methods)
    # the loss: weighted over the members that predict the task loss on that cell (not lm-loss's LM loss)
    lw = np.array([0.0 if m == "lm-loss" else w[m] for m in methods])
    finite = np.isfinite(c["loss"]) & (lw > 0)
    lsum = (finite * lw).sum(1)
    has_loss = lsum > 0
    ens_loss = np.where(finite, c["loss"], 0.0) @ lw / np.where(has_loss, lsum, 1.0)
    q_acc = rule_scale(np.abs(ens) / g, c["g"], rule.upward)
    q_loss = (rule_scale(np.abs(ens_loss[has_loss]) / g[has_loss], c["g"][has_loss], rule.upward) if has_loss.any()
              else float("inf"))
    n_finite = int(np.isfinite(ens).sum())
    notes = [] if n_finite >= MIN_CELLS else [
        f"only {n_finite} back-test cells, fewer than a {LEVEL:.0%} band needs ({MIN_CELLS}): "
        f"the band is the largest back-test error scaled by distance, a level of n/(n+1) = "
        f"{n_finite / (n_finite + 1):.0%}; more tasks or runs give more cells"]
    covered, lcovered, abs_err, far = [], [], [], []
    for s in np.unique(c["split"]):
        tr, te = c["split"] != s, c["split"] == s
        ws, _, tws = _rule_weights(c["err"][tr], c["task"][tr], methods, prior, rule)
        e_tr = ensemble_errors(c["err"][tr], c["task"][tr], ws, tws, methods)
        e_te = ensemble_errors(c["err"][te], c["task"][te], ws, tws, methods)
        q = rule_scale(np.abs(e_tr) / g[tr], c["g"][tr], rule.upward)
        covered += list(np.abs(e_te) <= q * g[te])
        far += list(c["g"][te] > FAR)
        abs_err += list(np.abs(e_te))
        ltr, lte = tr & has_loss, te & has_loss
        if lte.any() and ltr.any():
            ql = rule_scale(np.abs(ens_loss[ltr]) / g[ltr], c["g"][ltr], rule.upward)
            lcovered += list(np.abs(ens_loss[lte]) <= ql * g[lte])
    method_mae = {m: float(np.mean(np.abs(c["err"][:, j]))) for j, m in enumerate(methods)}  # NaN: not fitted
    far_covered = np.array(covered, dtype=bool)[np.array(far, dtype=bool)]
    return Calibration(w, mse, q_acc, q_loss, len(g), float(np.mean(covered)) if covered else float("nan"),
                       float(np.mean(lcovered)) if lcovered else float("nan"), float(np.mean(abs_err)), method_mae,
                       notes=notes, far_coverage=float(np.mean(far_covered)) if len(far_covered) else float("nan"),
                       n_far=len(far_covered), task_weights=task_w)


class EnsembleFit:
    """The weighted ensemble for one task; looks like a TaskFit (plots, tables) with the paper as its face."""

    def __init__(self, members: dict[str, TaskFit], weights: dict[str, float], steep: bool | None = None):
        self.members = {m: f for m, f in members.items() if weights.get(m, 0) > 0}
        # S: each member's accuracy past the ladder held within what its fitted runs support (steep.py) where
        # the rule says so; flagged STEEP either way
        self.clip = RULE.steep if steep is None else steep
        self.envelopes = {m: envelope_of(f) for m, f in self.members.items()}
        self.weights = {m: weights[m] for m in self.members}
        total = sum(self.weights.values())
        self.weights = {m: v / total for m, v in self.weights.items()}
        # the face (plots): the paper's chain, else a member with an intermediate feature, else any
        face = members.get("paper") or next((f for f in self.members.values() if not f.method.single_step),
                                            next(iter(self.members.values())))
        self.task, self.data, self.step1, self.step2, self.single = face.task, face.data, face.step1, face.step2, None
        self.method, self.form, self.sigmoid = ENSEMBLE, face.form, face.sigmoid

    def predict(self, N, D, F=None, rows: dict | None = None):
        """(loss, accuracy): weighted over members; loss over members whose feature is the task loss."""
        rows = rows or {}
        acc, loss, lw = 0.0, 0.0, 0.0
        for m, fit in self.members.items():
            L, a = fit.predict(N, D, F, rows.get(m))
            if self.clip and self.envelopes.get(m) is not None:
                a = self.envelopes[m].clip(a, N, D)
            acc = acc + self.weights[m] * a
            if fit.method.feature == "loss" and np.all(np.isfinite(L)):
                loss, lw = loss + self.weights[m] * L, lw + self.weights[m]
        return (loss / lw if lw else np.full(np.shape(acc), np.nan)), acc

    def steep_clips(self, N, D, F=None) -> list[tuple[str, str]]:
        """STEEP flags: each member whose accuracy at (N, D) is past its guard's envelope, with both values (held
        to the bound where the rule clips, else only said)."""
        out = []
        for m, env in self.envelopes.items():
            if env is None:
                continue
            a = float(self.members[m].predict(N, D, F)[1])
            bound = float(env.clip(a, N, D))
            if bound != a:
                out.append(("STEEP", f"{m}: {a:.3f}{' held to' if self.clip else ', past'} {bound:.3f} ({STEEP_K:g} x "
                                     f"the fitted runs' steepest slope, {env.slope:.3f} per decade of 6ND)"))
        return out

    def fits(self) -> dict:
        return {(m if k == m else f"{m} {k}"): v for m, fit in self.members.items() for k, v in fit.fits().items()}
