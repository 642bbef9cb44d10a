"""Causal self-attention over packed documents, by one of three implementations (`model.attention`).

Every implementation computes the same function: softmax(q k^T / sqrt(K)) v with query i seeing key j only
when j <= i and both belong to the same packed document (segment id; 0 = padding, which sees only padding).
They differ in what they hold in memory, which is what decides how many chips a rung needs (issue 15):

  xla     plain JAX, blockwise over queries: each block of BLOCK_Q queries forms its [B, H, BLOCK_Q, L] scores
          and mask, and is recomputed in the backward pass (jax.checkpoint), so neither the [B, H, L, L]
          scores nor a [B, 1, L, L] mask ever exist whole. At L <= BLOCK_Q it is the dense computation.
  splash  the Pallas TPU splash-attention kernel (flash attention with block-sparse causal masking and
          segment ids), run per device under shard_map over the batch (data x fsdp) and heads (tensor).
          Off TPU it runs in Pallas interpret mode (slow; for numerics tests only).
  cudnn   jax.nn.dot_product_attention(implementation="cudnn"): cuDNN's fused kernel on NVIDIA GPUs. Document
          masking goes in as a [B, 1, L, L] bool mask (cuDNN has no segment-id input in jax 0.10.2; its
          packed-sequence layout needs ragged offsets), so this path still holds that mask, but not the
          fp32 scores.
  auto    splash on TPU, cudnn on GPU, xla elsewhere (resolve()).

Shapes: q, k, v are [B, L, H, K] (batch, length, heads, head width); segment ids [B, L] int32.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from ladder.errors import LadderError

IMPLEMENTATIONS = ("auto", "xla", "splash", "cudnn")
BLOCK_Q = 512  # xla path: queries per block (the [B, H, BLOCK_Q, L] fp32 scores are its working set)
SPLASH_BLOCK = 512  # splash: q and kv tile (MaxText's default for v5); capped at the sequence length
SPLASH_ALIGN = 128  # splash tiles must be multiples of the TPU lane width
BATCH_AXES = ("data", "fsdp")  # ladder.sharding's batch axes; heads split over "tensor"


def resolve(name: str, platform: str, seq_len: int) -> str:
    """The implementation `name` means on `platform` ("tpu", "gpu"/"cuda", "cpu"): auto picks the kernel
    (splash only where the sequence tiles into 128-lane blocks; xla otherwise)."""
    if name == "cudnn" and platform not in ("gpu", "cuda"):  # was jax's "cuDNN is not detected" traceback
        raise LadderError(f"model.attention: 'cudnn' is cuDNN's kernel for NVIDIA GPUs and these devices are "
                          f"{platform}; use auto (xla here) or xla")
    if name != "auto":
        return name
    if platform == "tpu":
        return "splash" if seq_len % SPLASH_ALIGN == 0 else "xla"
    return "cudnn" if platform in ("gpu", "cuda") else "xla"


def attend(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, implementation: str, interpret: bool = False):
    """Attention output [B, L, H, K] in q's dtype. `implementation` is resolved (not auto)."""
    if implementation == "xla":
        return blockwise_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL)
    if implementation == "cudnn":
        return fused_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, "cudnn")
    if implementation == "splash":
        return splash_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, interpret=interpret)
    raise ValueError(f"attention implementation {implementation!r} is not resolved")


# ------------------------------------------------------------------------------------------------- xla


def _dense_block(q_BxCxHxK, k_BxLxHxK, v_BxLxHxK, q_segment_BxC, kv_segment_BxL, q_offset):
    """Exact attention of C queries (starting at position q_offset) against all L keys, fp32 softmax."""
    C, L, K = q_BxCxHxK.shape[1], k_BxLxHxK.shape[1], q_BxCxHxK.shape[-1]
    scores_BxHxCxL = jnp.einsum("bqhk,bthk->bhqt", q_BxCxHxK, k_BxLxHxK).astype(jnp.float32) / jnp.sqrt(K)
    causal_CxL = (q_offset + jnp.arange(C))[:, None] >= jnp.arange(L)[None, :]
    same_doc_BxCxL = q_segment_BxC[:, :, None] == kv_segment_BxL[:, None, :]
    scores_BxHxCxL = jnp.where((causal_CxL[None] & same_doc_BxCxL)[:, None], scores_BxHxCxL,
                               jnp.finfo(jnp.float32).min)
    probs_BxHxCxL = jax.nn.softmax(scores_BxHxCxL, axis=-1).astype(v_BxLxHxK.dtype)
    return jnp.einsum("bhqt,bthk->bqhk", probs_BxHxCxL, v_BxLxHxK)


