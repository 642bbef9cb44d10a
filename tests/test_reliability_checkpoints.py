"""Issue 18, checkpoint integrity and divergence: a damaged latest step is reported (step, file), set aside, and
the run resumes from the newest step that verifies, ending bitwise equal to an uninterrupted run; a loss spike
stops the run naming the step and the last verified checkpoint."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.test_train import tiny_config


def _train(run_dir, **overrides):
    from ladder.train import train

    settings = dict(total_steps=30, checkpoint_every=10, keep_checkpoints=3, **overrides)
    return train(tiny_config(**settings), str(run_dir))


def _params(run_dir, step=30):
    import jax

    from ladder.checkpoint import Checkpoints

    ckpts = Checkpoints(run_dir / "checkpoints", keep=3)
    state = ckpts.restore(step, None)
    ckpts.close()
    return [np.asarray(x) for x in jax.tree.leaves(state["params"])]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run with checkpoints at steps 10, 20 and 30, each sealed with its manifest."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    assert _train(run_dir)["state"] == "done"
    return run_dir


def _data_file(step_dir):
    """The largest array-data file of a step (where the parameters' bytes are)."""
    files = [os.path.join(r, n) for r, _, ns in os.walk(step_dir) for n in ns if "/d/" in os.path.join(r, n)]
    return max(files, key=os.path.getsize)


def _flip_byte(step_dir):
    path = _data_file(step_dir)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))


def _ff_block(step_dir):
    path = _data_file(step_dir)
    data = bytearray(open(path, "rb").read())
    at = len(data) // 3
    data[at:at + 400] = b"\xff" * len(data[at:at + 400])
    open(path, "wb").write(bytes(data))


def _truncate(step_dir):
    path = _data_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)


def _empty(step_dir):
    for child in os.listdir(step_dir):
        p = os.path.join(step_dir, child)
        shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


def _drop_metadata(step_dir):
    os.unlink(os.path.join(step_dir, "default", "_METADATA"))


def _drop_default(step_dir):
    shutil.rmtree(os.path.join(step_dir, "default"))


def _drop_manifest(step_dir):  # a kill between orbax's commit and the manifest: the step is not trusted
    os.unlink(os.path.join(step_dir, "ladder-checksums.json"))


DAMAGE = {"flip": _flip_byte, "truncate": _truncate, "empty": _empty, "ff400": _ff_block,
          "no_metadata": _drop_metadata, "no_default": _drop_default, "no_manifest": _drop_manifest}
FAST = ("flip", "truncate", "empty")


@pytest.mark.parametrize("damage", [d if d in FAST else pytest.param(d, marks=pytest.mark.slow) for d in DAMAGE])
def test_damaged_latest_step_is_set_aside_and_resume_is_bitwise_exact(straight, tmp_path, capfd, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    DAMAGE[damage](run_dir / "checkpoints" / "30")
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps(dict(status, state="running", step=30)))  # killed before "done"

    summary = _train(run_dir)

    assert summary["state"] == "done" and summary["last_verified_step"] == 30
    err = capfd.readouterr().err
    assert "checkpoint step 30 failed verification" in err and "resuming" in err and "at step 20" in err
    aside = list((tmp_path / "run" / "checkpoints.corrupt").iterdir())
    assert [p.name.split("-")[0] for p in aside] == ["30"]  # moved, not deleted
    for a, b in zip(_params(run_dir), _params(straight), strict=True):
        np.testing.assert_array_equal(a, b)


def test_verify_names_step_and_file(straight, tmp_path):
    from ladder.checkpoint import CorruptCheckpoint, Checkpoints, verify_step

    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    assert verify_step(run_dir / "checkpoints" / "20") is None
    _flip_byte(run_dir / "checkpoints" / "20")
    problem = verify_step(run_dir / "checkpoints" / "20")
    assert "sha256 differs" in problem and "/d/" in problem
    ckpts = Checkpoints(run_dir / "checkpoints", keep=3)
    with pytest.raises(CorruptCheckpoint, match=r"checkpoints/20: default/.*sha256.*verifies: 10, 30$"):
        ckpts.restore(20, None)  # a direct restore (ladder eval) verifies too, and names the steps that do
    for step in (10, 30):
        _drop_manifest(run_dir / "checkpoints" / str(step))
    with pytest.raises(CorruptCheckpoint, match="no other step here verifies"):
        ckpts.restore(20, None)
    ckpts.close()


def test_every_step_corrupt_starts_fresh_without_mixing(straight, tmp_path, capfd):
    """No step verifies: all are set aside and the run trains from step 0 (still bitwise equal)."""
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    for step in (10, 20, 30):
        _drop_manifest(run_dir / "checkpoints" / str(step))
    (run_dir / "status.json").unlink()
    assert _train(run_dir)["state"] == "done"
    assert len(list((run_dir / "checkpoints.corrupt").iterdir())) == 3
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))  # no duplicated steps from the first attempt
    for a, b in zip(_params(run_dir), _params(straight), strict=True):
        np.testing.assert_array_equal(a, b)


def test_loss_spike_stops_the_run_naming_step_and_last_verified_checkpoint(tmp_path):
    """peak_lr=30: the loss stays finite (1e6) but far above the first step's; stopped, status "failed"."""
    from ladder.train import TrainingFailed, train

    cfg = tiny_config(total_steps=30, checkpoint_every=5)
    cfg.optim.peak_lr = 30.0
    with pytest.raises(TrainingFailed, match=r"step \d+: loss .* exceeds the first step.s .*\(diverged\).*"
                                             r"last verified checkpoint is (step \d+|none)"):
        train(cfg, str(tmp_path / "run"))
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "diverged" in status["error"]


def test_divergence_rule():
    from ladder.train_log import diverged

    assert diverged(5.0, 1.0, 5.5, 2.0) is None
    assert diverged(7.4, 1.0, 5.5, 2.0) is None
    assert "diverged" in diverged(7.6, 1.0, 5.5, 2.0)
    assert diverged(1e6, 1.0, 5.5, 0.0) is None  # margin 0: only NaN/Inf
    assert "not finite" in diverged(float("nan"), 1.0, 5.5, 2.0)
    assert "not finite" in diverged(3.0, float("inf"), 5.5, 2.0)
