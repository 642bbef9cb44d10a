"""Ranked classification: score every choice by the log-likelihood of its tokens after the prompt.

For each task (formulas: docs/tasks.md, as the reference OLMo ladder evaluates):
    loss    = mean_q  -log p(gold tokens | prompt) / (ln 2 * UTF-8 bytes of the gold choice)   (bits per byte)
    acc     = mean_q  [argmax_j log p(choice_j) / characters(choice_j) == gold]    (length-normalised)
    acc_raw = mean_q  [argmax_j log p(choice_j) == gold]
    prob    = mean_q  p(gold) / sum_j p(choice_j)      (softmax over the choices' total log-likelihoods)

Every (question, choice) pair becomes one row [EOS, prompt..., choice...] (EOS starts every document in
training too), truncated from the left to seq_len + 1 tokens and padded to a fixed [batch_size, seq_len],
so the model's logits function and the scoring function each compile once for a whole evaluation.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ladder.errors import LadderError, read_user_json, require


@jax.jit
def _choice_logprobs(logits, targets, mask):
    """Sum over masked positions of log softmax(logits)[target]: float32 [B]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(mask, picked, 0.0), axis=-1)


def _to_host(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)


def encode_rows(task, tokenizer, seq_len: int):
    """Token rows of every (question, choice): list of (question, choice, ids, n_answer_tokens)."""
    rows = []
    for i, q in enumerate(task.questions):
        prompt = [tokenizer.eos_id] + list(tokenizer.encode(task.prompt(i)))
        for j, choice in enumerate(q.choices):
            answer = list(tokenizer.encode(choice))
            if not answer:
                raise LadderError(f"task {task.name}, question {i}, choice {j}: {choice!r} tokenizes to nothing")
            if len(answer) > seq_len:
                raise LadderError(f"task {task.name}, question {i}, choice {j}: {len(answer)} tokens, more than "
                                  f"the evaluation sequence length {seq_len}; raise seq_len or shorten the choice")
            ids = (prompt + answer)[-(seq_len + 1):]  # keep the answer, cut the prompt from the left
            rows.append((i, j, ids, len(answer)))
    return rows


PROGRESS_S = 10.0  # seconds between progress lines while a task is scored


def score_rows(logits_fn, rows, *, batch_size: int, seq_len: int, pad_id: int, describe: str = "") -> np.ndarray:
    """Summed log-likelihood of each row's answer tokens, float64 [len(rows)]. With `describe` (a task name),
    a line every PROGRESS_S seconds on process 0: a large task file scored for minutes without a word."""
    import sys
    import time

    out = np.zeros(len(rows), np.float64)
    positions = np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch_size, seq_len))
    start = last = time.perf_counter()
    for lo in range(0, len(rows), batch_size):
        if describe and lo and time.perf_counter() - last >= PROGRESS_S and jax.process_index() == 0:
            last = time.perf_counter()
            print(f"eval {describe}: {lo:,}/{len(rows):,} choices scored ({lo / len(rows):.0%}) in {last - start:.0f}s",
                  file=sys.stderr, flush=True)
        chunk = rows[lo : lo + batch_size]
        inputs = np.full((batch_size, seq_len), pad_id, np.int32)
        targets = np.full((batch_size, seq_len), pad_id, np.int32)
        segments = np.zeros((batch_size, seq_len), np.int32)
        mask = np.zeros((batch_size, seq_len), bool)
        for r, (_, _, ids, n_answer) in enumerate(chunk):
            n = len(ids) - 1
            inputs[r, :n], targets[r, :n], segments[r, :n] = ids[:-1], ids[1:], 1
            mask[r, n - n_answer : n] = True
        logits = logits_fn(inputs, segments, positions)
        out[lo : lo + len(chunk)] = _to_host(_choice_logprobs(logits, targets, mask))[: len(chunk)]
    return out


