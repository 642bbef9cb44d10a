"""A tiny hand-written plan (pinned plan-file schema, version 1) shared by the launch tests."""

from __future__ import annotations

import json

from ladder import arch as arch_lib


TARGET_6ND = 1.2e14  # the tiny target's 6ND: each rung's share is its own 6ND over this, as `ladder plan` writes


def rung(name: str, size: str, multiple: float, d: int, layers: int, heads: int, steps: int, batch: int = 2,
         seq: int = 32, vocab: int = 259) -> dict:
    a = arch_lib.Arch(d, layers, heads, vocab, seq)
    n, n_total = arch_lib.n_params(a), arch_lib.n_params_total(a)
    fpt, fpt6 = arch_lib.flops_per_token_reference(a), arch_lib.flops_per_token_6n(a)
    tokens = steps * batch * seq
    return {
        "name": name, "size": size, "multiple": multiple, "d_model": d, "n_layers": layers, "n_heads": heads,
        "mlp_hidden": 4 * d, "vocab_size": vocab, "seq_len": seq, "n": n, "n_total": n_total, "tokens": tokens,
        "batch_sequences": batch, "batch_tokens": batch * seq, "peak_lr": 3e-3, "final_lr_ratio": 0.1,
        "warmup_steps": 2, "total_steps": steps, "schedule": "cosine", "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
        "weight_decay": 0.1, "clip": 1.0, "z_loss": 1e-4, "seed": 0, "eval_steps": [], "checkpoint_steps": [steps // 2],
        "flops": fpt * tokens, "flops_6n": fpt6 * tokens, "flops_6nd": 6 * n * tokens, "flops_per_token": fpt, "flops_per_token_6n": fpt6,
        "share": 6 * n * tokens / TARGET_6ND,
    }


def tiny_plan(steps: int = 8, defaults: dict | None = None) -> dict:
    rungs = [rung("20M-1xC", "20M", 1, 32, 1, 2, steps), rung("60M-2xC", "60M", 2, 48, 2, 2, steps)]
    return {
        "version": 1, "preset": None,
        "targets": [{"name": "tiny", "n": 10**6, "tokens": 2 * 10**7, "flops_6nd": TARGET_6ND,
                     "arch": {"d_model": 64, "n_layers": 2, "n_heads": 4, "vocab_size": 259, "seq_len": 32}}],
        "fraction": sum(r["share"] for r in rungs),
        "defaults": {"data.source": "synthetic"} if defaults is None else defaults,
        "rungs": rungs,
    }


def with_rungs(plan: dict, rungs: list[dict]) -> dict:
    """`plan` with other rungs, its fraction their summed share (a plan whose fraction disagrees is refused)."""
    return dict(plan, rungs=rungs, fraction=sum(r["share"] for r in rungs))


def write_plan(path, plan: dict) -> str:
    path.write_text(json.dumps(plan, indent=1))
    return str(path)


def pin_choose_slice(monkeypatch, choose=lambda rung, chip: "v5litepod-8"):
    """Pin the planner's slice choice (ladder.plan.choose_slice), so launch goldens do not move with its
    throughput model; the launcher reads it from ladder.plan at call time."""
    from ladder import plan

    monkeypatch.setattr(plan, "choose_slice", choose)
