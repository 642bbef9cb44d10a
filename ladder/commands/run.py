"""`ladder run CONFIG [-o DIR] [--dry-run] [--config.k=v ...]`: the whole ladder, end to end, resumable.

Library: ladder.run.run."""

from __future__ import annotations

from ladder.commands.common import path_arg

TAKES_CONFIG = True
EXAMPLES = """
ladder run configs/smoke.py
ladder run configs/smoke.py:quick -o runs/quick --config.predict.bootstrap=100
ladder run configs/olmo_ladder.py --dry-run
"""


def add_arguments(parser) -> None:
    parser.add_argument("config", help="a `ladder run` config, e.g. configs/smoke.py (file.py:arg picks a variant)")
    parser.add_argument("-o", "--out", metavar="DIR", type=path_arg,
                        help="run directory (default: the config's out_dir); re-running resumes it")
    parser.add_argument("--dry-run", action="store_true",
                        help="plan and print every launch command; train nothing, write nothing but the plan")


def run(args) -> int:
    from ladder.config import load_config, require_kind
    from ladder.run import run as run_ladder

    cfg = load_config(args.config, args.config_overrides)
    require_kind(cfg, "run", args.config)
    run_ladder(cfg, args.out, dry_run=args.dry_run)
    return 0