def task_metrics(task, logprobs: np.ndarray, rows) -> dict:
    """Per-task metrics from each row's summed answer log-likelihood (natural log)."""
    by_question: dict[int, dict[int, float]] = {}
    for (i, j, _, _), lp in zip(rows, logprobs):
        by_question.setdefault(i, {})[j] = lp
    loss, acc, acc_raw, prob = [], [], [], []
    for i, q in enumerate(task.questions):
        lp = np.array([by_question[i][j] for j in range(len(q.choices))])
        chars = np.array([max(len(c), 1) for c in q.choices])
        loss.append(-lp[q.gold] / (math.log(2) * len(q.choices[q.gold].encode("utf-8"))))
        acc.append(float(np.argmax(lp / chars) == q.gold))
        acc_raw.append(float(np.argmax(lp) == q.gold))
        p = np.exp(lp - lp.max())
        prob.append(float(p[q.gold] / p.sum()))
    return {"task": task.name, "loss": float(np.mean(loss)), "acc": float(np.mean(acc)),
            "acc_raw": float(np.mean(acc_raw)), "prob": float(np.mean(prob)), "n_questions": len(task.questions),
            "chance": float(np.mean([1 / len(q.choices) for q in task.questions]))}


def evaluate(logits_fn, tasks, tokenizer, *, batch_size: int, seq_len: int) -> list[dict]:
    """Score every task; logits_fn(inputs, segment_ids, positions) int32 [B, L] -> logits [B, L, V].

    Returns one dict per task: task, loss (bits per byte of the gold answer), acc (length-normalised),
    acc_raw, prob, n_questions.
    """
    if batch_size < 1 or seq_len < 2:
        raise LadderError(f"eval: batch_size {batch_size} and seq_len {seq_len} must be >= 1 and >= 2")
    results = []
    for task in tasks:
        rows = encode_rows(task, tokenizer, seq_len)
        logprobs = score_rows(logits_fn, rows, batch_size=batch_size, seq_len=seq_len, pad_id=tokenizer.pad_id,
                              describe=task.name)
        results.append(task_metrics(task, logprobs, rows))
    return results


def rows_for_results(metrics: list[dict], run: str, n: int, d: int, step: int, **extra) -> list[dict]:
    """Rows for `ladder.results.append_rows`: run, n, d, step, task, loss, acc, acc_raw, prob, chance (+ extra)."""
    keys = ("task", "loss", "acc", "acc_raw", "prob", "chance")
    return [{"run": run, "n": n, "d": d, "step": step, **{k: m[k] for k in keys if k in m}, **extra} for m in metrics]


def ngram_logits_fn(counts: np.ndarray, order: int):
    """A fixed byte n-gram model as a logits function (for tests and for checking task difficulty).

    counts: float [V^(order-1), V] smoothed next-token counts indexed by the previous order-1 tokens in base V.
    """
    V = counts.shape[-1]
    table = jnp.asarray(np.log(counts / counts.sum(-1, keepdims=True)), jnp.float32)

    @partial(jax.jit)
    def logits_fn(inputs, segment_ids, positions):
        idx = jnp.zeros(inputs.shape, jnp.int32)
        for back in range(order - 1):  # context index from the previous order-1 inputs (within the row)
            shifted = jnp.pad(inputs, ((0, 0), (back, 0)), constant_values=0)[:, : inputs.shape[1]]
            idx = idx + jnp.clip(shifted, 0, V - 1) * (V**back)
        return table[idx]

    return logits_fn


def lm_loss(logits_fn, source, n_batches: int) -> float:
    """Held-out next-token loss in bits per token (per byte with the byte tokenizer) over batches 0..n-1 of
    `source` (a validation-split source: a fixed set, so every checkpoint is scored on the same tokens)."""
    total, count = 0.0, 0
    for k in range(n_batches):
        b = source.batch(k)
        logits = logits_fn(b["inputs"], b["segment_ids"], b["positions"])
        mask = b["segment_ids"] > 0
        total += float(_to_host(-_choice_logprobs(logits, jnp.asarray(b["targets"]), jnp.asarray(mask))).sum())
        count += int(mask.sum())
    if count == 0:
        raise LadderError("eval.lm_loss_batches: the validation batches hold no tokens; check data.split")
    return total / count / math.log(2)


