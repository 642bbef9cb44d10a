"""What an imported table means, checked before it becomes a results table (`ladder import csv`, docs/laws.md
"Any published ladder in"): percentages, units of N and D, checkpoints, seeds and data mixes.

Each check takes the importer's rows (dicts with run, n, d, step, task, acc, ...) and either fixes them as
meant with a note (a warning the command prints) or raises one LadderError naming the run or column and the fix.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

from ladder.errors import LadderError, require
from ladder.plan.sizes import MIN_RUN_TOKENS_PER_PARAM

MIN_PARAMS = 1e4  # fewer parameters is a count in millions or billions (190 for 190M), not a language model


def fractions(rows: list[dict], sources: list[dict], field: str, path) -> None:
    """Accuracies (and chance) are fractions. A source column whose every value is 0 or in (1, 100] is a
    percentage: divided by 100, with a note. One that mixes values in (0, 1] with values above 1 cannot be
    read either way and is refused (values above 100 too); `45.3%` cells were divided when read."""
    by_source = defaultdict(list)
    for i, src in enumerate(sources):
        if field in src:
            by_source[src[field]].append(i)
    percent = []
    for src, idx in by_source.items():
        vals = [rows[i][field] for i in idx if rows[i][field] == rows[i][field]]
        big = [v for v in vals if v > 1]
        if not big:
            continue
        small = next((v for v in vals if 0 < v <= 1), None)
        what = src if not src.startswith("=") else f"{field}{src}"
        seen = small if small is not None else max(big)
        require(small is None and max(big) <= 100, str(path), f"{field} column {what!r} has {seen!r} "
                f"and {big[0] if small is not None else 'other values'!r}: neither all fractions nor all percentages",
                f"write every {field} as a fraction (0.453) or every one as a percentage (45.3)")
        for i in idx:
            rows[i][field] /= 100
        percent.append(what)
    if percent:
        more = f" and {len(percent) - 4} more" if len(percent) > 4 else ""
        warnings.warn(f"{field} ({', '.join(percent[:4])}{more}) read as percentages (every value 0 or in (1, 100]) "
                      "and divided by 100", stacklevel=3)


def number_checkpoints(rows: list[dict]) -> None:
    """Without a step column each (run, task)'s rows are its checkpoints in order of tokens seen (ties in
    file order): file order alone would make a table sorted newest-first end at its first checkpoint."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["run"], r["task"])].append(r)
    for group in groups.values():
        for step, r in enumerate(sorted(group, key=lambda r: r["d"] if r["d"] == r["d"] else -1.0)):
            r["step"] = step


def require_counts(rows: list[dict], mapping: dict[str, str]) -> None:
    """N and D as plain counts: N under 1e4 is in millions or billions; a run whose final D is under N/100
    gives tokens per parameter or billions of tokens (validate_table only refuses values below 1)."""
    final = {}
    for r in rows:
        if r["run"] not in final or r["d"] > final[r["run"]]["d"]:
            final[r["run"]] = r
    for run, r in final.items():
        if not (r["n"] > 0 and r["d"] > 0):
            continue  # NaN, zero or negative: validate_table names those
        require(not r["n"] < MIN_PARAMS, f"column {mapping['n']!r}", f"gives run {run!r} {r['n']:g} parameters",
                "is it in millions or billions? write 190M or 1.3B (or the plain count)")
        d_from = mapping.get("d") or mapping.get("tpp") or mapping["flops"]
        require(not r["d"] < MIN_RUN_TOKENS_PER_PARAM * r["n"], f"column {d_from!r}", f"gives run {run!r} at most "
                f"{r['d']:g} tokens for {r['n']:,.0f} parameters (under N/100)",
                "is it tokens per parameter (map tpp=COLUMN: D = tpp x N) or in billions (write 26B)?")


def note_size_labels(rows: list[dict], column: str) -> None:
    """N given as size labels (190M, 370M, 1B, 3B) rather than parameter counts: a '1B' model of the OLMo ladder
    has 1.28B non-embedding parameters, and on that ladder labels instead of counts move the default's 7B-4T
    MMLU prediction from 0.486 to 0.602. Labels may be all a paper gives, so this is a note, not a refusal."""
    sizes = {r["n"] for r in rows if r["n"] > 0 and math.isfinite(r["n"])}
    labels = [n for n in sizes if float(f"{n:.2g}") == n]
    if len(sizes) > 1 and len(labels) == len(sizes):
        shown = ", ".join(f"{n / 1e9:g}B" if n >= 1e9 else f"{n / 1e6:g}M" for n in sorted(sizes)[:5])
        warnings.warn(f"column {column!r} gives every N to 2 significant digits ({shown}"
                      f"{' ...' if len(sizes) > 5 else ''}): if these are size labels, not "
                      "parameter counts, map n to the counts where the source gives them (and give --target N in "
                      "the same convention)", stacklevel=3)


def require_checkpoints_apart(rows: list[dict], step_mapped: bool) -> None:
    """Two rows of one run and task at the same D are not two checkpoints: either several runs (seeds, data
    mixes) share the run name, or D is the run's total budget written on every checkpoint. Fitting them would
    stack points at one D (or merge two training sets into one law), so both are refused."""
    seen = {}
    for r in rows:
        key = (r["run"], r["task"], r["d"])
        first = seen.setdefault(key, r)
        if first is r:
            continue
        apart = ("join the columns that tell runs apart into run (run=model+seed), or map set=COLUMN for data mixes")
        if step_mapped and first["step"] == r["step"]:
            raise LadderError(f"import: run {r['run']!r} task {r['task']!r} step {r['step']} is in the table twice: "
                              f"rows repeated (a table pasted twice?) or several runs under one name; remove the "
                              f"repeats, or {apart}")
        steps = f" (steps {first['step']} and {r['step']})" if step_mapped else ""
        raise LadderError(f"import: run {r['run']!r} task {r['task']!r} has two rows at the same d = {r['d']:g}"
                          f"{steps}: several runs under one name, rows of several metrics (keep one per task), or d "
                          "is the run's budget and not the tokens seen at each checkpoint; "
                          f"{apart}, or map d to the tokens seen at each checkpoint")


