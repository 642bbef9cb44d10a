"""The trainer end to end: bitwise resume after SIGKILL, NaN stops, bad input exits 2 (SIGTERM: see
test_reliability_run.py)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ladder import cli
from ladder.errors import LadderError

TINY = ["--config.model.d_model=32", "--config.model.n_layers=2", "--config.model.n_heads=2",
        "--config.model.seq_len=16", "--config.train.global_batch=4", "--config.train.log_every=1"]


def tiny_config(**train):
    from ladder.train import default_config

    cfg = default_config()
    cfg.model.update(d_model=32, n_layers=2, n_heads=2, seq_len=16)
    cfg.train.update(global_batch=4, log_every=1, **train)
    cfg.optim.warmup_steps = 2
    return cfg


# A run (checkpoints every 10 steps) that SIGKILLs itself at step `kill_at`, or runs to the end (kill_at = -1).
# The kill comes from argv, not the config: a resumed run must have the same config (its hash is checked).
RUN = textwrap.dedent("""
    import os, signal, sys
    from tests.test_train import tiny_config
    from ladder.train import train
    run_dir, kill_at = sys.argv[1], int(sys.argv[2])
    def on_eval(step, params, logits_fn):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    train(tiny_config(total_steps=30, checkpoint_every=10, eval_steps=[25]), run_dir, on_eval=on_eval)
""")


def final_params(run_dir):
    from ladder.checkpoint import Checkpoints

    ckpts = Checkpoints(run_dir / "checkpoints", keep=1)
    assert ckpts.latest_step() == 30
    state = ckpts.restore(30, None)
    ckpts.close()
    return state["params"]


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    # One compilation cache for the three runs: the second and third load the first one's programs instead of
    # compiling them again (a loaded program is the compiled one: the comparisons stay bitwise).
    env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    run = lambda d, kill_at: subprocess.run([sys.executable, "-c", RUN, str(d), str(kill_at)],  # noqa: E731
                                            capture_output=True, text=True, timeout=300, env=env)
    killed = run(tmp_path / "resumed", 25)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    status = json.loads((tmp_path / "resumed" / "status.json").read_text())
    assert status["state"] == "running" and status["step"] >= 24
    resumed = run(tmp_path / "resumed", -1)  # picks up from the step-20 (or step-10) checkpoint
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and "from the checkpoint at step" in resumed.stderr
    straight = run(tmp_path / "straight", -1)
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = final_params(tmp_path / "resumed"), final_params(tmp_path / "straight")
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # metrics.jsonl: the rows an uninterrupted run writes, the first step after the resume included, with
    # bitwise-equal values (only the timing fields differ).
    assert metric_rows(tmp_path / "resumed") == metric_rows(tmp_path / "straight")
    assert [r["step"] for r in metric_rows(tmp_path / "straight")] == list(range(1, 31))


def metric_rows(run_dir):
    keep = ("step", "loss", "z_loss", "grad_norm", "lr", "tokens")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in keep} for r in rows]


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    code = cli.main(["train", "configs/tiny.py", *TINY, "--config.optim.peak_lr=1e30",
                     "--config.train.checkpoint_every=1", "--config.train.total_steps=20",
                     "--config.optim.warmup_steps=5", "--run-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "not finite" in err, err
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "not finite" in status["error"]
    failed_at = int(status["error"].split()[1].rstrip(":"))
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) < failed_at


@pytest.mark.parametrize("override, field", [
    ("--config.model.n_heads=3", "model.n_heads"),
    ("--config.mesh.fsdp=2", "mesh"),
    ("--config.model.widht=64", "model.widht"),
    ("--config.train.total_steps=0", "train.total_steps"),
    ("--config.model.d_model=-8", "model.d_model"),
    ("--config.optim.schedule=linear", "optim.schedule"),
])
def test_bad_input_exits_2_naming_the_field_and_writes_nothing(tmp_path, capsys, override, field):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "configs/tiny.py", override, "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ladder train: error: ") and field in err and len(err.splitlines()) == 1, err
    assert not run_dir.exists()


def test_config_file_with_an_unknown_key_exits_2(tmp_path, capsys):
    (tmp_path / "typo.py").write_text("from ladder.train import default_config\n"
                                      "def get_config():\n    c = default_config()\n"
                                      "    c.train.update(chekpoint_every=5)\n    return c\n")
    assert cli.main(["train", str(tmp_path / "typo.py"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "train.chekpoint_every: unknown config key" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unwritable_run_dir_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["train", "configs/tiny.py", "--run-dir", str(tmp_path / "file" / "run")]) == 2
    assert "--run-dir" in capsys.readouterr().err


def test_batch_and_widths_must_split_over_the_mesh():
    from ladder.train import validate_for_mesh

    cfg = tiny_config()
    with pytest.raises(LadderError, match="train.global_batch: 4 is not divisible by data\\*fsdp = 8"):
        validate_for_mesh(cfg, {"data": 2, "fsdp": 4, "tensor": 1}, 1)
    with pytest.raises(LadderError, match="mesh.tensor"):
        validate_for_mesh(cfg, {"data": 1, "fsdp": 1, "tensor": 4}, 1)
    validate_for_mesh(cfg, {"data": 2, "fsdp": 2, "tensor": 2}, 1)


def test_config_from_rung_maps_every_rung_field():
    from ladder.train import RUNG_KEYS, config_from_rung

    rung = dict(name="190M-1xC", d_model=768, n_layers=12, n_heads=12, mlp_hidden=3072, vocab_size=100278,
                seq_len=2048, batch_sequences=256, total_steps=1234, seed=7, z_loss=1e-5, eval_steps=[617, 1234],
                checkpoint_steps=[617], peak_lr=4e-3, final_lr_ratio=0.1, warmup_steps=100, schedule="wsd",
                beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, size="190M", multiple=1.0)
    cfg = config_from_rung(rung, {"data.source": "embedded", "mesh.fsdp": -1, "model.dtype": "bfloat16"})
    for key, path in RUNG_KEYS.items():
        section, leaf = path.split(".")
        assert cfg[section][leaf] == rung[key], key
    assert (cfg.name, cfg.data.seed, cfg.data.source, cfg.model.dtype) == ("190M-1xC", 7, "embedded", "bfloat16")
    with pytest.raises(LadderError, match="model.widht"):
        config_from_rung(rung, {"model.widht": 3})


def test_plan_rung_recipe_reaches_the_config_and_overrides_win():
    """A rung's memory recipe (remat, microbatches: `ladder plan --out`) beats the plan's family default and
    reaches resolve_rung's config; a --config override beats the recipe; a rung without it keeps the defaults."""
    from ladder.plan import plan_ladder
    from ladder.train_config import resolve_rung

    plan = plan_ladder(["7b-4t"], preset="olmo-ladder")
    assert plan["defaults"]["model.remat"] == "full"
    rung = plan["rungs"][0]
    old, _ = resolve_rung(plan, rung["name"])  # an older plan: no recipe on the rung
    assert (old.model.remat, old.train.microbatches) == ("full", 1)
    rung.update(remat="save_dots", microbatches=4)
    cfg, digest = resolve_rung(plan, rung["name"])
    assert (cfg.model.remat, cfg.train.microbatches) == ("save_dots", 4)
    over, other = resolve_rung(plan, rung["name"], ("model.remat=none", "train.microbatches=2"))
    assert (over.model.remat, over.train.microbatches) == ("none", 2) and other != digest