def blockwise_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, block_q: int = BLOCK_Q):
    """The xla path: query blocks in a scan whose body is rematerialised, so only one block's scores live."""
    B, L, H, K = q_BxLxHxK.shape
    if L <= block_q or L % block_q:
        return _dense_block(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, segment_ids_BxL, 0)
    n = L // block_q
    q_NxBxCxHxK = q_BxLxHxK.reshape(B, n, block_q, H, K).swapaxes(0, 1)
    seg_NxBxC = segment_ids_BxL.reshape(B, n, block_q).swapaxes(0, 1)

    @jax.checkpoint
    def one_block(i, q_BxCxHxK, seg_BxC):
        return _dense_block(q_BxCxHxK, k_BxLxHxK, v_BxLxHxK, seg_BxC, segment_ids_BxL, i * block_q)

    def body(_, xs):
        return None, one_block(*xs)

    _, out_NxBxCxHxK = jax.lax.scan(body, None, (jnp.arange(n), q_NxBxCxHxK, seg_NxBxC))
    return out_NxBxCxHxK.swapaxes(0, 1).reshape(B, L, H, K)


# ----------------------------------------------------------------------------------------------- cudnn


def fused_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, implementation: str | None):
    """jax.nn.dot_product_attention with causal + document masking (implementation "cudnn" on GPU; tests
    run the same call with "xla" to check the masking on CPU)."""
    same_doc_Bx1xLxL = (segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :])[:, None]
    return jax.nn.dot_product_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, mask=same_doc_Bx1xLxL, is_causal=True,
                                        scale=1.0 / math.sqrt(q_BxLxHxK.shape[-1]), implementation=implementation)


# ---------------------------------------------------------------------------------------------- splash


def splash_block(seq_len: int) -> int:
    return min(SPLASH_BLOCK, seq_len)


def _splash_kernel(heads: int, seq_len: int, interpret: bool):
    """Built per trace (not cached: the kernel holds jnp arrays that would leak from one trace into the next)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    b = splash_block(seq_len)
    blocks = sk.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b,
                           block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
    mask = sm.MultiHeadMask([sm.CausalMask((seq_len, seq_len)) for _ in range(heads)])
    return sk.make_splash_mha(mask, block_sizes=blocks, head_shards=1, q_seq_shards=1, interpret=interpret)


def _splash_local(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, interpret: bool):
    """One device's rows and heads: the kernel takes [H, L, K] per sequence, so vmap over the batch."""
    from jax.experimental.pallas.ops.tpu.splash_attention.splash_attention_kernel import SegmentIds

    B, L, H, K = q_BxLxHxK.shape
    kernel = _splash_kernel(H, L, interpret)
    scale = 1.0 / math.sqrt(K)

    def one(q_LxHxK, k_LxHxK, v_LxHxK, seg_L):
        q_HxLxK = (q_LxHxK.astype(jnp.float32) * scale).astype(q_LxHxK.dtype).swapaxes(0, 1)
        out_HxLxK = kernel(q_HxLxK, k_LxHxK.swapaxes(0, 1), v_LxHxK.swapaxes(0, 1), SegmentIds(q=seg_L, kv=seg_L))
        return out_HxLxK.swapaxes(0, 1)

    return jax.vmap(one)(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL.astype(jnp.int32))


def splash_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL, interpret: bool = False):
    """The splash kernel per device: shard_map over the mesh in context (batch over data x fsdp, heads over
    tensor); without a mesh (one device, tests) it runs directly."""
    local = functools.partial(_splash_local, interpret=interpret)
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return local(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL)
    batch = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    heads = "tensor" if "tensor" in mesh.axis_names else None
    qkv, seg = P(batch, None, heads, None), P(batch, None)
    return jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, seg), out_specs=qkv, check_vma=False)(
        q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL)


def splash_flops(batch: int, heads: int, seq_len: int, head_dim: int, *, recompute_forward: bool) -> float:
    """FLOPs the splash kernels execute for one attention layer's forward and backward (all devices).

    XLA's cost analysis cannot see inside the kernel (a custom call), so ladder compile adds this. Counted
    from the kernel's structure: causal block sparsity computes n (n + 1) / 2 of the n^2 (q, kv) tiles
    (n = seq_len / tile); per tile, 2 bq bkv K FLOPs per matmul: forward 2 (q k^T, p v), dq kernel 3
    (q k^T, dO v^T, dS k), dkv kernel 4 (q k^T, p^T dO, dO v^T, dS^T q); `recompute_forward` (remat) runs the
    forward kernel once more.
    """
    b = splash_block(seq_len)
    n = seq_len // b
    tiles = n * (n + 1) // 2
    matmuls = 2 + 3 + 4 + (2 if recompute_forward else 0)
    return float(batch * heads * tiles * matmuls * 2 * b * b * head_dim)
