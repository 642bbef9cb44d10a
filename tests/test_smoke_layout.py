"""The smoke ladder's layout (configs/smoke.py, docs/run.md "The smoke ladder") and the plan.skip knob it uses:
planned only, nothing trains (a fraction of a second)."""

import pytest

from ladder.config import load_config
from ladder.errors import LadderError
from ladder.run import Context, make_plans


def _plans(tmp_path, *overrides):
    return make_plans(Context(load_config("configs/smoke.py", list(overrides)), tmp_path))


def test_smoke_ladder_spans_five_sizes_over_8x_and_its_check_extrapolates_in_n_and_d(tmp_path):
    plan, check = _plans(tmp_path)
    names = [r["name"] for r in plan["rungs"]]
    assert names == [f"{s}-{m}xC" for s in ("29k", "45k", "93k", "160k") for m in ("0.25", "0.5", "1")] + ["236k-0.5xC"]
    ns = [r["n"] for r in plan["rungs"]]
    assert len(set(ns)) == 5 and max(ns) / min(ns) > 8
    (c,) = check["rungs"]
    assert c["name"] == "check-330k-0.5xC" and c["n"] > max(ns)
    assert c["tokens"] > max(r["tokens"] for r in plan["rungs"])  # and more tokens than any rung
    assert c["multiple"] in {r["multiple"] for r in plan["rungs"]}  # at a multiple the ladder measured
    assert plan["fraction"] == pytest.approx(sum(r["share"] for r in plan["rungs"]))


def test_skip_names_a_rung_of_the_grid_or_fails_in_one_line(tmp_path):
    plan, _ = _plans(tmp_path, "plan.skip=[]")
    assert len(plan["rungs"]) == 15 and "236k-1xC" in [r["name"] for r in plan["rungs"]]
    with pytest.raises(LadderError, match=r"plan.skip: 236k-2xC is not a rung of this plan.*45k-0.5xC"):
        _plans(tmp_path, "plan.skip=['236k-2xC']")
    with pytest.raises(LadderError, match="plan.skip: it leaves no rung"):
        _plans(tmp_path, "plan.sizes=['45k']", "plan.multiples=[0.5]", "plan.skip=['45k-0.5xC']")
