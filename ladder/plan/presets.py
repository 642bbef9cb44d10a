"""Named targets, model families and ladders: the published OLMo ladder and a CPU smoke ladder.

A family fixes what every rung of a ladder shares (tokenizer vocabulary, sequence length, how batch and LR
follow N, train-config defaults); a ladder preset adds its sizes and Chinchilla multiples; a target preset is
one big run to predict. Numbers: /work/shared/README.md (Bhagia et al. 2024); formulas: docs/planning.md.
"""

from __future__ import annotations

import dataclasses

from ladder.arch import Arch, flops_per_token_reference
from ladder.errors import LadderError

OLMO_VOCAB = 100_278  # the OLMo-2 / dolma2 tokenizer; embeddings pad it to 100,352
BYTE_VOCAB = 259  # ladder.data.tokenizer.BYTE_VOCAB_SIZE: 256 bytes + 3 specials (not imported: no JAX here)
# Evaluation points as fractions of a rung's steps: log-spaced early (the loss moves fastest there), evenly
# spaced in the middle, and six in the last 10% so the predictor's mean of the last five evaluations is all in
# the tail. On CPU one evaluation of the embedded tasks costs about as much as training the smallest rung, so
# the smoke family keeps the tail and three earlier points.
DENSE_EVALS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 0.6, 0.7, 0.8, 0.9, 0.92, 0.94, 0.96, 0.98, 1.0)
SPARSE_EVALS = (1 / 8, 1 / 4, 1 / 2, 0.92, 0.94, 0.96, 0.98, 1.0)


@dataclasses.dataclass(frozen=True)
class Family:
    """What all rungs of a ladder share."""

    name: str
    vocab_size: int
    seq_len: int
    batch_multiple: int  # batch in sequences is a multiple of this (and at least this)
    max_lr: float  # cap on the peak-LR formula; binds only for tiny models
    min_n: float  # smallest rung the budget chooser may emit (below it tasks sit at chance)
    named_archs: dict[str, Arch]  # size labels with a published shape; others go through arch search
    defaults: dict  # dotted train-config overrides for every rung
    chip: str  # what `ladder plan --dry-run` checks against unless told otherwise
    eval_fractions: tuple[float, ...] = DENSE_EVALS  # where each rung is evaluated (plan_ladder may override)

    def arch(self, d_model: int, n_layers: int, n_heads: int, mlp_hidden: int = 0) -> Arch:
        return Arch(d_model, n_layers, n_heads, self.vocab_size, self.seq_len, mlp_hidden)


def _olmo(d, layers, heads, mlp_hidden=0):
    return Arch(d, layers, heads, OLMO_VOCAB, 4096, mlp_hidden)


def _byte(d, layers, heads):
    return Arch(d, layers, heads, BYTE_VOCAB, 128)


OLMO = Family(
    name="olmo", vocab_size=OLMO_VOCAB, seq_len=4096, batch_multiple=64, max_lr=1e-2, min_n=60e6,
    named_archs={"190M": _olmo(768, 12, 12), "370M": _olmo(1024, 16, 16), "760M": _olmo(1536, 16, 16),
                 "1.3B": _olmo(2048, 16, 16), "1B": _olmo(2048, 16, 16), "3B": _olmo(3328, 16, 16)},
    # bf16 compute with full per-layer rematerialisation (the least memory; resources.fit_recipe says where a
    # rung fits with less recompute)
    defaults={"model.dtype": "bfloat16", "model.remat": "full"},
    # v5e's 16 GiB cannot hold one 4096-token row of the 370M+ rungs with materialised attention scores
    # and full-vocabulary logits (docs/planning.md, "Memory"); v5p's 95 GiB can.
    chip="v5p",
)
SMOKE = Family(
    name="smoke", vocab_size=BYTE_VOCAB, seq_len=128, batch_multiple=8, max_lr=1e-2, min_n=25e3,
    # Two layers and 16-wide heads throughout, so the ladder and the self-check model (330k) differ in width
    # only: with mixed head widths (32, 16, 32) the step-1 fit mistook shape effects for size effects and
    # missed the 330k model's held-out LM loss by +4.9%; with one head width, by +1.6% (docs/run.md).
    named_archs={"45k": _byte(32, 2, 2), "93k": _byte(48, 2, 3), "160k": _byte(64, 2, 4), "330k": _byte(96, 2, 6)},
    # the embedded tasks at the plan's eval steps: without them a rung launched from the plan alone (`ladder
    # launch smoke.json`) evaluated nothing, and `ladder collect` found no rows (configs/smoke.py sets the same)
    defaults={"data.source": "embedded", "eval.tasks": "embedded"},
    chip="cpu", eval_fractions=SPARSE_EVALS,
)
FAMILIES = {f.name: f for f in (OLMO, SMOKE)}


@dataclasses.dataclass(frozen=True)
class TargetPreset:
    arch: Arch
    tokens: int
    family: Family


TARGETS: dict[str, TargetPreset] = {
    "7b-4t": TargetPreset(_olmo(4096, 32, 32, 11_008), 3_945_065_873_408, OLMO),
    "13b-5t": TargetPreset(_olmo(5120, 40, 40, 13_824), 5_000_088_518_656, OLMO),
    # 2.1M parameters at 27 tokens/parameter: its 1% ladder trains on 2 CPU cores in minutes
    "smoke-target": TargetPreset(_byte(160, 5, 10), 58_000_000, SMOKE),
}


@dataclasses.dataclass(frozen=True)
class LadderPreset:
    family: Family
    sizes: tuple[str, ...]  # labels in family.named_archs
    multiples: tuple[float, ...]
    targets: tuple[str, ...]  # the targets it was designed for (used when none is given)


LADDERS: dict[str, LadderPreset] = {
    # Bhagia et al. 2024: 4 sizes x 4 multiples, 0.92% of 7B-4T + 13B-5T (6ND)
    "olmo-ladder": LadderPreset(OLMO, ("190M", "370M", "760M", "1.3B"), (1, 2, 5, 10), ("7b-4t", "13b-5t")),
    # 3 sizes x 3 multiples at ~1% of smoke-target: ~10M tokens, a few minutes on 2 CPU cores
    "smoke": LadderPreset(SMOKE, ("45k", "93k", "160k"), (0.25, 0.5, 1), ("smoke-target",)),
}


def ladder_preset(name: str) -> LadderPreset:
    if name not in LADDERS:
        raise LadderError(f"preset: unknown preset {name!r}; choose one of {', '.join(LADDERS)}")
    return LADDERS[name]


def preset_flops_per_token(spec, arch: dict | None = None) -> int | None:
    """A preset target's training FLOPs/token (None for any other target): the planner's accounting,
    `arch.flops_per_token_reference` (docs/flops.md), which the OLMo importer's published FLOPs and `ladder
    collect`'s `flops` column share (7b-4t: 49,412,071,424, 13b-5t: 91,335,915,520, as published). A
    SIZE-TOKENS target's shape is the planner's guess (arch search), not the run's: its F stays extrapolated.
    arch: the shape a plan file records for the target, which must be the preset's (a target merely named
    like a preset is not one)."""
    preset = TARGETS.get(spec.lower()) if isinstance(spec, str) else None
    if preset is None or (arch is not None and arch != preset.arch.to_dict()):
        return None
    return flops_per_token_reference(preset.arch)
