"""Attention implementations (ladder/attention.py) against the dense reference the model used before issue 15:
forward and gradients with packed documents and padding, fp32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladder import attention

B, L, H, K = 2, 256, 2, 32


def reference(q, k, v, segment_ids):
    """The model's attention before issue 15: [B, H, L, L] fp32 scores under a materialised [B, 1, L, L] mask."""
    scores = jnp.einsum("bqhk,bthk->bhqt", q, k).astype(jnp.float32) / jnp.sqrt(q.shape[-1])
    same_doc = segment_ids[:, :, None] == segment_ids[:, None, :]
    mask = (jnp.tril(jnp.ones((q.shape[1],) * 2, bool))[None] & same_doc)[:, None]
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    return jnp.einsum("bhqt,bthk->bqhk", jax.nn.softmax(scores, axis=-1).astype(v.dtype), v)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(B, L, H, K)), jnp.float32) for _ in range(3))
    seg = np.ones((B, L), np.int32)
    seg[0, 100:], seg[0, 200:], seg[1, 50:] = 2, 0, 3  # three documents then padding; two documents
    return q, k, v, jnp.asarray(seg)


def value_and_grads(fn, q, k, v, seg):
    probe = jnp.cos(jnp.arange(B * L * H * K, dtype=jnp.float32).reshape(B, L, H, K))  # a generic cotangent

    def f(q, k, v):
        return (fn(q, k, v, seg) * probe).sum()

    return jax.jit(fn)(q, k, v, seg), jax.jit(jax.grad(f, (0, 1, 2)))(q, k, v)


IMPLEMENTATIONS = {
    "xla (4 query blocks)": lambda q, k, v, s: attention.blockwise_attention(q, k, v, s, block_q=64),
    "xla (one block)": attention.blockwise_attention,
    "dot_product_attention masking (the cudnn call, xla backend)": lambda q, k, v, s: attention.fused_attention(
        q, k, v, s, "xla"),
    "splash (interpret, 2x2 tiles)": lambda q, k, v, s: attention.splash_attention(q, k, v, s, interpret=True),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "splash" in n else n
                                  for n in IMPLEMENTATIONS])  # splash in interpret mode: ~25 s
def test_matches_reference_forward_and_gradients(name, inputs, monkeypatch):
    monkeypatch.setattr(attention, "SPLASH_BLOCK", 128)  # 2 x 2 tiles: the causal block-sparse path runs
    out_ref, grads_ref = value_and_grads(reference, *inputs)
    out, grads = value_and_grads(IMPLEMENTATIONS[name], *inputs)
    # Measured (2026-11-30): forward <= 7e-7, gradients <= 5e-6 absolute (values O(1), gradients O(10)).
    np.testing.assert_allclose(out, out_ref, atol=2e-6, rtol=1e-5)
    for g, g_ref, what in zip(grads, grads_ref, "qkv"):
        np.testing.assert_allclose(g, g_ref, atol=2e-5, rtol=1e-5, err_msg=f"d{what}")


def test_documents_do_not_see_each_other(inputs):
    """Changing document 1 (positions < 100 of row 0) leaves every later document's output bit-identical."""
    q, k, v, seg = inputs
    out = attention.blockwise_attention(q, k, v, seg, block_q=64)
    out2 = attention.blockwise_attention(q, k.at[0, :100].add(1.0), v.at[0, :100].add(1.0), seg, block_q=64)
    np.testing.assert_array_equal(out[0, 100:], out2[0, 100:])
    assert not np.allclose(out[0, :100], out2[0, :100])


def test_auto_picks_the_kernel_per_platform():
    assert attention.resolve("auto", "tpu", 4096) == "splash"
    assert attention.resolve("auto", "tpu", 100) == "xla"  # splash tiles need multiples of 128
    assert attention.resolve("auto", "gpu", 4096) == "cudnn"
    assert attention.resolve("auto", "cpu", 4096) == "xla"
    assert attention.resolve("xla", "tpu", 4096) == "xla"


def test_splash_flops_count_the_causal_tiles():
    # 4096 / 512 = 8 tiles a side, 36 on or below the diagonal; 9 tile matmuls (11 with the recomputed forward).
    assert attention.splash_flops(1, 1, 4096, 64, recompute_forward=False) == 36 * 9 * 2 * 512 * 512 * 64
    assert attention.splash_flops(2, 3, 4096, 64, recompute_forward=True) == 6 * 36 * 11 * 2 * 512 * 512 * 64
