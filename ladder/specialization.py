"""The specialization laws on a results table, as values: fit (D-CPT, split), allocate, report.

The library under `ladder fit`, `ladder allocate` and `ladder report`, and what `ladder.cpt.run_study`
calls directly; a notebook uses the same functions:

    table = read_table("runs/specialization/results.csv")
    fit = fit_dcpt(table, holdout=True, n=2.5e5, d=1e6)      # Fit(summary, rows, ...)
    rule = dcpt_rule(fit.summary, "b", n=2.5e5, domain_tokens=1e6)
    split = allocate_split(fit_split(table).summary, budget=1e18)
    report = effectiveness_report(table)

Each `write_*` writes a result's JSON, CSV and PNGs into a directory and returns the paths. Formulas:
docs/specialization.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ladder.effectiveness import compute_effectiveness
from ladder.errors import require, require_file_part
from ladder.laws.inputs import positive, results_columns
from ladder.laws.specialization_rows import require_cpt_tokens

DCPT_FORM = "L = E + A/N^alpha + B r^eta/D^beta + C/(r+eps)^gamma"
SPLIT_FORM = "L = E + A/N^alpha + B/(D' + k D^rho)^beta"


def jsonable(obj):
    """numpy scalars/arrays to Python, non-finite floats to None (strict JSON has no inf/NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_outputs(out_dir, stem: str, summary: dict, rows: list[dict]) -> list[str]:
    """`<stem>.json` (the whole summary) and `<stem>.csv` (one flat row per entry of `rows`) under out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from ladder import storage

    storage.write_text(out_dir / f"{stem}.json", json.dumps(jsonable(summary), indent=1) + "\n")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: jsonable(r.get(k, "")) for k in keys})
    storage.write_text(out_dir / f"{stem}.csv", buf.getvalue())
    return [str(out_dir / f"{stem}.json"), str(out_dir / f"{stem}.csv")]


def read_study(results) -> tuple[dict, Path]:
    """(the results table of a specialization study, the default output directory beside it: RESULTS'
    directory /specialization), for `ladder fit` and `ladder report`; an empty table is one clear line."""
    from ladder.results import read_table, validate_table

    path = Path(results)
    table = read_table(path)
    require(bool(table), "results", f"{path} has no rows", "collect CPT runs first")
    # the results schema's checks (a (run, step, task) twice, n or d not a count, ...): a table appended twice
    # or a run's row edited into a second copy would otherwise be fitted silently, first row winning
    validate_table(table, str(path))
    return study_table(table), path.parent / "specialization"


def study_table(table) -> dict:
    """A study's results table in any form the predictor takes (ladder.laws.inputs: the read table, its path,
    row dicts), with the CPT columns' own rules (before: a path was "run: column missing", None a TypeError)."""
    table = results_columns(table, "table")
    require_cpt_tokens(table)
    return table


@dataclass
class Fit:
    """A fitted specialization law: `summary` (the JSON: form, parameters, R^2, hold-outs, rules), `rows` (one
    flat row per fitted loss or domain: the CSV), and what the plots need (fits and points per key)."""

    law: str  # "dcpt" or "split"
    summary: dict
    rows: list[dict]
    fits: dict = field(default_factory=dict)
    points: dict = field(default_factory=dict)


PROGRESS_POINTS = 5_000  # the fit's cost grows with the points: past this many, say so before starting


def note_progress(points: int, what: str, starts: int) -> None:
    """One stderr line before a fit on many points (10,000 CPT runs or `--steps all` on a long study took
    ~40 CPU-s per loss, 100,000 over 2 CPU-min, with nothing printed): what runs, on how many points."""
    if points >= PROGRESS_POINTS:
        import sys

        print(f"ladder: fitting {what} to {points:,} points from {starts} starts (the time grows with both)",
              file=sys.stderr, flush=True)


