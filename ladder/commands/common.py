"""The grammar every verb shares, so that the CLI speaks one dialect.

- Output: `-o/--out PATH` names what a verb writes. A verb that writes new files refuses to replace an
  existing one unless `--overwrite`; a verb that resumes (run, cpt, train, launch) resumes instead.
- Targets: `--target T` (repeatable) is a preset (`7b-4t`), SIZE-TOKENS (`3b-60b`) or NAME=N:D
  (`7B=6.89e9:3.95e12`), read by one parser (`target_spec`) in every verb that takes targets.
- Help: defaults are shown, every verb has an example (`EXAMPLES` in its module) and verbs that take a
  config (`TAKES_CONFIG = True`) say how to override its fields.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ladder.errors import LadderError, require



def config_line(examples: str) -> str:
    """The help's override line for a verb that takes a config. Its example is the first override in the verb's
    own EXAMPLES, so it names a key that verb's config has (a fixed `--config.train.total_steps=100` was an
    unknown key for `ladder run` and `ladder cpt`, whose configs have no train section)."""
    example = next(w for w in examples.split() if w.startswith("--config."))
    return ("config overrides: any config field can be set as --config.section.key=value, e.g. "
            f"{example} (repeatable; unknown keys are errors)")


TARGET_HELP = ("a target run: a preset ({presets}), SIZE-TOKENS such as 3b-60b, or NAME=N:D such as "
               "7B=6.89e9:3.95e12 (parameters N, tokens D); repeatable")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends an option's default, unless it has none (None or ''), it is
    a flag (--dry-run, --no-compile-check) or its help already says what the default is. A pair of numbers
    reads as it is typed (`1e6 1e13`, not `(1000000.0, 10000000000000.0)`)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default in (None, "") or action.nargs == 0 or action.default == argparse.SUPPRESS  # flags: no
                or "default" in text.lower()
                or not action.option_strings or action.help == argparse.SUPPRESS):
            return text
        if isinstance(action.default, (tuple, list)) and all(isinstance(v, (int, float)) for v in action.default):
            typed = " ".join(f"{v:g}".replace("e+0", "e").replace("e+", "e") for v in action.default)
            return text + f" (default: {typed})"
        return text + " (default: %(default)s)"


def add_out(parser, help: str, *, required: bool = False, default: str | None = None) -> None:
    """`-o/--out PATH` and `--overwrite` (refuse to replace an existing output without it)."""
    parser.add_argument("-o", "--out", required=required, default=default, metavar="PATH", type=path_arg, help=help)
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it already exists")


def check_out(path, overwrite: bool, field: str = "--out", *, append: bool = False) -> Path:
    """`path` as a Path, or a LadderError when it exists and --overwrite was not given (append=True: a file the
    verb adds rows to may exist). Either way the place must take a file, checked before any work."""
    path = Path(path)
    require(not path.is_dir(), field, f"{path} is a directory", "give a file path, e.g. DIR/name.json")
    # a device or a pipe (-o /dev/null): the verb's other outputs (plots) go beside it, into /dev
    require(not path.exists() or path.is_file(), field, f"{path} exists and is not a regular file",
            "give a file path, e.g. DIR/name.json")
    require(overwrite or append or not path.exists(), field, f"{path} already exists",
            "pass --overwrite to replace it, or another -o/--out")
    # checked now, not after a long fit: the nearest existing ancestor must be a directory we may write in.
    # A link is written through to its target (storage.through_links): a dangling one, where its target lands.
    lands = Path(os.path.realpath(path)) if path.is_symlink() and not path.exists() else path
    if lands is not path:
        require(lands.parent.is_dir(), field, f"{path} is a link to {os.readlink(path)}, whose directory does not "
                "exist", "create that directory, or choose another path")
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        # a link to a missing directory: creating under it failed after the work with "File exists"
        if ancestor.is_symlink():
            raise LadderError(f"{field}: {ancestor} is a link to {os.readlink(ancestor)}, which does not exist; "
                              "create that directory, or choose another path")
        ancestor = ancestor.parent
    require(ancestor.is_dir(), field, f"{ancestor} is not a directory, so {path} cannot be created",
            "choose an output path under a directory")
    require(os.access(ancestor, os.W_OK), field, f"{ancestor} is not writable", "choose a writable location")
    return path


def check_outs(paths, overwrite: bool, field: str = "--out") -> None:
    """Every path of a multi-file output (e.g. DIR/dcpt.json and DIR/dcpt.csv) checked before any is written."""
    for path in paths:
        check_out(path, overwrite, field)


def add_targets(parser, *, required: bool = False, extra_help: str = "") -> None:
    from ladder.plan import TARGETS

    parser.add_argument("--target", action="append", metavar="T", required=required,
                        help=TARGET_HELP.format(presets=", ".join(TARGETS)) + extra_help)


def target_spec(text: str):
    """One --target as the planner reads it: a preset or SIZE-TOKENS string unchanged, NAME=N:D as a dict
    {"name", "n", "tokens"} (N and D as counts: 6.89e9, 7B, 4T); NAME=N:D:F adds "flops_per_token" (the
    predictor's compute method; the planner ignores it)."""
    from ladder.plan import parse_count

    if "=" not in text:
        return text
    name, _, rest = text.partition("=")
    fields = rest.split(":")
    if not (name.strip() and len(fields) in (2, 3)):
        raise LadderError(f"--target: cannot read {text!r}; write a preset (7b-4t), SIZE-TOKENS (3b-60b) or "
                          "NAME=N:D (7B=6.89e9:3.95e12)")
    field = f"--target {name.strip()}"
    spec = {"name": name.strip(), "n": parse_count(fields[0], field), "tokens": parse_count(fields[1], field)}
    if len(fields) == 3:
        spec["flops_per_token"] = parse_count(fields[2], field)
        # F x D is the target's compute: an F below 2N (less than one forward pass) is a typo or another unit,
        # and predicted silently from a compute thousands of times too small (F=5 for N=1e9 was accepted)
        from ladder.plan.sizes import require_flops_per_token

        require_flops_per_token(name.strip(), spec["n"], spec["flops_per_token"])
    return spec


def resolve_targets(texts) -> dict[str, tuple]:
    """name -> (N, D) for --target values: NAME=N:D exactly as written (NAME=N:D:F: (N, D, F)), presets and
    SIZE-TOKENS as the planner resolves them (N = the reference parameter count of the target's shape,
    docs/planning.md). A preset's architecture is known, so it gets (N, D, F) with F its FLOPs/token as the
    planner counts them (`preset_flops_per_token`), not one extrapolated from the ladder."""
    from ladder.plan import preset_flops_per_token, resolve_target
    from ladder.plan.sizes import require_tokens_per_parameter

    out = {}
    for text in texts:
        spec = target_spec(text)
        target = spec if isinstance(spec, dict) else resolve_target(spec)
        require(target["name"] not in out, "--target", f"{target['name']!r} is listed twice", "list each once")
        fpt = target.get("flops_per_token") or preset_flops_per_token(spec)
        out[target["name"]] = (float(target["n"]), float(target["tokens"])) + ((float(fpt),) if fpt else ())
        require_tokens_per_parameter(target["name"], *out[target["name"]][:2], field="--target")
    return out


def plan_targets(path) -> dict[str, tuple]:
    """name -> (N, D) of a plan file's targets (`ladder predict --plan`), (N, D, F) for a preset's
    (`preset_flops_per_token`), as resolve_targets reads the same --target."""
    from ladder.plan import load_plan, preset_flops_per_token

    plan = load_plan(path)
    require(bool(plan.get("targets")), "--plan", f"{path} lists no targets", "plan with --target")
    out = {}
    for t in plan["targets"]:
        fpt = preset_flops_per_token(t["name"], t.get("arch", {}))
        out[t["name"]] = (float(t["n"]), float(t["tokens"])) + ((float(fpt),) if fpt else ())
    return out


def add_run_root(parser, help: str = "root of the rungs' run dirs (a path or gs://BUCKET/PATH); rung run dir "
                 "= ROOT/RUNG (default: runs/<plan name>)") -> None:
    parser.add_argument("--run-root", type=run_root_arg, help=help)


def run_root_arg(text: str) -> str:
    """An argparse type for --run-root: a local path or gs://. Another scheme (s3://, http://) passed the
    dry run and was then treated as a relative local directory named `s3:`, or failed at the first write."""
    text = path_arg(text)
    scheme = text.split("://", 1)[0] if "://" in text else None
    if scheme is not None and scheme != "gs":
        raise argparse.ArgumentTypeError(f"{scheme}:// is not supported; give a local path or gs://BUCKET/PATH")
    if scheme == "gs":  # a bucket name Cloud Storage refuses: said now, not after a minute of retries
        from ladder.launch.cloud_names import check_gs_root

        try:
            check_gs_root(text)
        except LadderError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("--run-root: ")) from None
    return text


