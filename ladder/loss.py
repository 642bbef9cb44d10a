"""The training objective, computed in sequence chunks so the [B, L, V] float32 logits never exist whole.

Objective (PaLM's, as before): mean over real tokens (segment id > 0) of cross-entropy, plus
`z_loss_coef * mean(logsumexp(logits)^2)`. At the OLMo vocabulary (100,352 padded) the full fp32 logits of
one device's 8 x 4096 tokens are 12 GiB, and their gradient as much again; here the head's matmul, the
log-sum-exp and the target logit are formed for CHUNK positions of every row at a time, inside a scan whose
body is rematerialised (jax.checkpoint), so the backward pass recomputes one chunk's logits at a time and
the largest loss buffer is [B, chunk, V]. The gradient of the head's kernel accumulates across chunks in
the scan's transpose. Chunks split the sequence, not the batch, so each device keeps its own rows.

The functions return SUMS over tokens, not means: the trainer divides by the real-token count of the whole
global batch, which makes gradient accumulation over microbatches (train.microbatches) exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_CHUNK = 256  # sequence positions per chunk (model.loss_chunk)
# The FLOPs probes of tests/test_aot.py set this: XLA's cost analysis counts a loop body once, so the probes unroll the
# chunk loop (same work, every chunk counted). Read at trace time; nothing else changes it.
UNROLL_FOR_COST_ANALYSIS = False


def chunk_size(seq_len: int, chunk: int) -> int:
    """The largest divisor of seq_len that is <= chunk (chunk <= 0: the whole sequence)."""
    if chunk <= 0 or chunk >= seq_len:
        return seq_len
    return max(c for c in range(1, chunk + 1) if seq_len % c == 0)


def token_weights(segment_ids_BxL):
    """1.0 for real tokens, 0.0 for padding (segment 0)."""
    return (segment_ids_BxL > 0).astype(jnp.float32)


def _chunk_sums(x_BxCxD, w_DxV, targets_BxC, weights_BxC):
    """(sum of cross-entropy, sum of logsumexp^2) over one chunk's weighted tokens; logits in float32."""
    logits_BxCxV = jnp.einsum("bcd,dv->bcv", x_BxCxD, w_DxV.astype(x_BxCxD.dtype)).astype(jnp.float32)
    lse_BxC = jax.nn.logsumexp(logits_BxCxV, axis=-1)
    target_BxC = jnp.take_along_axis(logits_BxCxV, targets_BxC[..., None], axis=-1)[..., 0]
    return ((lse_BxC - target_BxC) * weights_BxC).sum(), (jnp.square(lse_BxC) * weights_BxC).sum()


def chunked_loss_sums(x_BxLxD, w_DxV, targets_BxL, weights_BxL, chunk: int = DEFAULT_CHUNK, constrain=None):
    """(cross-entropy sum, logsumexp^2 sum) over weighted tokens of hidden states x and head kernel w.

    `constrain` (optional) is applied to the [n_chunks, B, chunk, D] stacked hidden states: the model uses it
    to keep the batch split over the data axes and the chunk whole on each device.
    """
    B, L, D = x_BxLxD.shape
    c = chunk_size(L, chunk)
    if c == L:
        return _chunk_sums(x_BxLxD, w_DxV, targets_BxL, weights_BxL)
    n = L // c
    x_NxBxCxD = x_BxLxD.reshape(B, n, c, D).swapaxes(0, 1)
    if constrain is not None:
        x_NxBxCxD = constrain(x_NxBxCxD)
    targets_NxBxC = targets_BxL.reshape(B, n, c).swapaxes(0, 1)
    weights_NxBxC = weights_BxL.reshape(B, n, c).swapaxes(0, 1)
    one_chunk = jax.checkpoint(lambda x, t, w: _chunk_sums(x, w_DxV, t, w))

    def body(sums, xs):
        ce, z = one_chunk(*xs)
        return (sums[0] + ce, sums[1] + z), None

    zero = jnp.zeros((), jnp.float32)
    (ce_sum, z_sum), _ = jax.lax.scan(body, (zero, zero), (x_NxBxCxD, targets_NxBxC, weights_NxBxC),
                                      unroll=UNROLL_FOR_COST_ANALYSIS)
    return ce_sum, z_sum


def loss_from_logits(logits_BxLxV, targets_BxL, segment_ids_BxL, z_loss_coef: float = 0.0):
    """(cross-entropy, z-loss term), each a mean over real tokens, from float32 logits: the definition the
    chunked computation must equal (tests), and what evaluation code holding logits uses."""
    weights_BxL = token_weights(segment_ids_BxL)
    n_tokens = jnp.maximum(weights_BxL.sum(), 1.0)
    lse_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
    target_logit_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    ce = ((lse_BxL - target_logit_BxL) * weights_BxL).sum() / n_tokens
    z = z_loss_coef * (jnp.square(lse_BxL) * weights_BxL).sum() / n_tokens
    return ce, z
