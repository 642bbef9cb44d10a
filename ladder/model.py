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

from ladder import attention as attention_lib
from ladder import loss as loss_lib
from ladder.arch import Arch

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Activation layout between blocks; ladder/sharding.py maps these names too.
ACT_BxLxD = ("act_batch", "act_length", "act_embed")
# model.remat -> what each layer keeps for the backward pass (jax.checkpoint_policies): none keeps everything
# (no recompute), save_dots keeps the outputs of the weight matmuls (recomputes attention and elementwise
# work), full keeps only the layer's input (recomputes the whole layer).
REMAT_POLICIES = {"none": None, "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
                  "full": jax.checkpoint_policies.nothing_saveable}


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
    attention: str = "xla"  # a resolved ladder.attention implementation
    interpret: bool = False  # splash off TPU: Pallas interpret mode

    @nn.compact
    def __call__(self, x_BxLxD, segment_ids_BxL, angles):
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
        attn_BxLxHxK = attention_lib.attend(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, self.attention,
                                            self.interpret)
        attn_BxLxD = linear(D, ("heads", "embed"), "o")(attn_BxLxHxK.reshape(B, L, D))
        h_BxLxD = x_BxLxD + norm("attn_norm")(attn_BxLxD)
        h_BxLxD = nn.with_logical_constraint(h_BxLxD, ACT_BxLxD)

        # SwiGLU MLP.
        gate_BxLxF = linear(F, ("embed", "mlp"), "gate")(h_BxLxD)
        up_BxLxF = linear(F, ("embed", "mlp"), "up")(h_BxLxD)
        mlp_BxLxD = linear(D, ("mlp", "embed"), "down")(jax.nn.silu(gate_BxLxF) * up_BxLxF)
        out_BxLxD = h_BxLxD + norm("mlp_norm")(mlp_BxLxD)
        return nn.with_logical_constraint(out_BxLxD, ACT_BxLxD), None


class LMHead(nn.Module):
    """The output projection [D, V] ("lm_head/kernel"): logits for evaluation, or the chunked training loss
    (ladder/loss.py), which never forms the whole [B, L, V] float32 logits."""

    d_model: int
    vocab: int
    init_std: float
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    def setup(self):
        self.kernel = self.param("kernel", nn.with_logical_partitioning(_init(self.init_std), ("embed", "vocab")),
                                 (self.d_model, self.vocab), self.param_dtype)

    def __call__(self, x_BxLxD):
        return jnp.einsum("...d,df->...f", x_BxLxD.astype(self.dtype), self.kernel.astype(self.dtype))

    def loss_sums(self, x_BxLxD, targets_BxL, weights_BxL, chunk: int):
        constrain = lambda x: nn.with_logical_constraint(x, (None, "act_batch", None, "act_embed"))  # noqa: E731
        return loss_lib.chunked_loss_sums(x_BxLxD.astype(self.dtype), self.kernel, targets_BxL, weights_BxL, chunk,
                                          constrain)


class Transformer(nn.Module):
    """Token ids -> float32 logits over the padded vocabulary; or, given `targets` and `weights`, the loss
    sums (cross-entropy, logsumexp^2) over weighted tokens without forming the logits (ladder/loss.py).
    Apply with `segment_ids` and `positions`."""

    arch: Arch
    dtype: str = "float32"  # compute dtype; "bfloat16" for mixed precision
    param_dtype: str = "float32"  # master-parameter dtype
    rope_theta: float = 500_000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    scan_layers: bool = True  # one compiled layer body (fast compiles); params get a leading "layers" axis
    remat: str = "none"  # REMAT_POLICIES: what each layer keeps for the backward pass
    attention: str = "xla"  # a resolved ladder.attention implementation (not "auto")
    interpret: bool = False  # splash attention off TPU (tests): Pallas interpret mode
    loss_chunk: int = loss_lib.DEFAULT_CHUNK  # sequence positions per loss chunk

    @nn.compact
    def __call__(self, inputs_BxL, segment_ids_BxL, positions_BxL, targets_BxL=None, weights_BxL=None):
        a = self.arch
        dt, pdt = DTYPES[self.dtype], DTYPES[self.param_dtype]
        embedding_VxD = self.param("embedding", nn.with_logical_partitioning(_init(self.init_std), ("vocab", "embed")),
                                   (a.padded_vocab, a.d_model), pdt)
        x_BxLxD = jnp.take(embedding_VxD, inputs_BxL, axis=0).astype(dt)
        x_BxLxD = nn.with_logical_constraint(x_BxLxD, ACT_BxLxD)

        block = Block
        if self.remat != "none":
            block = nn.remat(block, prevent_cse=not self.scan_layers, policy=REMAT_POLICIES[self.remat])
        kwargs = dict(arch=a, dtype=dt, param_dtype=pdt, norm_eps=self.norm_eps, init_std=self.init_std,
                      attention=self.attention, interpret=self.interpret)
        angles = rope_angles(positions_BxL, a.head_dim, self.rope_theta)
        if self.scan_layers:
            stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                            in_axes=(nn.broadcast, nn.broadcast), length=a.n_layers,
                            metadata_params={nn.PARTITION_NAME: "layers"})
            x_BxLxD, _ = stack(**kwargs, name="layers")(x_BxLxD, segment_ids_BxL, angles)
        else:
            for i in range(a.n_layers):
                x_BxLxD, _ = block(**kwargs, name=f"layer_{i}")(x_BxLxD, segment_ids_BxL, angles)

        x_BxLxD = RMSNorm(self.norm_eps, dt, pdt, name="final_norm")(x_BxLxD)
        head = LMHead(a.d_model, a.padded_vocab, self.init_std, dt, pdt, name="lm_head")
        if targets_BxL is None:
            return head(x_BxLxD).astype(jnp.float32)
        return head.loss_sums(x_BxLxD, targets_BxL, weights_BxL, self.loss_chunk)


def make_model(model_cfg, arch: Arch, platform: str = "cpu") -> Transformer:
    """The model a train config's `model` section describes, for devices of `platform` (which decides what
    model.attention=auto means, and whether splash runs in interpret mode)."""
    attention = attention_lib.resolve(model_cfg.attention, platform, arch.seq_len)
    return Transformer(arch=arch, dtype=model_cfg.dtype, param_dtype=model_cfg.param_dtype,
                       rope_theta=model_cfg.rope_theta, norm_eps=model_cfg.norm_eps,
                       init_std=model_cfg.init_std, scan_layers=model_cfg.scan_layers, remat=model_cfg.remat,
                       attention=attention, interpret=attention == "splash" and platform != "tpu",
                       loss_chunk=model_cfg.loss_chunk)


def count_params(params) -> tuple[int, int]:
    """(N as ladder.arch.n_params counts it, total): N leaves out the input embedding."""
    total = sum(x.size for x in jax.tree.leaves(params))
    return total - params["embedding"].size, total