def run_root(args) -> str:
    """--run-root, or runs/<plan file's stem>: where launch (local), status and collect find the rungs."""
    return args.run_root or "runs/" + Path(args.plan).stem


def split_list(text: str | None) -> list[str] | None:
    """'a,b,,c' -> ['a', 'b', 'c']; None stays None (the library's default)."""
    return None if text is None else [s.strip() for s in text.split(",") if s.strip()]


def key_values(record: dict, skip=("warning",)) -> str:
    """One record as `key=value` pairs, reals to 4 significant digits, nested values as compact JSON: the text
    format of `ladder fit` and `ladder allocate` (a JSON dump was their "text"). A warning is left out: the
    verb prints it on stderr."""
    import json

    def one(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return json.dumps(v, default=float) if isinstance(v, (dict, list, tuple)) else str(v)

    return "  ".join(f"{k}={one(v)}" for k, v in record.items() if k not in skip)


def path_arg(text: str) -> str:
    """An argparse type for a path option: an empty string (`--run-dir ""`, an unset shell variable) is a usage
    error, never a silent fall back to the default location (runs/<name>) or the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path, or leave the option out for its default")
    return text


def whole(lo: int, hi: int | None = None):
    """An argparse type: an integer >= lo (a count, a seed, a step), so a negative or fractional value is a
    usage error naming the option instead of a traceback deep in the library; `hi` caps counts whose work grows
    with them (a bootstrap of 10^9 samples ran for ever)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi:,}, got {value:,}")
        return value

    parse.__name__ = f"whole number >= {lo}"
    return parse


