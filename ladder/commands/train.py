"""`ladder train CONFIG | --plan PLAN --rung NAME [--run-dir DIR] [--config.k=v ...]`.

Exit 0 when the run is done (also when it already was), 2 on bad input, 1 on failure (NaN, distributed
start-up), 143 when stopped by SIGTERM after saving a checkpoint (run the same command again to resume).
"""

from __future__ import annotations

import sys

from ladder.errors import LadderError

EXIT_PREEMPTED = 143  # 128 + SIGTERM, the shell's convention for "terminated"


def add_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", help="get_config() file, e.g. configs/tiny.py (or file.py:arg)")
    parser.add_argument("--plan", help="plan JSON from `ladder plan`; train one of its rungs")
    parser.add_argument("--rung", help="rung name within --plan, e.g. 370M-5xC")
    parser.add_argument("--run-dir", help="run directory (default runs/<config name>); resumes from it")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0 for multi-process runs")
    parser.add_argument("--num-processes", type=int, help="number of processes in a multi-process run")
    parser.add_argument("--process-id", type=int, help="this process's index in [0, num-processes)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() with no arguments (TPU VM environment)")


def build_config(args):
    """The train config the arguments describe (no JAX import)."""
    from ladder.config import load_config

    if args.plan:
        if args.config or not args.rung:
            raise LadderError("--plan: give --plan PLAN.json --rung NAME (and no CONFIG file)")
        from ladder.plan import load_plan
        from ladder.train_config import resolve_rung

        config, _ = resolve_rung(load_plan(args.plan), args.rung, args.config_overrides)
    elif args.config:
        config = load_config(args.config, args.config_overrides)
    else:
        raise LadderError("config: give a CONFIG file (e.g. configs/tiny.py) or --plan PLAN.json --rung NAME")
    d = config.distributed
    if args.coordinator or args.num_processes is not None or args.process_id is not None:
        if not (args.coordinator and args.num_processes is not None and args.process_id is not None):
            raise LadderError("--coordinator: multi-process runs need --coordinator, --num-processes and --process-id")
        d.update(initialize=True, coordinator=args.coordinator, num_processes=args.num_processes,
                 process_id=args.process_id)
    elif args.distributed:
        d.initialize = True
    return config


def run(args) -> int:
    config = build_config(args)
    run_dir = args.run_dir or f"runs/{config.name}"
    from ladder.eval import make_on_eval
    from ladder.train import TrainingFailed, train

    try:
        summary = train(config, run_dir, on_eval=make_on_eval(config, run_dir))
    except TrainingFailed as e:
        print(f"ladder train: failed: {e}", file=sys.stderr)
        return 1
    if summary["state"] == "preempted":
        print(f"ladder train: stopped by SIGTERM at step {summary['step']} after saving a checkpoint; "
              f"run the same command to resume", file=sys.stderr)
        return EXIT_PREEMPTED
    mfu = summary.get("mfu")
    print(f"ladder train: {summary['state']} {run_dir}: step {summary['step']}/{summary['total_steps']}, "
          f"loss {summary.get('loss')}, N={summary.get('n'):,}" + (f", mfu {mfu:.1%}" if mfu else ""),
          file=sys.stderr)
    return 0