def require_explains(r2: float, field: str, law: str) -> None:
    """A law that fits worse than the mean of the losses (R^2 <= 0: the losses rise with N, tokens or share,
    or are noise) has no parameters worth using: one line, not a fit written and reused by `allocate`
    (before: R^2 -0.003 on a loss rising with tokens, exit 0)."""
    require(bool(r2 > 0), field, f"the {law} law explains none of its variation (R^2 = {r2:.3g}; cannot fit)",
            "check that the loss falls with model size, tokens and own-data share, and that the rows are one study")


def output_files(out, stem: str) -> list[Path]:
    """The JSON and CSV a `write_*` call writes as `stem` (the verbs check them before overwriting)."""
    return [Path(out) / f"{stem}.json", Path(out) / f"{stem}.csv"]


# --------------------------------------------------------------------------------------------- fit


def fit_dcpt(table: dict, *, domain: str | None = None, steps: str = "final", cross_domain: bool = False,
             holdout: bool = False, starts: int = 24, n: float | None = None, d: float | None = None,
             tolerance: float = 0.03, domain_tokens: float | None = None, compute: float | None = None,
             r: float | None = None) -> Fit:
    """The D-CPT law for the domain loss (r = domain share) and the general loss (r = general share), with
    hold-out refits when `holdout`, and the decision rules whose inputs are given: (a) n and d,
    (b) n and domain_tokens, (c) compute and r."""
    from ladder.laws import dcpt, dcpt_rules

    table = study_table(table)
    require(steps in ("final", "all"), "steps", f"is {steps!r}", "give 'final' or 'all'")
    if domain is None and not cross_domain and "domain" in table:
        # one law per domain (the cross-domain law is the one that spans them): pooled domains fit neither
        # (before: fitted anyway, domain R^2 -0.04, exit 0)
        names = sorted(set(table["domain"][np.nan_to_num(table.get("d_cpt", np.zeros(0))) > 0].tolist())) \
            if "d_cpt" in table else []
        require(len(names) <= 1, "domain", f"the table holds CPT rows of {len(names)} domains {names[:5]}",
                "pass --domain NAME to fit one of them (or --cross-domain for the law across domains)")
    fits, points, rows, summary = {}, {}, [], {"law": DCPT_FORM, "fits": {}}
    for loss in ("domain", "general"):
        p = dcpt.points_from_table(table, loss, domain=domain, steps=steps)
        note_progress(len(p), f"the D-CPT law for the {loss} loss", starts)
        fit = dcpt.fit_dcpt(p, cross_domain=cross_domain, n_starts=starts)
        require_explains(fit.r2, f"{loss}_loss", "D-CPT")
        fits[loss], points[loss] = fit, p
        summary["fits"][loss] = fit.summary()
        rows.append({"loss": loss} | fit.law.to_dict() | {"huber": fit.huber, "r2": fit.r2, "n_points": fit.n_points,
                                                          "dl_dr_negative": fit.monotone["holds"]})
        if holdout:
            summary.setdefault("holdout", []).extend({"loss": loss} | h for h in dcpt.holdout_checks(p, n_starts=starts))
    rules = []
    if n is not None and d is not None:
        rules.append(dcpt_rules.rule_a(fits["domain"].law, fits["general"].law, n, d, tolerance))
    if n is not None and domain_tokens is not None:
        rules.append(dcpt_rules.rule_b(fits["domain"].law, n, domain_tokens))
    if compute is not None:
        require(r is not None, "--r", "rule (c) needs the fixed domain share", "pass --r")
        rules.append(sensible_rule_c(dcpt_rules.rule_c(fits["domain"].law, compute, r)) | {"loss": "domain"})
    p = points["domain"]
    summary["range"] = {"n": [float(np.min(p.n)), float(np.max(p.n))], "d": [float(np.min(p.d)), float(np.max(p.d))]}
    if rules:
        summary["rules"] = [outside_fit(rule, summary["range"]) for rule in rules]
    return Fit("dcpt", summary, rows, fits, points)


