"""The OLMo-2-style decoder every rung trains (flax.linen; why linen: docs/model.md).

RMSNorm, QK-norm over the full query/key vectors, RoPE, SwiGLU MLP, untied input and output embeddings, no
biases, and OLMo-2's reordered norms (each sublayer's *output* is normalised before the residual add).
Shapes ride in the names (nanodo style): B batch, L sequence, D model width, H heads, K head width,
F MLP width, V padded vocabulary. Every parameter carries logical axis names ("vocab", "embed", "heads",
"mlp", "norm", and "layers" when the layers are scanned) that ladder/sharding.py maps to mesh axes.
The parameter count (minus the input embedding) equals ladder.arch.n_params exactly (tests/test_model.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from ladder.arch import Arch

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Activation layout between blocks; ladder/sharding.py maps these names too.
ACT_BxLxD = ("act_batch", "act_length", "act_embed")


def _init(std: float):
    """OLMo-2 initialisation: normal(0, std) truncated at 3 standard deviations, for every matrix."""
    return nn.initializers.truncated_normal(std, lower=-3.0, upper=3.0)


class RMSNorm(nn.Module):
    eps: float
    dtype: jnp.dtype
    param_dtype: jnp.dtype
    axis: str = "norm"  # logical name of the scale; "heads" for QK-norm so it shards like q and k

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis,)),
                           (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (y * scale.astype(jnp.float32)).astype(self.dtype)


class Linear(nn.Module):
    """A bias-free projection of the last axis, kernel [in, out] with logical names `axes`."""

    features: int
    axes: tuple[str, str]
    init_std: float
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.with_logical_partitioning(_init(self.init_std), self.axes),
                       (x.shape[-1], self.features), self.param_dtype)
        return jnp.einsum("...d,df->...f", x.astype(self.dtype), w.astype(self.dtype))


def rope_angles(positions_BxL, head_dim: int, theta: float):
    """(sin, cos) of the rotary angles, [B, L, 1, K/2] float32; computed once and shared by every layer."""
    inv_freq_K2 = theta ** (-jnp.arange(0, head_dim // 2, dtype=jnp.float32) / (head_dim // 2))
    angle_BxLx1xK2 = positions_BxL[:, :, None, None].astype(jnp.float32) * inv_freq_K2
    return jnp.sin(angle_BxLx1xK2), jnp.cos(angle_BxLx1xK2)


def attention_mask(segment_ids_BxL):
    """[B, 1, L, L] bool: causal, and never across packed documents (segment 0 = padding sees only padding)."""
    L = segment_ids_BxL.shape[1]
    causal_LxL = jnp.tril(jnp.ones((L, L), bool))
    same_doc_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    return (causal_LxL[None] & same_doc_BxLxL)[:, None]


def rope(x_BxLxHxK, angles):
    """Rotary embedding, rotate-half (GPT-NeoX/OLMo) layout, in float32."""
    sin, cos = angles
    x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxLxHxK.dtype)


class Block(nn.Module):
    """One decoder layer: x + norm(attn(x)), then h + norm(mlp(h)) (OLMo-2's reordered norm)."""

    arch: Arch
    dtype: jnp.dtype
    param_dtype: jnp.dtype
    norm_eps: float
    init_std: float

    @nn.compact
    def __call__(self, x_BxLxD, mask_Bx1xLxL, angles):
        a, dt, pdt = self.arch, self.dtype, self.param_dtype
        D, H, K, F = a.d_model, a.n_heads, a.head_dim, a.mlp_hidden
        B, L = x_BxLxD.shape[:2]
        linear = lambda features, axes, name: Linear(features, axes, self.init_std, dt, pdt, name=name)  # noqa: E731
        norm = lambda name, axis="norm": RMSNorm(self.norm_eps, dt, pdt, axis, name=name)  # noqa: E731

        # Attention. QK-norm normalises the whole D-wide query and key, as OLMo-2 does.
        q_BxLxD = norm("q_norm", "heads")(linear(D, ("embed", "heads"), "q")(x_BxLxD))
        k_BxLxD = norm("k_norm", "heads")(linear(D, ("embed", "heads"), "k")(x_BxLxD))
        v_BxLxD = linear(D, ("embed", "heads"), "v")(x_BxLxD)
        q_BxLxHxK = rope(q_BxLxD.reshape(B, L, H, K), angles)
        k_BxLxHxK = rope(k_BxLxD.reshape(B, L, H, K), angles)
        v_BxLxHxK = v_BxLxD.reshape(B, L, H, K)
        scores_BxHxLxL = jnp.einsum("bqhk,bthk->bhqt", q_BxLxHxK, k_BxLxHxK).astype(jnp.float32) / jnp.sqrt(K)
        scores_BxHxLxL = jnp.where(mask_Bx1xLxL, scores_BxHxLxL, jnp.finfo(jnp.float32).min)
        probs_BxHxLxL = jax.nn.softmax(scores_BxHxLxL, axis=-1).astype(dt)
        attn_BxLxHxK = jnp.einsum("bhqt,bthk->bqhk", probs_BxHxLxL, v_BxLxHxK)
        attn_BxLxD = linear(D, ("heads", "embed"), "o")(attn_BxLxHxK.reshape(B, L, D))
        h_BxLxD = x_BxLxD + norm("attn_norm")(attn_BxLxD)
        h_BxLxD = nn.with_logical_constraint(h_BxLxD, ACT_BxLxD)

        # SwiGLU MLP.
        gate_BxLxF = linear(F, ("embed", "mlp"), "gate")(h_BxLxD)
        up_BxLxF = linear(F, ("embed", "mlp"), "up")(h_BxLxD)
        mlp_BxLxD = linear(D, ("mlp", "embed"), "down")(jax.nn.silu(gate_BxLxF) * up_BxLxF)
        out_BxLxD = h_BxLxD + norm("mlp_norm")(mlp_BxLxD)
        return nn.with_logical_constraint(out_BxLxD, ACT_BxLxD), None


class Transformer(nn.Module):
    """Token ids -> logits over the padded vocabulary (float32). Apply with `segment_ids` and `positions`."""

    arch: Arch
    dtype: str = "float32"  # compute dtype; "bfloat16" for mixed precision
    param_dtype: str = "float32"  # master-parameter dtype
    rope_theta: float = 500_000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    scan_layers: bool = True  # one compiled layer body (fast compiles); params get a leading "layers" axis
    remat: bool = False  # recompute each layer's activations in the backward pass (saves memory)

    @nn.compact
    def __call__(self, inputs_BxL, segment_ids_BxL, positions_BxL):
        a = self.arch
        dt, pdt = DTYPES[self.dtype], DTYPES[self.param_dtype]
        embedding_VxD = self.param("embedding", nn.with_logical_partitioning(_init(self.init_std), ("vocab", "embed")),
                                   (a.padded_vocab, a.d_model), pdt)
        x_BxLxD = jnp.take(embedding_VxD, inputs_BxL, axis=0).astype(dt)
        x_BxLxD = nn.with_logical_constraint(x_BxLxD, ACT_BxLxD)

        block = Block
        if self.remat:
            block = nn.remat(block, prevent_cse=not self.scan_layers, policy=jax.checkpoint_policies.nothing_saveable)
        kwargs = dict(arch=a, dtype=dt, param_dtype=pdt, norm_eps=self.norm_eps, init_std=self.init_std)
        mask_Bx1xLxL = attention_mask(segment_ids_BxL)
        angles = rope_angles(positions_BxL, a.head_dim, self.rope_theta)
        if self.scan_layers:
            stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                            in_axes=(nn.broadcast, nn.broadcast), length=a.n_layers,
                            metadata_params={nn.PARTITION_NAME: "layers"})
            x_BxLxD, _ = stack(**kwargs, name="layers")(x_BxLxD, mask_Bx1xLxL, angles)
        else:
            for i in range(a.n_layers):
                x_BxLxD, _ = block(**kwargs, name=f"layer_{i}")(x_BxLxD, mask_Bx1xLxL, angles)

        x_BxLxD = RMSNorm(self.norm_eps, dt, pdt, name="final_norm")(x_BxLxD)
        logits_BxLxV = Linear(a.padded_vocab, ("embed", "vocab"), self.init_std, dt, pdt, name="lm_head")(x_BxLxD)
        return logits_BxLxV.astype(jnp.float32)


