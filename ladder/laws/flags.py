"""Flags on a prediction: a short code per problem in tables, one legend, the details in JSON.

Each flag is (code, detail). Tables print the codes; `legend(codes)` prints each used code's meaning once;
the JSON keeps both (`flags`: codes, `flag_details`: code -> detail). docs/laws.md, "Flags".
"""

from __future__ import annotations

import numpy as np

from ladder.laws.chinchilla import E_FLOOR

LEGEND = {
    "NC": "a fit did not converge: the optimizer failed (its message in flag_details)",
    "E0": "step 1's irreducible loss E sits at its floor (E -> 0): the loss law has no floor in view",
    "B": "a parameter sits at a bound of its range (named in flag_details): the data do not pin it down",
    "CEIL": "step 2's ceiling b sits at 1 (no saturation in view; a lower true ceiling would make the "
            "accuracy too high)",
    "BOOT": "more than 5% of the bootstrap refits stopped short of their optimum (the solver gave up, or was still "
            "gaining after its extra iterations): the interval's spread is not the data's alone",
    "X100": "the target is more than 100x the compute of the largest fitted run",
    "IN": "the target is inside the ladder's range (N and tokens per parameter): not an extrapolation",
    "BELOW": "the target is below the ladder (smaller N, or fewer tokens per parameter, than any fitted run): "
             "an extrapolation downward; its interval grows with the decades below",
    "RATIO": "every fitted run has one tokens-per-parameter ratio and the target another: on D = k N the "
             "N and D terms cannot be told apart, so how the target's D moves it is the law's form, not the data",
    "BTL": "a back-test missed the held-out task loss by more than 100% (the loss law fails on this task)",
    "FPT": "the target's FLOPs/token were extrapolated from the ladder (give them as NAME=N:D:F)",
    "NOISY": "the predicted change from the largest fitted run is under 2x the checkpoint-to-checkpoint "
             "noise of accuracy: this task barely moves at this scale",
    "SUB": "accuracy is below chance on every fitted run: the laws assume it rises from chance, so the point "
           "is a guess; the interval reaches down to the best measured accuracy",
    "DIR": "accuracy FALLS as compute grows on the fitted runs: the accuracy printed is meaningless (the law "
           "assumes it rises); the interval is the whole range [chance, 1]",
    "STEEP": "a member's accuracy past the ladder moved more than twice the steepest slope its fitted runs show "
             "(per decade of compute) allows, and was held to that bound: a sigmoid on near-chance points "
             "guessed its onset",
    "FLAT": "accuracy does not clearly rise with compute on the fitted runs (rank correlation under +0.5): the "
            "rise the laws extrapolate is their assumption, not the data's",
    "FB": "a method of the ensemble could not be fitted (e.g. no task loss) and was left out",
}


def fit_flags(fits: dict) -> list[tuple[str, str]]:
    """Flags of the fits a prediction uses: {step name: FitResult}."""
    out = []
    for name, fit in fits.items():
        if fit is None:
            continue
        if not fit.converged:
            out.append(("NC", f"{name}: {fit.message or 'the optimizer reported failure'}"))
        for p in fit.at_bound:
            v = fit.params[p]
            if p == "e" and np.isclose(v, np.log(E_FLOOR)):
                out.append(("E0", f"{name}: E = {np.exp(v):.3g} at its floor {E_FLOOR:g}"))
            elif p == "b" and name.endswith("step 2") and v > 0.5:
                out.append(("CEIL", f"{name}: b = {v:.3f}"))
            else:
                out.append(("B", f"{name}: {p} = {v:.4g} at a bound"))
    return out


def merge(flags: list[tuple[str, str]]) -> tuple[list[str], dict[str, str]]:
    """(codes in LEGEND's order, code -> details joined by '; '). One order for every row: in first-seen order
    the table read "CEIL B FPT" on one task and "B CEIL FPT" on the next for the same three flags."""
    codes, details = [], {}
    for code, detail in flags:
        if code not in details:
            codes.append(code)
            details[code] = detail
        elif detail not in details[code]:
            details[code] += "; " + detail
    order = {c: i for i, c in enumerate(LEGEND)}
    return sorted(codes, key=lambda c: order.get(c, len(order))), details


def legend(codes) -> list[str]:
    """One line per code used, in LEGEND's order."""
    used = set(codes)
    return [f"  {c:<6} {text}" for c, text in LEGEND.items() if c in used]
