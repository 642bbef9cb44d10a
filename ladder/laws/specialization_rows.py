"""Row filters shared by the specialization laws (D-CPT, split) when they read points from a results table.

One place decides what a fit leaves out and says so: a diverged run is refused, blank rows are dropped under a
note, and `--domain NAME` must name a domain the table holds.
"""

from __future__ import annotations

import sys

import numpy as np

from ladder.errors import LadderError, require


def require_no_infinite(loss: np.ndarray, run, step, column: str) -> None:
    """An infinite loss is a diverged run, not a missing value: refused, naming the run, rather than dropped
    with the blank and NaN rows (before: left out under a note that called it blank or NaN)."""
    bad = np.isinf(loss)
    if bad.any():
        i = int(np.argmax(bad))
        require(False, column, f"is {float(loss[i])} in {int(bad.sum())} rows, first run {str(run[i])!r} step "
                f"{float(step[i]):g} (a diverged run)", "drop that run's rows or rerun it")


def note_dropped(dropped: np.ndarray, run, step, what: str) -> None:
    """Rows a fit leaves out are never left out silently: one line on stderr with the count and the first."""
    if dropped.any():
        i = int(np.argmax(dropped))
        print(f"ladder: note: {int(dropped.sum())} {what} left out of the fit (first: run {str(run[i])!r} step "
              f"{float(step[i]):g})", file=sys.stderr)


def keep_domain(table: dict[str, np.ndarray], keep: np.ndarray, domain: str | None, rows: str) -> np.ndarray:
    """`--domain NAME`'s row filter, shared by the D-CPT and split laws: a name that matches no row is refused
    naming the domains there are (a typo otherwise reached the fit as "0 points cannot pin down ...")."""
    if domain is None:
        return keep
    require("domain" in table, "domain", "no 'domain' column to select from", "drop --domain")
    keep = keep & (table["domain"] == domain)
    require(bool(keep.any()), "domain", f"no {rows} for domain {domain!r}",
            f"choose one of {sorted(set(table['domain'].tolist()))}")
    return keep


def require_cpt_tokens(table: dict[str, np.ndarray]) -> None:
    """`d_cpt` (the CPT tokens behind a checkpoint) is blank for base runs, else a finite count >= 0 that is part
    of its total tokens `d`. Before, a negative d_cpt row was dropped from the D-CPT fit without a word (the
    split law refused it, the report skipped it), and d_cpt > d was fitted by D-CPT while the split law blamed
    a missing base run."""
    if "d_cpt" not in table:
        return
    try:  # a dict of columns from Python may hold text (read_table's columns are float64)
        d_cpt, run = np.asarray(table["d_cpt"], dtype=np.float64), table["run"]
    except (TypeError, ValueError):
        raise LadderError("d_cpt: is not a column of numbers; give the CPT tokens as counts (blank for a base "
                          "run)") from None
    bad = ~np.isnan(d_cpt) & ~((d_cpt >= 0) & np.isfinite(d_cpt))
    if bad.any():
        i = int(np.argmax(bad))
        require(False, "d_cpt", f"is {float(d_cpt[i]):g} in {int(bad.sum())} rows, first run {str(run[i])!r}",
                "give the CPT tokens as a count >= 0 (blank or 0 for a base run)")
    if "d" in table:
        over = d_cpt > table["d"] * (1 + 1e-9)
        if over.any():
            i = int(np.argmax(over))
            require(False, "d_cpt", f"is above d (the checkpoint's total tokens) in {int(over.sum())} rows, first "
                    f"run {str(run[i])!r} (d_cpt {float(d_cpt[i]):g} > d {float(table['d'][i]):g})",
                    "d counts pretraining plus CPT tokens: fix whichever column is wrong")
