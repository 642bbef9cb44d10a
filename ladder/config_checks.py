"""The type checks every config kind shares (train, run, cpt): keys a default config lacks (typos), values of
another type than the default's, numbers the device cannot hold (int32 counts, float32 magnitudes), lists of
numbers that hold text or repeat a value. Each failure is one LadderError naming the field. No JAX.
"""

from __future__ import annotations

import math

import ml_collections

from ladder.errors import require

MAX_INT32 = 2**31 - 1  # counts, steps and seeds live in int32 on the device
FLOAT32_TINY, FLOAT32_MAX = 1.1754944e-38, 3.4028235e38  # float32's (and bfloat16's) smallest normal, largest
# questions per embedded task (eval.n_questions, `ladder data --tasks --n-questions`): more than any benchmark's
# test split (HellaSwag's 10,042); 10^8 (a typo for 300?) built 10^8 questions (~0.14 CPU-ms each) before scoring one
MAX_QUESTIONS = 100_000
ORDERED_LISTS = ("train_overrides",)  # "key=value" overrides applied in order: a repeat is a later override


def check_known_keys(config, reference, prefix="") -> None:
    """A config file that sets a key default_config() lacks (a typo) is an error, as an unknown override is;
    so is a value of another type than the default's (a string where a number belongs), and a float that is
    not finite (1e999 parses as inf)."""
    for key in config.keys():
        field = f"{prefix}{key}"
        require(key in reference, field, "unknown config key",
                f"known keys here: {', '.join(sorted(reference.keys()))}")
        ref, value = reference[key], config[key]
        if isinstance(ref, ml_collections.ConfigDict):
            require(isinstance(value, ml_collections.ConfigDict), field, f"is {value!r}, not a section",
                    "set its keys, e.g. --config.{field}.KEY=VALUE")
            check_known_keys(value, ref, f"{field}.")
            continue
        check_value_type(field, ref, value)


def check_value_type(field: str, ref, value) -> None:
    if isinstance(ref, bool):
        require(isinstance(value, bool), field, f"expected True or False, got {value!r}", "write True or False")
    elif isinstance(ref, (int, float)):
        require(isinstance(value, (int, float)) and not isinstance(value, bool), field,
                f"expected a number, got {value!r}", "write a number")
        require(isinstance(ref, float) or float(value).is_integer(), field, f"expected an integer, got {value!r}",
                "write a whole number")
        require(math.isfinite(value), field, f"must be finite, got {value!r}", "write a finite number")
        # the device computes in float32 or bfloat16: 1e300 overflows there and 1e-300 is 0 (rope_theta=1e-300,
        # init_std=1e300 were a NaN loss at step 1 whose message blamed the learning rate)
        require(not isinstance(ref, float) or value == 0 or FLOAT32_TINY <= abs(value) <= FLOAT32_MAX, field,
                f"{value!r} is outside float32's range (|x| from {FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}), so the "
                "device would compute with inf or 0", "write a number of a sensible size")
        # counts (steps, batch, sizes, seeds) live in int32 on the device: 1e30 steps would overflow there
        require(isinstance(ref, float) or abs(value) <= MAX_INT32, field, f"{value!r} is too large (at most 2^31 - 1)",
                "write a smaller whole number")
    elif isinstance(ref, str):
        require(isinstance(value, str), field, f"expected a string, got {value!r}", "quote the value")
    elif isinstance(ref, (list, tuple)):
        require(isinstance(value, (list, tuple)), field, f"expected a list, got {value!r}", "write e.g. [1, 2]")
        check_list_items(field, ref, value)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_list_items(field: str, ref, value) -> None:
    """A list of numbers by default (cpt ratios and budgets) holds finite numbers only, and no list but the
    ordered overrides repeats a value. Before, ratios=[0,'a',1] was a TypeError traceback in the study's check,
    and ratios=[0,0.5,0.5] planned two rungs under one name, so the second reused the first's run directory."""
    for v in value:
        require(not isinstance(v, float) or math.isfinite(v), field, f"has {v!r}, not finite", "write finite numbers")
    if ref and all(_is_number(v) for v in ref):
        odd = next((v for v in value if not _is_number(v)), None)
        require(odd is None, field, f"has {odd!r}, not a number", f"write numbers, e.g. {list(ref)}")
    if field.rpartition(".")[2] not in ORDERED_LISTS:
        seen = []
        for v in value:
            require(v not in seen, field, f"lists {v!r} twice", "list each value once")
            seen.append(v)


def check_read_fields(section, reference, readers: dict, chosen: str, prefix: str, choice: str) -> None:
    """A config field set away from its default that the chosen mode never reads is one line naming the modes
    that read it, as the CLI's refuse_unread_options does for flags: `readers` maps a field to the modes that
    read it. Before, `launch.chip=v6e` or `launch.spot=True` with the local backend ran without a word."""
    for key, modes in readers.items():
        if chosen not in modes and section[key] != reference[key]:
            require(False, f"{prefix}.{key}", f"applies to {choice} {' / '.join(modes)}, not {chosen} (it would be "
                    "ignored)", f"drop it or choose one of those")