def real(lo: float | None = None, hi: float | None = None, *, above: bool = False):
    """An argparse type: a finite number in [lo, hi] ((lo, hi] with above=True); nan, inf and 1e999 are
    usage errors."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = lo is None or (value > lo if above else value >= lo)
        if not (math.isfinite(value) and low_ok and (hi is None or value <= hi)):
            low, high = "-inf" if lo is None else f"{lo:g}", "inf" if hi is None else f"{hi:g}"
            span = f"{'(' if above else '['}{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be a finite number in {span}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


POSITIVE = real(0.0, above=True)  # FLOPs, seconds
COUNT = real(0.0, 1e30, above=True)  # parameters and tokens: above 1e30 is a unit error (plan.sizes.MAX_COUNT)


def refuse_unread_options(args, add_arguments, readers: dict, chosen: str, choice: str) -> None:
    """An option set away from its default that the chosen mode never reads is one line naming the modes that
    read it: `readers` maps an option's dest to (its flag, the modes that read it); `chosen` is the mode this
    call runs (`choice` names where it came from, e.g. --backend). Before, `fit split --n 1e6`, `allocate split
    --rule a` or `launch --backend local --spot` ran without a word that the option meant nothing there."""
    bare = argparse.ArgumentParser(add_help=False)
    add_arguments(bare)
    defaults = {a.dest: a.default for a in bare._actions}
    for dest, (flag, modes) in readers.items():
        if chosen not in modes and getattr(args, dest, None) != defaults.get(dest):
            raise LadderError(f"{flag}: applies to {choice} {' / '.join(modes)}, not {chosen}; drop it or choose "
                              "one of those")

