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
    from ladder.config import apply_overrides, load_config

    if args.plan:
        if args.config or not args.rung:
            raise LadderError("--plan: give --plan PLAN.json --rung NAME (and no CONFIG file)")
        from ladder.plan import load_plan
        from ladder.train import config_from_rung

        plan = load_plan(args.plan)
        rungs = {r["name"]: r for r in plan["rungs"]}
        if args.rung not in rungs:
            raise LadderError(f"--rung: {args.rung!r} is not in {args.plan}; rungs: {', '.join(rungs)}")
        config = config_from_rung(rungs[args.rung], plan.get("defaults") or {})
        config = apply_overrides(config, args.config_overrides)
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


def make_on_eval(config, run_dir):
    """Evaluate at eval steps: task rows (+ held-out LM losses) into <run_dir>/results.csv; None if no tasks.

    Columns beyond the task metrics: lm_loss and lm_loss_<domain> (eval.lm_loss_batches > 0); for a run
    continued from another (init.from_run) d counts the base's tokens too, plus d_cpt (this run's tokens) and
    base_run; for a specialization-mixture run (mix.r >= 0) general_loss, domain_loss, r, d_cpt, base_run and
    kind (base | general | domain), the columns docs/specialization.md defines.
    """
    if not config.eval.tasks:
        return None
    import ml_collections

    from ladder import eval as eval_lib
    from ladder import metrics as metrics_lib
    from ladder import tasks
    from ladder.arch import n_params
    from ladder.data import make_source
    from ladder.data.pipeline import as_list
    from ladder.data.tokenizer import make_tokenizer
    from ladder.train import arch_of, data_config

    import jax

    a = arch_of(config)
    tokenizer = make_tokenizer(config.data)
    task_list = tasks.load_tasks(config.eval, config.data)
    eval_batch = config.eval.batch_size or config.train.global_batch
    tokens_per_step = config.train.global_batch * a.seq_len
    # Every process scores the same full batches (the logits function shards them), so the validation
    # sources are built as if for one process. Their order comes from eval.seed, not data.seed: runs that
    # train on differently shuffled data (a continued run, another seed) are scored on the same held-out rows.
    validation = {}
    if config.eval.lm_loss_batches:
        data = data_config(config)
        data.update(split="validation", seed=config.eval.seed)
        validation["lm_loss"] = make_source(data, a.seq_len, eval_batch)

        def one_source(domains):
            one = dict(data.to_dict(), source="embedded", domains=domains, weights="", mixture=None)
            return make_source(ml_collections.ConfigDict(one), a.seq_len, eval_batch)

        for domain in as_list(config.eval.lm_loss_domains, "eval.lm_loss_domains"):
            validation[f"lm_loss_{domain}"] = one_source(domain)
        if config.mix.r >= 0:
            validation["general_loss"] = one_source(config.mix.general)
            validation["domain_loss"] = one_source(config.mix.domain)
    path = f"{run_dir}/results.csv"

    def on_eval(step, params, logits_fn):
        metrics = eval_lib.evaluate(logits_fn, task_list, tokenizer, batch_size=eval_batch, seq_len=a.seq_len)
        extra = {k: eval_lib.lm_loss(logits_fn, src, config.eval.lm_loss_batches) for k, src in validation.items()}
        if jax.process_index() == 0:
            d_run = step * tokens_per_step
            init = metrics_lib.read_json(f"{run_dir}/init.json")  # written by the trainer when continuing a run
            d = d_run + (init["tokens"] if init else 0)
            if init or config.mix.r >= 0:
                extra.update(d_cpt=d_run if init else 0, base_run=init["base_run"] if init else "")
            if config.mix.r >= 0:
                extra.update(r=config.mix.r, kind="base" if not init else "general" if config.mix.r == 0 else "domain")
            rows = eval_lib.rows_for_results(metrics, config.name, n_params(a), d, step, **extra)
            write_results(path, step, rows)

    return on_eval


def write_results(path: str, step: int, rows: list[dict]) -> None:
    """ladder.results.replace_step on a local or gs:// results.csv (an object store has no append: the
    table is edited in a local copy and uploaded whole)."""
    from ladder import metrics, results

    if not metrics.is_remote(path):
        results.replace_step(path, step, rows)
        return
    import tempfile

    remote = metrics.run_path(path)
    with tempfile.TemporaryDirectory() as tmp:
        local = f"{tmp}/results.csv"
        if remote.exists():
            with open(local, "w") as f:
                f.write(remote.read_text())
        results.replace_step(local, step, rows)
        remote.write_text(open(local).read())


def run(args) -> int:
    config = build_config(args)
    run_dir = args.run_dir or f"runs/{config.name}"
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