def fit_split(table: dict, *, domain: str | None = None, holdout: bool = False) -> Fit:
    """The pretrain/specialize law L(N, D, D') per domain (the table's `domain` column, if any)."""
    import numpy as np

    from ladder.laws import split

    table = study_table(table)

    domains = [domain] if domain else (sorted(set(table["domain"].tolist())) if "domain" in table else [None])
    for name in domains:  # each becomes split_<domain>.png
        if name is not None:
            require_file_part(name, "domain")
    fit_out = Fit("split", {"law": SPLIT_FORM, "domains": {}}, [])
    for name in domains:
        p = split.points_from_table(table, domain=name)
        fit = split.fit_split(p)
        require_explains(fit.r2, f"domain_loss of domain {name!r}" if name else "domain_loss", "split")
        key = name or "domain"
        fit_out.summary["domains"][key] = fit.summary() | {"n_range": [float(np.min(p.n)), float(np.max(p.n))]}
        if holdout:
            fit_out.summary["domains"][key]["holdout"] = split.holdout_checks(p)
        fit_out.rows.append({"domain": key} | fit.law.to_dict() | {"huber": fit.huber, "r2": fit.r2,
                                                                   "n_points": fit.n_points})
        fit_out.fits[key], fit_out.points[key] = fit, p
    return fit_out


def write_fit(fit: Fit, out) -> list[str]:
    """<out>/<law>.json, .csv and the plots (dcpt.png, or split_<domain>.png per domain)."""
    from ladder.plots import plot_dcpt, plot_split

    out = Path(out)
    files = write_outputs(out, fit.law, fit.summary, fit.rows)
    if fit.law == "dcpt":
        return files + [plot_dcpt(fit.fits, fit.points, out / "dcpt.png")]
    return files + [plot_split(fit.fits[key], fit.points[key], out / f"split_{key}.png") for key in fit.fits]


# --------------------------------------------------------------------------------------------- allocate


def _law(cls, fitted: dict, path: tuple[str, ...], what: str):
    """The law at fitted[path[0]][path[1]]...["params"] as `cls`, or a LadderError naming the key: a law file
    edited by hand (a list where a mapping was, a parameter missing, added, not a number, NaN) is one line
    saying which key, not a TypeError or an allocation computed from NaN."""
    import dataclasses
    import math

    node, where = fitted, "--law"
    for key in path + ("params",):
        require(isinstance(node, dict) and key in node, where, f"has no {key!r}", f"pass the {what} `ladder fit` wrote")
        node, where = node[key], f"{where}: {key}"
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    needed = {f.name for f in fields if f.default is dataclasses.MISSING}
    require(isinstance(node, dict) and needed <= set(node) <= set(names), where,
            f"holds {sorted(node) if isinstance(node, dict) else type(node).__name__}, not the parameters "
            f"{', '.join(names)}", f"pass the {what} `ladder fit` wrote")
    names = [k for k in names if k in node]
    for k in names:
        v = node[k]
        require(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v), f"{where}: {k}",
                f"is {v!r}, not a finite number", "refit with `ladder fit`")
        # every amplitude and exponent of these forms is fitted >= 0 (docs/specialization.md): a negative one
        # would turn a loss term into a gain and the allocation into nonsense
        require(v >= 0, f"{where}: {k}", f"is {v!r}; the law's parameters are all >= 0", "refit with `ladder fit`")
    return cls(**{k: float(node[k]) for k in names})


