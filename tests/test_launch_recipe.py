"""`ladder launch --slice RUNG=TYPE` refits the rung's memory recipe for that slice, as `ladder compile` does
(plan.resources.refit_rung, one function for both): dry runs only, no training, no compile."""

from __future__ import annotations

import pytest

from ladder import chips
from ladder.errors import LadderError
from ladder.launch import LaunchOptions, jobs as jobs_lib, launch_plan
from ladder.plan.resources import estimate_memory, refit_rung, resolve_mesh, slice_recipe
from launch_fixtures import pin_choose_slice, rung, tiny_plan, with_rungs, write_plan

# A 1B-class and a 190M-class rung with the OLMo vocab and 4,096-token sequences, stamped as the planner
# stamps them (plan.dryrun.attach_recipes) on v5p slices: full x1 on v5p-16, save_dots x1 on v5p-8.
BIG = rung("1B-1xC", "1B", 1, 2048, 16, 16, 100, batch=256, seq=4096, vocab=100352) | {"remat": "full",
                                                                                    "microbatches": 1}
MID = rung("190M-1xC", "190M", 1, 768, 12, 12, 100, batch=128, seq=4096, vocab=100352) | {"remat": "save_dots",
                                                                                        "microbatches": 1}


@pytest.fixture
def plan_path(tmp_path, monkeypatch):
    pin_choose_slice(monkeypatch)
    monkeypatch.chdir(tmp_path)
    plan = with_rungs(tiny_plan(), [BIG, MID])
    return write_plan(tmp_path / "plan.json", plan)


def launch(plan_path, slices, overrides=(), rungs=None) -> list[str]:
    lines: list[str] = []
    opts = LaunchOptions(plan_path, "gs://bkt/ladder", backend="tpu-vm", dry_run=True, project="p", zone="us-west4-a",
                         package="ladder", slices=jobs_lib.parse_slice_overrides(slices), overrides=tuple(overrides),
                         rungs=rungs, compile_check=False)
    assert launch_plan(opts, print_fn=lines.append) == 0
    return lines


def recipe_lines(lines):
    return [line for line in lines if ": recipe " in line]


def test_a_smaller_slice_gets_the_recipe_compile_would_use(plan_path):
    """1B-1xC, planned full x1 on v5p-16, moved to v5litepod-8: full remat in 8 microbatches, the same
    recipe refit_rung gives `ladder compile`, sent to the workers as --config flags and printed."""
    lines = launch(plan_path, ["1B-1xC=v5litepod-8"], rungs=["1B-1xC"])
    refit, recipe = refit_rung(BIG, "v5litepod-8")
    assert (refit["remat"], refit["microbatches"]) == ("full", 8) == (recipe["remat"], recipe["microbatches"])
    gib = recipe["memory"]["total"] / chips.GiB
    assert recipe_lines(lines) == [f"# 1B-1xC on v5litepod-8: recipe full x8 (estimate {gib:.1f} GiB, "
                                   f"{recipe['memory']['total'] / chips.chip('v5e').hbm_bytes:.0%} HBM)"]
    assert "--config.train.microbatches=8" in "\n".join(lines)
    assert "--config.model.remat" not in "\n".join(lines)  # full already: only what changes travels
    job, = jobs_lib.make_jobs(jobs_lib.load(plan_path), "gs://b/r", slices={"1B-1xC": ("v5litepod-8", 1)},
                              rungs=["1B-1xC"])
    assert (job.config.model.remat, job.config.train.microbatches) == ("full", 8)


def test_a_larger_slice_stops_recomputing(plan_path):
    """190M-1xC, stamped save_dots for v5p-8, on v5p-16 needs no recompute at all."""
    job, = jobs_lib.make_jobs(jobs_lib.load(plan_path), "gs://b/r", slices={"190M-1xC": ("v5p-16", 1)},
                              rungs=["190M-1xC"])
    assert slice_recipe(MID, "v5p-16")["remat"] == "none"
    assert job.overrides == ("model.remat=none",) and job.config.model.remat == "none"
    assert job.recipe.startswith("190M-1xC on v5p-16: recipe none x1 (estimate ")


def test_the_planners_own_slice_adds_nothing(plan_path):
    """The stamp is the refit on the planner's slice, so the worker's flags and config_hash do not move."""
    plan = jobs_lib.load(plan_path)
    job, = jobs_lib.make_jobs(plan, "gs://b/r", slices={"190M-1xC": ("v5p-8", 1)}, rungs=["190M-1xC"])
    assert job.overrides == () and job.recipe.startswith("190M-1xC on v5p-8: recipe save_dots x1 ")


def test_a_slice_where_nothing_fits_is_refused_with_the_estimate(plan_path):
    """One v5e chip (16 GiB): even full remat in one-row microbatches needs ~28.9 GiB for 1B-1xC."""
    m = resolve_mesh(1)
    least = estimate_memory(BIG, 1, m, remat="full", microbatches=256)["total"] / chips.GiB
    with pytest.raises(LadderError, match=rf"^slice: 1B-1xC fits no memory recipe on v5litepod-1: .* "
                                          rf"{least:.1f} GiB per device, .*--slice 1B-1xC=TYPE$"):
        launch(plan_path, ["1B-1xC=v5litepod-1"], rungs=["1B-1xC"])


def test_config_overrides_win(plan_path):
    """--config model.remat / train.microbatches beat the refit; the printed line says so and estimates the
    user's recipe; a slice no recipe fits is the user's call then."""
    lines = launch(plan_path, ["1B-1xC=v5litepod-8"], overrides=["train.microbatches=16"], rungs=["1B-1xC"])
    text = "\n".join(lines)
    assert "--config.train.microbatches=8" not in text and "--config.train.microbatches=16" in text
    assert recipe_lines(lines)[0].startswith("# 1B-1xC on v5litepod-8: recipe full x16 (--config) (estimate ")
    job, = jobs_lib.make_jobs(jobs_lib.load(plan_path), "gs://b/r", slices={"1B-1xC": ("v5litepod-1", 1)},
                              rungs=["1B-1xC"], overrides=("model.remat=full",))
    assert job.overrides == ("model.remat=full",)
    # a user recipe past the usable HBM is estimated and flagged, not refused
    job, = jobs_lib.make_jobs(jobs_lib.load(plan_path), "gs://b/r", slices={"190M-1xC": ("v5litepod-16", 1)},
                              rungs=["190M-1xC"], overrides=("model.remat=none",))
    assert job.recipe.startswith("190M-1xC on v5litepod-16: recipe none x1 (--config) (estimate ")
    assert job.recipe.endswith("HBM; over the 85% limit, it may run out of HBM)")


def test_multislice_refits_over_every_chip(plan_path):
    job, = jobs_lib.make_jobs(jobs_lib.load(plan_path), "gs://b/r", slices={"1B-1xC": ("v5litepod-8", 2)},
                              rungs=["1B-1xC"])
    assert slice_recipe(BIG, "v5litepod-8", 2)["microbatches"] == 2
    assert job.overrides == ("mesh.dcn_data=2", "train.microbatches=2")
    assert job.recipe.startswith("1B-1xC on 2xv5litepod-8: recipe full x2 ")
