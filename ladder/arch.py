"""Architecture of one rung and its exact parameter and FLOP accounting (pure Python, no JAX).

The planner, the trainer (MFU), the TPU compile check and the report all count through this module,
so there is one definition of N and of FLOPs per token. Formulas: docs/flops.md.
"""

from __future__ import annotations

import dataclasses
import math


def pad_vocab(vocab_size: int, multiple: int = 128) -> int:
    """Embedding rows are padded to a multiple of 128 (100,278 -> 100,352), as the reference ladder does."""
    return multiple * math.ceil(vocab_size / multiple)


@dataclasses.dataclass(frozen=True)
class Arch:
    """An OLMo-2-style decoder: RMSNorm, QK-norm, RoPE, SwiGLU, untied embeddings, no biases."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int  # tokenizer vocabulary; embeddings use padded_vocab
    seq_len: int
    mlp_hidden: int = 0  # SwiGLU hidden width; 0 means 4 * d_model (the reference ladder's choice)

    def __post_init__(self):
        if self.mlp_hidden == 0:
            object.__setattr__(self, "mlp_hidden", 4 * self.d_model)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def padded_vocab(self) -> int:
        return pad_vocab(self.vocab_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def n_params_per_layer(a: Arch) -> int:
    attention = 4 * a.d_model * a.d_model  # q, k, v, o projections
    qk_norm = 2 * a.d_model  # OLMo-2 normalises the full q and k vectors
    mlp = 3 * a.d_model * a.mlp_hidden  # gate, up, down
    norms = 2 * a.d_model  # pre-attention and pre-MLP RMSNorm scales
    return attention + qk_norm + mlp + norms


def n_params(a: Arch) -> int:
    """N as the reference ladder counts it: every parameter except the input embedding.

    The untied LM head is a matmul and is counted; the input embedding is a lookup and is not.
    """
    return a.n_layers * n_params_per_layer(a) + a.d_model + a.d_model * a.padded_vocab


def n_params_total(a: Arch) -> int:
    """Every parameter, input embedding included (what memory holds)."""
    return n_params(a) + a.d_model * a.padded_vocab


def attention_flops_per_token(a: Arch) -> int:
    """QK^T and AV over the full (non-causal) context, forward + backward: 12 * layers * d * seq."""
    return 12 * a.n_layers * a.d_model * a.seq_len


def flops_per_token_reference(a: Arch) -> int:
    """The reference (OLMo) ladder's training FLOPs per token: 2N + 4N_total + attention."""
    return 2 * n_params(a) + 4 * n_params_total(a) + attention_flops_per_token(a)


def flops_per_token_6n(a: Arch) -> int:
    """The usual 6N + attention (Kaplan et al. 2020; PaLM appendix B)."""
    return 6 * n_params(a) + attention_flops_per_token(a)


FLOP_COUNTS = {"reference": flops_per_token_reference, "6n": flops_per_token_6n}


def flops_per_token(a: Arch, accounting: str = "6n") -> int:
    return FLOP_COUNTS[accounting](a)


def arch_of(config) -> Arch:
    """The Arch of a train config's `model` section: how the trainer, the compile check, the mesh default and
    the evaluator all count N and FLOPs for a config (no ml_collections import needed: attributes only)."""
    m = config.model
    return Arch(d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, vocab_size=m.vocab_size,
                seq_len=m.seq_len, mlp_hidden=m.mlp_hidden)
