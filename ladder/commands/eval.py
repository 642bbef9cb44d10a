"""`ladder eval RUN_DIR [--step N] [--tasks embedded] [--output results.csv]`: score a saved checkpoint.

Restores the parameters of RUN_DIR's checkpoint (the latest unless --step) onto this machine's devices,
evaluates the tasks by ranked classification and appends rows (run, n, d, step, task, loss, acc, ...) to
RUN_DIR/results.csv or --output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `ladder train`")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--tasks", help="comma list: 'embedded', embedded/catalog task names or .jsonl files "
                                        "(default: the run config's tasks.tasks, else 'embedded')")
    parser.add_argument("--k-shot", type=int, help="few-shot examples per prompt for every task without a :k suffix "
                                                       "(default: each task's own, 5 for catalog tasks, 0 embedded)")
    parser.add_argument("--max-questions", type=int, help="cap on questions per task (0 = all)")
    parser.add_argument("--batch-size", type=int, help="rows per forward pass (default: the run's global batch)")
    parser.add_argument("--output", help="results CSV to append to (default RUN_DIR/results.csv)")


def restore_logits_fn(run_dir: Path, step: int | None = None):
    """(config, step, logits_fn) for a run directory's checkpoint, placed on this machine's devices."""
    import ml_collections

    from ladder import sharding, train
    from ladder.checkpoint import Checkpoints
    from ladder.errors import LadderError

    saved = run_dir / "config.json"
    if not saved.is_file():
        raise LadderError(f"run_dir: {run_dir} has no config.json; give a directory written by `ladder train`")
    raw = json.loads(saved.read_text())
    raw.pop("config_hash", None)
    config = ml_collections.ConfigDict(raw)
    mesh = sharding.make_mesh(config.mesh)
    program = train.make_train_step(config, mesh)
    ckpts = Checkpoints(run_dir / "checkpoints", keep=1, async_save=False)
    available = list(ckpts.manager.all_steps())
    if not available:
        raise LadderError(f"run_dir: {run_dir}/checkpoints holds no checkpoint yet")
    step = max(available) if step is None else step
    if step not in available:
        raise LadderError(f"--step: no checkpoint at step {step} in {run_dir}; available: {sorted(available)}")
    state = ckpts.restore(step, program.abstract_state)
    dp = dict(mesh.shape)["data"] * dict(mesh.shape)["fsdp"]
    return config, step, train.bind_logits_fn(program, state["params"], dp)


def run(args) -> int:
    import ml_collections

    from ladder import eval as eval_lib
    from ladder import results, tasks
    from ladder.arch import n_params
    from ladder.config import apply_overrides
    from ladder.data.tokenizer import make_tokenizer
    from ladder.train import arch_of

    run_dir = Path(args.run_dir)
    config, step, logits_fn = restore_logits_fn(run_dir, args.step)
    task_cfg = ml_collections.ConfigDict(config.get("tasks", None) or {"tasks": "embedded"})
    for key, value in (("tasks", args.tasks), ("k_shot", args.k_shot), ("max_questions", args.max_questions)):
        if value is not None:
            task_cfg[key] = value
    task_cfg = apply_overrides(task_cfg, [o[len("tasks."):] for o in args.config_overrides if o.startswith("tasks.")])
    a = arch_of(config)
    task_list = tasks.load_tasks(task_cfg, config.data)
    metrics = eval_lib.evaluate(logits_fn, task_list, make_tokenizer(config.data),
                                batch_size=args.batch_size or config.train.global_batch, seq_len=a.seq_len)
    tokens = step * config.train.global_batch * a.seq_len  # D: training tokens seen at this checkpoint
    rows = eval_lib.rows_for_results(metrics, config.name, n_params(a), tokens, step)
    import jax

    if jax.process_index() == 0:
        results.append_rows(args.output or run_dir / "results.csv", rows)
    for m in metrics:
        print(f"{config.name} step {step} {m['task']}: loss {m['loss']:.4f} bpb, acc {m['acc']:.3f} "
              f"(raw {m['acc_raw']:.3f}), prob {m['prob']:.3f}, {m['n_questions']} questions", file=sys.stderr)
    return 0