def require_tokens_grow(rows: list[dict]) -> None:
    """D is the tokens seen at each checkpoint, so it grows with the step within a run. A D that falls is
    another quantity (tokens remaining, a per-step count, a column of another run's), and the laws would
    fit it as tokens seen."""
    last = {}
    for r in sorted(rows, key=lambda r: (r["run"], r["task"], r["step"])):
        prev = last.get((r["run"], r["task"]))
        require(prev is None or not r["d"] < prev["d"], f"run {r['run']!r} task {r['task']!r}",
                f"d falls from {prev['d'] if prev else 0:g} at step {prev['step'] if prev else 0} to {r['d']:g} at "
                f"step {r['step']}", "d must be the tokens seen at each checkpoint (is the step or d column another "
                "quantity, or are two runs under one name?)")
        last[(r["run"], r["task"])] = r


def note_shared_settings(rows: list[dict], by_set: bool) -> None:
    """Runs with the same N and final D are seeds or reruns (each its own point: fine) or the same size trained
    on different data, which no law here fits jointly. One table cannot tell these apart honestly (seed noise
    is unknown from one final checkpoint), so it is a note naming the runs and the fix, not a refusal."""
    final = {}
    for r in rows:
        if r["run"] not in final or r["d"] > final[r["run"]][2]:
            final[r["run"]] = (r.get("set"), r["n"], r["d"])
    groups = defaultdict(list)
    for run, key in final.items():
        groups[key].append(run)
    shared = [sorted(g) for g in groups.values() if len(g) > 1]
    if shared:
        example = ", ".join(shared[0][:3]) + (" ..." if len(shared[0]) > 3 else "")
        fix = "" if by_set else ("; if they are different training sets (data mixes), map set=COLUMN and predict one "
                                 "set at a time (ladder predict --set NAME)")
        warnings.warn(f"{len(shared)} (N, D) settings have several runs (e.g. {example}): read as seeds or "
                      f"reruns, each its own point of the fit{fix}", stacklevel=3)


def note_systematic_columns(rows: list[dict], names: list[str | None]) -> bool:
    """Runs joined from columns (run=recipe+size+seed) that differ in one column only are seeds when that
    column's values take turns being better, and different training setups when one value wins nearly every
    (size, budget, task) comparison. A sign test (two-sided p < 1e-3 over 10+ pairs) names such a column:
    one law across it is wrong, and map set=COLUMN fits one per value. A note, not a refusal: the test sees
    ranks, not how far apart. A name of None is a part of one-column run names (dolma-150M-s1: 'dolma')."""
    final = {}
    for r in rows:  # each (run, task)'s last checkpoint
        if (r["run"], r["task"]) not in final or r["step"] > final[(r["run"], r["task"])]["step"]:
            final[(r["run"], r["task"])] = r
    for j, name in enumerate(names):
        groups = defaultdict(dict)  # (the other parts, task, N, D) -> {this part's value: acc}
        for r in final.values():
            rest = (r.get("set"),) + r["_parts"][:j] + r["_parts"][j + 1:]  # compared within one training set
            groups[(rest, r["task"], r["n"], r["d"])][r["_parts"][j]] = r["acc"]
        wins = defaultdict(lambda: [0, 0])  # (a, b) with a < b -> [a above b, b above a]
        for accs in groups.values():
            levels = sorted(accs)
            for ia, a in enumerate(levels):
                for b in levels[ia + 1:]:
                    if accs[a] != accs[b]:
                        wins[(a, b)][accs[a] < accs[b]] += 1
        for (a, b), (above, below) in wins.items():
            n, k = above + below, max(above, below)
            p = (min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n) if n <= 200
                 else math.erfc((2 * k - n) / math.sqrt(2 * n)))  # exact binomial, or its normal limit
            if n >= 10 and p < 1e-3:
                hi, lo = (a, b) if above > below else (b, a)
                what = f"column {name!r}" if name else f"part {j + 1} of their names"
                fix = (f"if {name!r} is a training set or recipe, map set={name} (or join it: set=COL+{name}) and "
                       "predict one set at a time (--set NAME)" if name else
                       f"if {hi!r} and {lo!r} are training sets, fit one at a time (ladder predict --runs with one "
                       f"set's runs, e.g. '*{hi}*'), or import with set=COLUMN if the table has one")
                warnings.warn(f"runs that differ only in {what} are not seeds: {hi!r} is above {lo!r} in {k} of {n} "
                              f"(size, tokens, task) pairs (sign test p = {p:.1g}); {fix}", stacklevel=3)
                return True
    return False


def note_tokens_from_flops(column: str) -> None:
    """D = FLOPs / 6N holds for FLOPs counted as 6 per parameter per token. Published totals often count
    attention and embeddings too (OLMo's are 1.2-1.7x 6ND, most for the smallest models), which makes every D
    too large by a size-dependent factor: on the OLMo ladder the default's 7B-4T MMLU prediction moves from
    0.486 (tokens) to 0.471 (tokens from its FLOPs). A note, since FLOPs may be all a table gives."""
    warnings.warn(f"tokens taken as D = {column} / 6N: if {column!r} counts attention or embedding FLOPs, every D "
                  "is too large (OLMo's FLOPs are 1.2-1.7x 6ND); map d to tokens where the source gives them",
                  stacklevel=3)