def allocate_split(fitted: dict, budget: float, *, domains=None, n_range=(1e6, 1e13)) -> dict:
    """For compute C = `budget` and the domains of a split fit (`Fit.summary` or split.json), the model size
    N, shared pretraining tokens D and per-domain tokens D'_i minimising the summed domain loss, with the
    loss profile over N around the optimum ("profile": {"n": [...], "loss": [...]}) for the plot."""
    import numpy as np

    from ladder.laws.split import SplitLaw, allocate, loss_profile

    require(budget is not None, "--budget", "is required here", "pass --budget")
    budget = positive(budget, "--budget")
    require("domains" in fitted, "--law", "is not a `ladder fit split` output (no 'domains')", "pass split.json")
    require(isinstance(fitted["domains"], dict), "--law: domains", "is not a mapping of domain -> law",
            "pass split.json")
    names = list(fitted["domains"]) if domains is None else list(domains)
    require(bool(names), "--domains", "is empty", "name some fitted domains, or leave the option out for all")
    repeated = [n for i, n in enumerate(names) if n in names[:i]]
    require(not repeated, "--domains", f"{repeated[0]!r} is listed twice" if repeated else "",
            "list each domain once")
    for name in names:
        require(name in fitted["domains"], "--domains", f"{name!r} was not fitted", f"choose from {list(fitted['domains'])}")
    laws = {name: _law(SplitLaw, fitted, ("domains", name), "split.json") for name in names}
    with np.errstate(divide="ignore", over="ignore"):  # the bracket search probes 1e300-scale terms at huge budgets
        alloc = allocate(laws, budget, n_range=tuple(n_range))
    require(alloc.d >= 1, "--budget", f"{budget:g} FLOPs leaves {alloc.d:.3g} pretraining tokens even at "
            f"N = {alloc.n:.3g} (the smallest of --n-range allowed), so the allocation would be meaningless",
            f"give a budget of at least 6 N tokens, e.g. {6 * n_range[0] * 20 * n_range[0]:.0e} for "
            f"N = {n_range[0]:.0e} at 20 tokens per parameter, or lower --n-range")
    ns = np.geomspace(alloc.n / 30, alloc.n * 30, 41)
    edge = {}
    if not n_range[0] * 1.01 < alloc.n < n_range[1] / 1.01:
        edge = {"warning": f"the optimum N = {alloc.n:.3g} sits at the edge of --n-range {tuple(n_range)}: the "
                           "true optimum may lie outside it, and the law is extrapolated far from its fit; widen "
                           "--n-range or check the budget"}
    with np.errstate(divide="ignore", over="ignore"):
        profile = np.asarray(loss_profile(laws, budget, ns)).tolist()
    return alloc.to_dict() | edge | {"profile": {"n": ns.tolist(), "loss": profile}}


def dcpt_rule(fitted: dict, rule: str, *, n=None, d=None, tolerance: float = 0.03, ratio_range=(0.0, 1.0),
              domain_tokens=None, max_tokens=None, compute=None, r=None) -> dict:
    """D-CPT decision rule (a) best domain share under a general-loss tolerance (n, d), (b) best share with
    limited domain data (n, domain_tokens), (c) compute-optimal N/D at a fixed share (compute, r), from a
    D-CPT fit (`Fit.summary` or dcpt.json)."""
    from ladder.laws import dcpt, dcpt_rules

    def need(**values):
        for name, value in values.items():
            flag = "--" + name.replace("_", "-")
            require(value is not None, flag, "is required here", f"pass {flag}")
            if name != "rule":
                positive(value, flag)  # a number, not text (a TypeError deep in the rule before)

    require("fits" in fitted, "--law", "is not a `ladder fit dcpt` output (no 'fits')", "pass dcpt.json")
    need(rule=rule)
    domain = _law(dcpt.DcptLaw, fitted, ("fits", "domain"), "dcpt.json")
    general = _law(dcpt.DcptLaw, fitted, ("fits", "general"), "dcpt.json")
    fit_range = fitted.get("range")  # dcpt.json files written before it was recorded have none: no check
    if rule == "a":
        need(n=n, d=d)
        return outside_fit(dcpt_rules.rule_a(domain, general, n, d, tolerance, tuple(ratio_range)), fit_range)
    if rule == "b":
        need(n=n, domain_tokens=domain_tokens)
        return outside_fit(dcpt_rules.rule_b(domain, n, domain_tokens, max_tokens=max_tokens,
                                             ratio_range=tuple(ratio_range)), fit_range)
    need(compute=compute, r=r)
    return outside_fit(sensible_rule_c(dcpt_rules.rule_c(domain, compute, r)), fit_range)


