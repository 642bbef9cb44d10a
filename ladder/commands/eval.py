"""`ladder eval RUN_DIR [--step N] [--tasks embedded] [-o results.csv]`: score a saved checkpoint.

Restores the parameters of RUN_DIR's checkpoint (the latest unless --step) onto this machine's devices,
evaluates the tasks by ranked classification and appends rows (run, n, d, step, task, loss, acc, ...) to
RUN_DIR/results.csv or -o/--out (a results table grows: rows are appended; only rows of the same run, step and
task, an evaluation run again, are replaced).
Library: ladder.eval.evaluate_checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ladder.commands.common import check_out, path_arg, whole

TAKES_CONFIG = True
CONFIG_LINE = ("config overrides: --config.eval.key=value sets a field of the run's eval section (docs/tasks.md), "
               "e.g. --config.eval.k_shot=5; other sections are errors")
EXAMPLES = """
ladder eval runs/tiny
ladder eval runs/tiny --step 200 --tasks embedded --max-questions 100 -o /tmp/tiny-results.csv
ladder eval runs/tiny --config.eval.k_shot=5
"""


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `ladder train`")
    parser.add_argument("--step", type=whole(0), help="checkpoint step (default: the latest)")
    parser.add_argument("--tasks", help="comma-separated: 'embedded', embedded/catalog task names or .jsonl files "
                                        "(default: the run config's eval.tasks, else 'embedded')")
    parser.add_argument("--k-shot", type=whole(0), help="few-shot examples per prompt for every task without a :k suffix "
                                                   "(default: each task's own, 5 for catalog tasks, 0 embedded)")
    parser.add_argument("--max-questions", type=whole(0), help="cap on questions per task (0 = all; default: the run "
                                                                    "config's eval.max_questions)")
    parser.add_argument("--batch-size", type=whole(1), help="rows per forward pass (default: the run's global batch)")
    parser.add_argument("-o", "--out", metavar="PATH", type=path_arg,
                        help="results CSV to append to (default: RUN_DIR/results.csv)")


def run(args) -> int:
    from ladder import eval as eval_lib
    from ladder import results
    from ladder.errors import require

    other = [o for o in args.config_overrides if not o.startswith("eval.")]
    require(not other, "--config", f"ladder eval reads only --config.eval.* overrides, not {other[0] if other else ''}",
            "set the run's eval section (docs/tasks.md), e.g. --config.eval.k_shot=5")
    run_dir = Path(args.run_dir)
    if args.out:  # rows are appended: an existing table is fine, an unwritable place is found before scoring
        check_out(args.out, False, append=True)
    scored = eval_lib.evaluate_checkpoint(
        run_dir, args.step, tasks=args.tasks, k_shot=args.k_shot, max_questions=args.max_questions,
        batch_size=args.batch_size,
        eval_overrides=[o[len("eval."):] for o in args.config_overrides if o.startswith("eval.")])
    import jax

    if jax.process_index() == 0:
        table = args.out or run_dir / "results.csv"
        if replaced := results.append_rows(table, scored["rows"]):
            print(f"ladder eval: {table}: replaced {replaced} earlier rows of step {scored['step']} (this evaluation "
                  "run again)", file=sys.stderr)
    for m in scored["metrics"]:
        print(f"{scored['config'].name} step {scored['step']} {m['task']}: loss {m['loss']:.4f} bpb, "
              f"acc {m['acc']:.3f} (raw {m['acc_raw']:.3f}), prob {m['prob']:.3f}, {m['n_questions']} questions",
              file=sys.stderr)
    return 0