# ------------------------------------------------------------------ evaluation inside a training run
def make_on_eval(config, run_dir):
    """Evaluate at eval steps: task rows (+ held-out LM losses) into <run_dir>/results.csv; None if no tasks.

    Columns beyond the task metrics: lm_loss and lm_loss_<domain> (eval.lm_loss_batches > 0); for a run
    continued from another (init.from_run) d counts the base's tokens too, plus d_cpt (this run's tokens) and
    base_run; for a specialization-mixture run (mix.r >= 0) general_loss, domain_loss, r, d_cpt, base_run and
    kind (base | general | domain), the columns docs/specialization.md defines.
    """
    if not config.eval.tasks:
        return None
    from ladder import metrics as metrics_lib, rundir, storage, tasks
    from ladder.arch import arch_of, n_params
    from ladder.data.tokenizer import make_tokenizer

    a = arch_of(config)
    tokenizer = make_tokenizer(config.data)
    task_list = tasks.load_tasks(config.eval, config.data)
    for task in task_list:  # a choice longer than seq_len, found now rather than at the first eval step
        encode_rows(task, tokenizer, a.seq_len)
    eval_batch = config.eval.batch_size or config.train.global_batch
    tokens_per_step = config.train.global_batch * a.seq_len
    validation = held_out_sources(config, a.seq_len, eval_batch)
    path = storage.join(run_dir, rundir.RESULTS)

    def on_eval(step, params, logits_fn):
        metrics = evaluate(logits_fn, task_list, tokenizer, batch_size=eval_batch, seq_len=a.seq_len)
        extra = {k: lm_loss(logits_fn, src, config.eval.lm_loss_batches) for k, src in validation.items()}
        if jax.process_index() == 0:
            d_run = step * tokens_per_step
            init = storage.read_json(storage.join(run_dir, rundir.INIT))  # written by the trainer when continuing a run
            d = d_run + (init["tokens"] if init else 0)
            if init or config.mix.r >= 0:
                extra.update(d_cpt=d_run if init else 0, base_run=init["base_run"] if init else "")
            if config.mix.r >= 0:
                extra.update(r=config.mix.r, kind="base" if not init else "general" if config.mix.r == 0 else "domain")
            rows = rows_for_results(metrics, config.name, n_params(a), d, step, **extra)
            rundir.write_results(path, step, rows)
            metrics_lib.log_eval(run_dir, step, d, rows)

    return on_eval


def held_out_sources(config, seq_len: int, eval_batch: int) -> dict:
    """The validation batch sources an evaluation measures LM loss on, by results column: lm_loss, one
    lm_loss_<domain> per eval.lm_loss_domains, and general_loss/domain_loss for a mixture run (mix.r >= 0);
    {} when eval.lm_loss_batches is 0. Every process scores the same full batches (the logits function shards
    them), so the sources are built as if for one process. Their order comes from eval.seed, not data.seed:
    runs that train on differently shuffled data (a continued run, another seed) are scored on the same
    held-out rows."""
    import ml_collections

    from ladder.data import make_source
    from ladder.data.pipeline import as_list
    from ladder.train_config import data_config

    if not config.eval.lm_loss_batches:
        return {}
    data = data_config(config)
    data.update(split="validation", seed=config.eval.seed)
    validation = {"lm_loss": make_source(data, seq_len, eval_batch)}

    def one_source(domains):
        one = dict(data.to_dict(), source="embedded", domains=domains, weights="", mixture=None)
        return make_source(ml_collections.ConfigDict(one), seq_len, eval_batch)

    for domain in as_list(config.eval.lm_loss_domains, "eval.lm_loss_domains"):
        validation[f"lm_loss_{domain}"] = one_source(domain)
    if config.mix.r >= 0:
        validation["general_loss"] = one_source(config.mix.general)
        validation["domain_loss"] = one_source(config.mix.domain)
    return validation


