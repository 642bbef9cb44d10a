"""A preset target's FLOPs/token come from its known architecture (the planner's accounting), not from the
ladder; FPT flags only a target whose FLOPs/token were extrapolated."""

import numpy as np
import pytest

from ladder import cli
from ladder.commands.common import plan_targets, resolve_targets
from ladder.laws.predict import predict
from ladder.plan import preset_flops_per_token
from ladder.results import columns

# published training FLOPs/token of the OLMo targets at sequence length 4096 (Bhagia et al. 2024)
PUBLISHED = {"7b-4t": 49_412_071_424, "13b-5t": 91_335_915_520}


def test_preset_targets_carry_the_published_flops_per_token():
    got = resolve_targets(["7b-4t", "13B-5T", "3b-60b", "x=7e9:4e12"])
    assert {k: got[k][2] for k in ("7b-4t", "13b-5t")} == PUBLISHED  # exact, not within rounding
    assert len(got["3b-60b"]) == 2 and len(got["x"]) == 2  # shape guessed by arch search, or unknown
    assert resolve_targets(["7b-4t=6.9e9:3.9e12:4e10"])["7b-4t"][2] == 4e10  # NAME=N:D:F as written


def test_a_plans_preset_targets_read_as_their_flags_do(tmp_path):
    assert cli.main(["plan", "--target", "7b-4t", "--target", "big=3e9:6e10", "--fraction", "0.01",
                     "-o", str(tmp_path / "p.json")]) == 0
    from_plan = plan_targets(tmp_path / "p.json")
    assert from_plan["7b-4t"] == resolve_targets(["7b-4t"])["7b-4t"] and len(from_plan["big"]) == 2
    # a target only named like a preset, planned with another shape, is not the preset
    assert preset_flops_per_token("7b-4t", {"d_model": 1024}) is None
    assert preset_flops_per_token("7b-4t") == PUBLISHED["7b-4t"]


def test_fpt_flags_only_the_target_whose_flops_were_extrapolated():
    rows = []
    for n in (1e8, 2e8, 4e8):
        fpt = 6 * n + 2000 * n ** 0.7
        for c in (1, 2, 5):
            for j, d in enumerate(np.r_[np.linspace(2 * n * c, 16 * n * c, 3), np.full(5, 20 * n * c)]):
                loss = 0.6 + np.exp(9.0) * (d * fpt) ** -0.18
                rows.append({"run": f"{n:.0f}-{c}", "n": n, "d": d, "step": j, "task": "t", "loss": loss,
                             "acc": 0.25 + 0.5 / (1 + np.exp(4 * (loss - 1.5))), "flops": d * fpt})
    N, D = 7e9, 2e12
    pred = predict(columns(rows), {"given": (N, D, 6 * N + 2000 * N ** 0.7), "guessed": (N, D)},
                   method="compute", n_bootstrap=0)
    assert "FPT" not in pred.results["given"]["t"]["flags"]
    assert "FPT" in pred.results["guessed"]["t"]["flags"]
    # the law's own F and the one extrapolated from the ladder (exact here: F follows 6N + k N^g) agree
    assert pred.results["given"]["t"]["acc"] == pytest.approx(pred.results["guessed"]["t"]["acc"], abs=1e-6)
