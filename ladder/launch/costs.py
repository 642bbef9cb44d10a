"""Chip-hours and an estimated cost per rung, for the dry run and the start of a launch.

hours = the planner's time estimate (ladder.plan.estimate_seconds: FLOPs / (chips x peak x its assumed MFU));
chip-hours = hours x chips x slices; cost = chip-hours x price per chip-hour. The prices are Cloud TPU
on-demand list prices in USD per chip-hour (us-central regions, from cloud.google.com/tpu/pricing as
of 2025); spot and committed-use prices are lower and differ by region, so pass yours with
`--price CHIP=USD` (docs/cloud-tpu.md). An estimate, never a bill.
"""

from __future__ import annotations

from ladder import chips
from ladder.errors import LadderError

PRICE_PER_CHIP_HOUR = {"v4": 3.22, "v5e": 1.20, "v5p": 4.20, "v6e": 2.70}


def parse_prices(items: list[str] | None) -> dict[str, float]:
    """`--price v5p=2.1` items -> {'v5p': 2.1}, over the default table."""
    out = dict(PRICE_PER_CHIP_HOUR)
    for item in items or ():
        name, sep, value = item.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not sep or name.strip().lower() not in chips.CHIPS or not 0 <= price < float("inf"):  # nan, inf: $nan
            raise LadderError(f"--price {item}: expected CHIP=USD_PER_CHIP_HOUR such as v5p=2.10 "
                              f"(chips: {', '.join(PRICE_PER_CHIP_HOUR)})")
        out[name.strip().lower()] = price
    return out


def estimate_lines(jobs, prices: dict[str, float] | None = None) -> list[str]:
    """'# estimate: ...' lines: per rung its slice, hours, chip-hours and cost; then the totals."""
    from ladder import plan as plan_lib

    if not hasattr(plan_lib, "estimate_seconds"):
        return []
    prices = PRICE_PER_CHIP_HOUR if prices is None else prices
    out, total_ch, total_cost = [], 0.0, 0.0
    for job in jobs:
        chip, n = chips.parse_slice(job.accelerator)
        n *= job.num_slices
        hours = plan_lib.estimate_seconds(job.rung, chip, n) / 3600
        price = prices.get(chip.name)
        cost = None if price is None else hours * n * price
        total_ch += hours * n
        total_cost += cost or 0.0
        slices = f"{job.num_slices}x{job.accelerator}" if job.num_slices > 1 else job.accelerator
        out.append(f"# estimate: {job.name}: {slices}, {hours:,.1f} h on {n} {chip.name} chips = "
                   f"{num(hours * n)} chip-hours" + ("" if cost is None else f", ${num(cost)} at ${price:.2f}/chip-hour"))
    mfu = getattr(plan_lib, "MFU", None)
    out.append(f"# estimate: total {num(total_ch)} chip-hours, ${num(total_cost)}" + (f" at {mfu:.0%} MFU" if mfu else "")
               + " (on-demand list prices per chip-hour, launch.costs, even with --spot: "
                 "set yours with --price CHIP=USD)")
    return out


def num(x: float) -> str:
    """Whole numbers with thousands separators; two significant digits below 10 (tiny test ladders)."""
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"