def outside_fit(rule: dict, fit_range) -> dict:
    """The rule with a "warning" when its N or D lies outside the fitted points' range: the answer is then the
    law extrapolated, not a measurement's interpolation (before: `--n 1 --d 1`, or rule (b) with 1 domain
    token answering D = 16 tokens, printed like any other answer)."""
    if not isinstance(fit_range, dict):
        return rule
    far = []
    for key, name in (("n", "N"), ("d", "D")):
        lo_hi = fit_range.get(key)
        if isinstance(lo_hi, list) and len(lo_hi) == 2 and key in rule and not lo_hi[0] <= rule[key] <= lo_hi[1]:
            far.append(f"{name} = {rule[key]:.3g} lies outside the fitted {name} range [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]")
    if far:
        return rule | {"warning": f"rule ({rule['rule']}): " + "; ".join(far) + ": the law is extrapolated there"}
    return rule


def sensible_rule_c(out: dict) -> dict:
    """Rule (c)'s closed form answers any compute; a model under 1 parameter or 1 token (--compute 1 gave
    N = 20, D = 0.008) or above 1e30 (--compute 1e300 gave N = 2e151) is no allocation."""
    from ladder.plan.sizes import MAX_COUNT

    require(1 <= out["n"] <= MAX_COUNT and 1 <= out["d"] <= MAX_COUNT, "--compute",
            f"{out['compute']:g} FLOPs gives N = {out['n']:.3g}, D = {out['d']:.3g} tokens, outside [1, {MAX_COUNT:g}]",
            "give the CPT compute of a real run (C = 6 N D FLOPs)")
    return out


def write_allocation(result: dict, out, stem: str) -> list[str]:
    """<out>/<stem>.json and .csv (d_prime, a dict per domain, as JSON text in the CSV), and for a split
    allocation its loss-profile plot <out>/allocation.png."""
    import json

    from ladder.plots import plot_allocation

    out = Path(out)
    summary = {k: v for k, v in result.items() if k != "profile"}
    row = summary | {"d_prime": json.dumps(summary["d_prime"])} if "d_prime" in summary else summary
    files = write_outputs(out, stem, summary, [row])
    if "profile" in result:
        files.append(plot_allocation(result, out / "allocation.png"))
    return files


# --------------------------------------------------------------------------------------------- report


def effectiveness_report(table: dict, *, metric: str = "domain_loss", task: str | None = None,
                         domain: str | None = None) -> dict:
    """The compute-effectiveness report (ladder.effectiveness.compute_effectiveness), after checking the table.
    `domain` keeps that domain's runs and the runs of no domain (the bases): pooled domains give one trend
    of none of them (before: printed, exit 0), so a table of several is refused without it."""
    table = study_table(table)
    value_col = "acc" if task else metric
    if value_col in table:  # the flag the user typed is named before the table's contents
        require(table[value_col].dtype.kind == "f", f"--metric {value_col}", "is a text column, not a loss",
                "name a numeric loss column, e.g. domain_loss or general_loss")
    if "domain" in table:
        given = np.array([str(v) for v in table["domain"].tolist()])
        names = sorted(set(given.tolist()) - {"", "nan"})
        if domain is not None:
            require(domain in names, "--domain", f"{domain!r} is not in the table",
                    f"choose one of {names[:10]}" if names else "the table names no domain: leave --domain out")
            keep = (given == domain) | np.isin(given, ["", "nan"])
            table = {k: v[keep] for k, v in table.items()}
            names = [domain]
        require(len(names) <= 1, "domain", f"the table holds runs of {len(names)} domains {names[:5]}",
                "report one domain at a time: --domain NAME (ladder report) or domain= (Python)")
    else:
        require(domain is None, "--domain", "the table has no domain column", "leave --domain out")
    return compute_effectiveness(table, metric=metric, task=task)


def write_effectiveness(report: dict, out) -> list[str]:
    """<out>/effectiveness.json and .csv (one row per domain run) and the report's plots."""
    from ladder.plots import plot_effectiveness

    files = write_outputs(out, "effectiveness", summary_of(report), report["points"])
    return files + plot_effectiveness(report, Path(out))


def summary_of(report: dict) -> dict:
    """The report without its plot curves (what effectiveness.json holds), JSON-ready."""
    return jsonable({k: v for k, v in report.items() if k != "curves"})