def test_run_dir_urls_and_object_store_writes(tmp_path, monkeypatch):
    """gs:// run dirs pass the pre-write checks (other schemes do not); on an object store metrics.jsonl is
    rewritten whole (no append) with the rows before the resume point kept: exercised here on a local path."""
    from ladder import metrics, rundir, storage
    from ladder.rundir import check_run_dir

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # credentials or an emulator: ladder.gcs
    check_run_dir("gs://bucket/ladder/run")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    with pytest.raises(LadderError, match="--run-dir: s3://b/r: only gs:// URLs"):
        check_run_dir("s3://b/r")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    rundir.truncate_metrics(tmp_path, 2)
    monkeypatch.setattr(storage, "is_remote", lambda path: True)
    writer = metrics.MetricsWriter(tmp_path, total_steps=9, stream=open(os.devnull, "w"))
    row = dict(step=3, tokens=96, loss=1.0, tokens_per_s=None, mfu=None)  # the trainer writes tokens on every row
    writer.write(row, None)
    writer.close()
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    storage.write_json(tmp_path / "status.json", {"state": "done"})
    assert storage.read_json(tmp_path / "status.json") == {"state": "done"}
    assert not (tmp_path / "status.json.tmp").exists()


def test_gs_run_dir_files_go_through_epath(tmp_path):
    """status/config JSON, metrics.jsonl truncation and results.csv on gs://, the epath backend mocked onto
    tmp_path (orbax writes checkpoints to gs:// itself)."""
    from etils.epath import testing as epath_testing

    from ladder import results, rundir, storage

    def local(path):
        return str(path).replace("gs://bucket/run", str(tmp_path))

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    row = dict(run="r", n=10, d=100, step=5, task="t", loss=1.0, acc=0.5)
    with epath_testing.mock_epath(exists=lambda orig, p: orig(local(p)), open=lambda orig, p, m: orig(local(p), m)):
        storage.write_json("gs://bucket/run/status.json", {"state": "running"})
        assert storage.read_json("gs://bucket/run/status.json") == {"state": "running"}
        assert storage.read_json("gs://bucket/run/absent.json") is None
        rundir.truncate_metrics("gs://bucket/run", 2)
        assert [r["step"] for r in rundir.read_metrics("gs://bucket/run")] == [1, 2]
        rundir.write_results("gs://bucket/run/results.csv", 5, [row])
        rundir.write_results("gs://bucket/run/results.csv", 5, [row | {"loss": 2.0}])  # a re-evaluated step replaces
    assert json.loads((tmp_path / "status.json").read_text()) == {"state": "running"}
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert results.read_table(tmp_path / "results.csv")["loss"].tolist() == [2.0]
