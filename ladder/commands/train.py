"""`ladder train CONFIG | --plan PLAN --rung NAME [--run-dir DIR] [--config.k=v ...]`.

Exit 0 when the run is done (also when it already was), 2 on bad input (and when another process holds the
run directory), 1 on failure (NaN or diverged loss, a failed write, distributed start-up), 143 / 130 / 129 / 141
when stopped by SIGTERM / SIGINT (Ctrl-C) / SIGHUP (its terminal closed) / a closed output pipe after saving a
checkpoint (run the same command again to resume).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from ladder.commands.common import path_arg, whole
from ladder.errors import LadderError, TrainingFailed

TAKES_CONFIG = True
EXAMPLES = """
ladder train configs/tiny.py --run-dir runs/tiny
ladder train configs/tiny.py --config.train.total_steps=100 --config.optim.peak_lr=3e-3
ladder train --plan plan.json --rung 370M-5xC --run-dir runs/370M-5xC
ladder train configs/tiny.py --coordinator 10.0.0.2:8476 --num-processes 4 --process-id 0
"""


def add_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", help="get_config() file, e.g. configs/tiny.py (or file.py:arg)")
    parser.add_argument("--plan", type=path_arg, help="plan file written by `ladder plan -o`; train one of its rungs")
    parser.add_argument("--rung", help="rung name within --plan, e.g. 370M-5xC")
    parser.add_argument("--run-dir", type=path_arg, help="run directory (default: runs/<config name>); resumes from it")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0 for multi-process runs")
    parser.add_argument("--num-processes", type=whole(1), help="number of processes in a multi-process run (default: one "
                                                                      "process)")
    parser.add_argument("--process-id", type=whole(0), help="this process's index in [0, num-processes)")
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
        from ladder.config import require_kind

        config = load_config(args.config, args.config_overrides)
        require_kind(config, "train", args.config)
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
    from ladder.train_config import resolve_vocab, validate

    resolve_vocab(config)  # as train() does first: vocab_size 0 is the data's, not a bad value
    validate(config, data=False)  # a bad value is its one line before any warning about it (train() checks again)
    if list(config.train.eval_steps) and not config.eval.tasks:  # as `ladder launch` warns: a rung of a plan alone
        print("ladder train: warning: train.eval_steps are set but eval.tasks is empty, so nothing is evaluated and "
              "results.csv stays empty; add --config.eval.tasks=embedded (or your tasks, docs/tasks.md)",
              file=sys.stderr)
    from ladder.eval import make_on_eval
    from ladder.train import train

    try:
        summary = train(config, run_dir, on_eval=make_on_eval(config, run_dir))
    except TrainingFailed as e:
        print(f"ladder train: failed: {e}", file=sys.stderr)
        if e.storage or e.exit_at_once:
            # orbax's background writers still hold futures failing on the same storage; at interpreter exit
            # they print tracebacks (asyncio, atexit) after the one line above. Nothing of ours is left open
            # (metrics closed, the last verified checkpoint sealed, the run lock dies with the process).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    if summary["state"] == "preempted":
        sig = summary.get("signal", "SIGTERM")
        redo = " (its evaluation, interrupted, is redone first)" if "eval_pending" in summary else ""
        with contextlib.suppress(OSError, ValueError):  # SIGHUP/SIGPIPE: the console may be gone
            print(f"ladder train: stopped by {sig} at step {summary['step']} after saving a checkpoint; "
                  f"run the same command to resume{redo}", file=sys.stderr)
        return 128 + getattr(signal, sig, signal.SIGTERM)  # the shell's code: 130 SIGINT, 143 SIGTERM, 129, 141
    mfu, loss = summary.get("mfu"), summary.get("loss")
    loss = f"{loss:.4f}" if isinstance(loss, (int, float)) else "-"  # as the step lines print it (was 16 digits)
    print(f"ladder train: {summary['state']} {run_dir}: step {summary['step']}/{summary['total_steps']}, "
          f"loss {loss}, N={summary.get('n'):,}" + (f", mfu {mfu:.1%}" if mfu else ""),
          file=sys.stderr)
    return 0