# ------------------------------------------------------------------ evaluation of a saved checkpoint
def restore_logits_fn(run_dir, step: int | None = None, batch_size: int | None = None):
    """(config, step, logits_fn) for a run directory's checkpoint (the latest unless `step`), placed on
    this machine's devices; `batch_size` (ladder eval --batch-size) is checked against a device's memory
    first (the trainer checks its own eval.batch_size before training)."""
    from pathlib import Path

    import ml_collections

    from ladder import sharding
    from ladder.checkpoint import Checkpoints, check_restored_step, check_step_in_run
    from ladder.step import bind_logits_fn, make_train_step

    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise LadderError(f"run_dir: {run_dir} has no config.json; give a directory written by `ladder train`")
    raw = read_user_json(saved, "run_dir", "the run's config.json is damaged; restore it or retrain the run")
    require(isinstance(raw, dict), "run_dir", f"{saved} is not a JSON object", "restore it or retrain the run")
    raw.pop("config_hash", None)
    config = ml_collections.ConfigDict(raw)
    try:  # a config.json edited by hand may lack a section or key: ConfigDict says so as an AttributeError
        mesh = sharding.make_mesh(config.mesh)
        program = make_train_step(config, mesh)
    except (AttributeError, KeyError) as e:
        key = str(e.args[0] if e.args else e).strip("\"'")
        raise LadderError(f"run_dir: {saved} lacks the key {key!r} (not the whole config `ladder train` writes); "
                          "restore it or retrain the run") from None
    if batch_size:
        from ladder.device_checks import check_eval_batch_fits
        from ladder.train import device_bytes

        check_eval_batch_fits(config, dict(mesh.shape), device_bytes(), batch_size, "--batch-size")
    ckpts = Checkpoints(run_dir / "checkpoints", keep=1, async_save=False)
    available = list(ckpts.manager.all_steps())
    if not available:
        raise LadderError(f"run_dir: {run_dir}/checkpoints holds no checkpoint yet")
    step = max(available) if step is None else step
    if step not in available:
        raise LadderError(f"--step: no checkpoint at step {step} in {run_dir}; available: {sorted(available)}")
    check_step_in_run(run_dir / "checkpoints", step, config.train.total_steps)
    state = ckpts.restore(step, program.abstract_state)
    check_restored_step(run_dir / "checkpoints", step, state)
    dp = dict(mesh.shape)["data"] * dict(mesh.shape)["fsdp"]
    return config, step, bind_logits_fn(program, state["params"], dp)


def evaluate_checkpoint(run_dir, step: int | None = None, *, tasks: str | None = None, k_shot: int | None = None,
                        max_questions: int | None = None, batch_size: int | None = None,
                        eval_overrides=()) -> dict:
    """Score a run directory's checkpoint on the run's own eval section (tasks, k_shot, n_questions, seed, ...;
    tasks default 'embedded'), so a rescore matches the trainer's evaluation; `tasks`, `k_shot`,
    `max_questions` and `eval_overrides` (`key=value` in that section: the verb's --config.eval.key=value)
    change it.

    Returns {"config", "step", "metrics" (one dict per task), "rows" (results-table rows: run, n, d = tokens
    seen at the checkpoint, step, task, loss, acc, ...)}."""
    import ml_collections

    from ladder import tasks as tasks_lib
    from ladder.arch import arch_of, n_params
    from ladder.config import apply_overrides
    from ladder.data.tokenizer import make_tokenizer

    config, step, logits_fn = restore_logits_fn(run_dir, step, batch_size)
    task_cfg = ml_collections.ConfigDict(config.eval.to_dict())
    task_cfg.tasks = task_cfg.tasks or "embedded"
    for key, value in (("tasks", tasks), ("k_shot", k_shot), ("max_questions", max_questions)):
        if value is not None:
            task_cfg[key] = value
    task_cfg = apply_overrides(task_cfg, list(eval_overrides))
    a = arch_of(config)
    metrics = evaluate(logits_fn, tasks_lib.load_tasks(task_cfg, config.data), make_tokenizer(config.data),
                       batch_size=batch_size or config.train.global_batch, seq_len=a.seq_len)
    tokens = step * config.train.global_batch * a.seq_len  # D: training tokens seen at this checkpoint
    return {"config": config, "step": step, "metrics": metrics,
            "rows": rows_for_results(metrics, config.name, n_params(a), tokens, step)}
