"""N and FLOPs per token against the reference ladder's published figures (../shared/README.md)."""

import pytest

from ladder.arch import Arch, flops_per_token_6n, flops_per_token_reference, n_params, pad_vocab

VOCAB = 100_278

# (d_model, layers, heads, mlp_hidden, N, reference FLOPs/token at seq 4096 or None)
PUBLISHED = [
    (768, 12, 12, 0, 190_354_176, 1_903_391_232),
    (1024, 16, 16, 0, 371_262_464, 3_443_922_944),
    (1536, 16, 16, 0, 758_220_288, 6_373_843_968),
    (2048, 16, 16, 0, 1_279_395_840, 10_109_071_360),
    (3328, 16, 16, 0, 3_169_537_280, None),
    (4096, 32, 32, 11_008, 6_887_575_552, 49_412_071_424),
    (5120, 40, 40, 13_824, 13_202_396_160, 91_335_915_520),
]


@pytest.mark.parametrize("d,layers,heads,hidden,n,flops", PUBLISHED)
def test_published_counts(d, layers, heads, hidden, n, flops):
    a = Arch(d_model=d, n_layers=layers, n_heads=heads, vocab_size=VOCAB, seq_len=4096, mlp_hidden=hidden)
    assert n_params(a) == n
    if flops is not None:
        assert flops_per_token_reference(a) == flops


def test_6n_accounting():
    a = Arch(d_model=768, n_layers=12, n_heads=12, vocab_size=VOCAB, seq_len=4096)
    assert flops_per_token_6n(a) == 6 * 190_354_176 + 12 * 12 * 768 * 4096


def test_vocab_padding():
    assert pad_vocab(100_278) == 100_352
    assert pad_vocab(256) == 256
    assert pad_vocab(259) == 384
