"""Continual pretraining in the trainer: a run continued from a base checkpoint starts exactly at the base
model (same loss on the same batch), weights only or with the optimizer state; clear errors for a missing
base, a missing step or another architecture; the general/domain mixture at r = 0, 1 and in between."""

import json

import jax
import numpy as np
import optax
import pytest

from ladder import sharding
from ladder.checkpoint import Checkpoints
from ladder.errors import LadderError
from ladder.step import make_train_step
from ladder.train import train
from ladder.warmstart import init_from_base, resolve_init
from tests.test_train import tiny_config

BASE_STEPS = 6


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cpt") / "base"
    cfg = tiny_config(total_steps=BASE_STEPS, checkpoint_every=3)
    cfg.name = "base"
    assert train(cfg, run_dir)["state"] == "done"
    return cfg, run_dir


def cpt_config(base_dir, **init):
    cfg = tiny_config(total_steps=4, checkpoint_every=0)
    cfg.name = "cpt"
    cfg.optim.update(peak_lr=1e-3, warmup_steps=2)  # its own schedule: a re-warmup, then decay
    cfg.data.seed = 1
    cfg.init.update(from_run=str(base_dir), **init)
    return cfg


def first_loss(program, state, batch):
    """The loss step_fn reports is that of the parameters it was given (before the update)."""
    _, metrics = program.step_fn(state, batch)
    return float(metrics["loss"])


@pytest.mark.slow
def test_continued_run_starts_at_the_base_model(base_run):
    base_cfg, base_dir = base_run
    mesh = sharding.make_mesh(base_cfg.mesh)
    # init.* does not change the compiled program: one program serves both variants.
    base_program, program = make_train_step(base_cfg, mesh), make_train_step(cpt_config(base_dir), mesh)
    ckpts = Checkpoints(base_dir / "checkpoints", keep=1)
    base_state = ckpts.restore(BASE_STEPS, base_program.abstract_state)
    ckpts.close()
    from ladder.data import make_source
    from ladder.train import data_config

    rows = make_source(data_config(base_cfg), 16, 4).batch(0)
    batch = lambda: sharding.to_global(rows, program.batch_shardings["inputs"], 4)  # noqa: E731 (step_fn donates)
    base_loss = first_loss(base_program, jax.tree.map(lambda x: x.copy(), base_state), batch())
    leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]  # noqa: E731

    def of_type(state, kind):
        return [x for x in jax.tree.leaves(state["opt_state"], is_leaf=lambda v: isinstance(v, kind))
                if isinstance(x, kind)]

    for restore_optimizer in (False, True):
        cfg = cpt_config(base_dir, restore_optimizer=restore_optimizer)
        init = resolve_init(cfg)
        assert init == dict(from_run=str(base_dir), step=BASE_STEPS, tokens=BASE_STEPS * 4 * 16, base_run="base",
                            restore_optimizer=restore_optimizer)
        state = init_from_base(program, init, jax.random.key(0))
        assert int(state["step"]) == 0
        for x, y in zip(leaves(state["params"]), leaves(base_state["params"]), strict=True):
            np.testing.assert_array_equal(x, y)
        counts = [int(x.count) for x in of_type(state, optax.ScaleByScheduleState)]
        assert counts and all(c == 0 for c in counts)  # this run's own warmup and decay
        (adam,), (base_adam,) = of_type(state, optax.ScaleByAdamState), of_type(base_state, optax.ScaleByAdamState)
        if restore_optimizer:  # Adam's moments and bias-correction count continue
            assert int(adam.count) == BASE_STEPS
            for x, y in zip(leaves(adam.mu), leaves(base_adam.mu), strict=True):
                np.testing.assert_array_equal(x, y)
        else:  # a fresh optimizer
            assert int(adam.count) == 0 and all(not x.any() for x in leaves(adam.mu))
        # The same loss on the same batch as the base model itself.
        assert first_loss(program, state, batch()) == base_loss


@pytest.mark.slow
def test_continued_run_trains_and_records_its_base(base_run, tmp_path, capsys):
    _, base_dir = base_run
    summary = train(cpt_config(base_dir), tmp_path / "cpt")
    assert summary["state"] == "done" and summary["step"] == 4
    assert "continuing base from its checkpoint at step 6 (weights only)" in capsys.readouterr().err
    init = json.loads((tmp_path / "cpt" / "init.json").read_text())
    assert init["step"] == BASE_STEPS and init["tokens"] == BASE_STEPS * 64
    rows = [json.loads(line) for line in (tmp_path / "cpt" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == pytest.approx(1e-3 / 2)  # the re-warmup's first step: peak * 1 / warmup


@pytest.mark.slow
def test_bad_base_is_a_clear_error_and_writes_nothing(base_run, tmp_path):
    base_cfg, base_dir = base_run
    cases = [
        (cpt_config(tmp_path / "nowhere"), r"init.from_run: .*nowhere has no config.json"),
        (cpt_config(base_dir, step=5), r"init.step: .* has no checkpoint at step 5; it has \[3, 6\]"),
    ]
    wider = cpt_config(base_dir)
    wider.model.d_model = 64
    cases.append((wider, r"init.from_run: the base run .* another architecture: model.d_model=64 vs 32"))
    for cfg, message in cases:
        with pytest.raises(LadderError, match=message):
            train(cfg, tmp_path / "run")
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("r", [0.0, 0.3, 1.0])
def test_general_domain_mixture_shares(r):
    from ladder.data import make_source
    from ladder.train import data_config

    cfg = tiny_config()
    cfg.data.source = "embedded"
    cfg.mix.update(general="prose,code", domain="legal", r=r)
    source = make_source(data_config(cfg), 16, 10)
    counts = dict(zip(source.names, sum(source.counts(k) for k in range(200))))
    assert counts["domain"] == pytest.approx(r * 2000, abs=1) and counts["general"] == pytest.approx((1 - r) * 2000, abs=1)
    batch = source.batch(3)
    assert batch["inputs"].shape == (10, 16)


def test_mix_needs_embedded_data_and_a_valid_share():
    from ladder.train_config import validate

    cfg = tiny_config()
    cfg.mix.r = 1.5
    with pytest.raises(LadderError, match=r"mix.r: 1.5 is outside \[0, 1\]"):
        validate(cfg)
    cfg.mix.r = 0.5
    with pytest.raises(LadderError, match="data.source: 'synthetic' with mix.r set"):
        validate(cfg)


def test_the_study_compilation_cache_is_put_back_after(tmp_path):
    """Process-global JAX settings: a TPU-topology compile after a study in one process read the study's CPU
    cache and warned ("PjRtCompiler must be constructed with a Client")."""
    import jax

    from ladder.cpt import compilation_cache

    before = jax.config.jax_compilation_cache_dir
    with compilation_cache(tmp_path / "cache"):
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
        jax.jit(lambda x: x * 3)(1.0).block_until_ready()
    assert jax.config.jax_compilation_cache_dir == before
    assert any((tmp_path / "cache").iterdir())  # the block's compile was written there