def make_model(model_cfg, arch: Arch) -> Transformer:
    """The model a train config's `model` section describes."""
    return Transformer(arch=arch, dtype=model_cfg.dtype, param_dtype=model_cfg.param_dtype,
                       rope_theta=model_cfg.rope_theta, norm_eps=model_cfg.norm_eps,
                       init_std=model_cfg.init_std, scan_layers=model_cfg.scan_layers, remat=model_cfg.remat)


def loss_fn(logits_BxLxV, targets_BxL, segment_ids_BxL, z_loss_coef: float = 0.0):
    """(cross-entropy, z-loss term), each a mean over real tokens (segment_ids > 0).

    The z-loss term is `z_loss_coef * mean(logsumexp(logits)^2)` (PaLM), already scaled: the objective is
    their sum. Logits are float32.
    """
    weights_BxL = (segment_ids_BxL > 0).astype(jnp.float32)
    n_tokens = jnp.maximum(weights_BxL.sum(), 1.0)
    lse_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
    target_logit_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    ce = ((lse_BxL - target_logit_BxL) * weights_BxL).sum() / n_tokens
    z = z_loss_coef * (jnp.square(lse_BxL) * weights_BxL).sum() / n_tokens
    return ce, z


def count_params(params) -> tuple[int, int]:
    """(N as ladder.arch.n_params counts it, total): N leaves out the input embedding."""
    total = sum(x.size for x in jax.tree.leaves(params))
    return total - params["embedding"].size, total
