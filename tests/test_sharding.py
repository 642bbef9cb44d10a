"""Meshes: the rule table, mesh sizing errors, and one train step that must not depend on the mesh shape."""

import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest
from jax.sharding import PartitionSpec as P

from ladder import sharding
from ladder.errors import LadderError


def mesh_cfg(data, fsdp, tensor):
    return ml_collections.ConfigDict(dict(data=data, fsdp=fsdp, tensor=tensor))


def test_multislice_mesh_sizes_describe_one_slice():
    import jax

    cfg = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1, dcn_data=1))
    assert dict(sharding.make_mesh(cfg).shape) == {"data": 1, "fsdp": len(jax.devices()), "tensor": 1}
    with pytest.raises(LadderError, match="mesh.dcn_data: 3 slices do not split 1 devices"):
        sharding.make_mesh(cfg, jax.devices()[:1], num_slices=3)


def test_mesh_shape_fills_and_rejects():
    assert sharding.mesh_shape(mesh_cfg(2, -1, 1), 8) == (2, 4, 1)
    assert sharding.mesh_shape(mesh_cfg(1, 1, 1), 1) == (1, 1, 1)
    with pytest.raises(LadderError, match="mesh: data\\*fsdp\\*tensor = 4 but there are 8 devices"):
        sharding.mesh_shape(mesh_cfg(2, 2, 1), 8)
    with pytest.raises(LadderError, match="mesh.fsdp"):
        sharding.mesh_shape(mesh_cfg(3, -1, 1), 8)
    with pytest.raises(LadderError, match="at most one axis may fill"):
        sharding.mesh_shape(mesh_cfg(-1, -1, 1), 8)
    with pytest.raises(LadderError, match="mesh.tensor: size 0"):
        sharding.mesh_shape(mesh_cfg(1, 1, 0), 8)


def test_rule_table_maps_logical_names():
    from flax import linen as nn

    from ladder.model import ACT_BxLxD

    specs = {"q": P("layers", "embed", "heads"), "emb": P("vocab", "embed"), "norm": P("layers", "norm"),
             "residual": P(*ACT_BxLxD), "per_head": P("act_batch", "act_length", "heads")}
    mesh_specs = nn.logical_to_mesh(specs, sharding.RULES)
    # The residual stream is split over the sequence on `tensor` (sequence parallelism); an array that also
    # names heads gives `tensor` to the heads (the earlier rule) and keeps its length whole.
    assert mesh_specs == {"q": P(None, "fsdp", "tensor"), "emb": P("tensor", "fsdp"), "norm": P(None, None),
                          "residual": P(("data", "fsdp"), "tensor", None),
                          "per_head": P(("data", "fsdp"), None, "tensor")}


# One update on 8 fake CPU devices for several meshes against one device: same loss, same new params; and the
# sharding constraints the step puts on activations (from its jaxpr, scan and remat bodies included).
SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import json, jax, numpy as np
    from jax.extend import core as jcore
    from ladder import sharding
    from ladder.data import make_source
    from ladder.step import make_train_step
    from ladder.train_config import default_config

    cfg = default_config()
    cfg.model.update(d_model=64, n_layers=2, n_heads=4, mlp_hidden=96, vocab_size=259, seq_len=16)
    cfg.train.update(global_batch=8, total_steps=10)
    # Adam's first update is ~lr*sign(g): a gradient that differs by float rounding near zero would flip a
    # whole update. A large eps makes the update smooth in g, so the params compare the gradients themselves.
    cfg.optim.update(warmup_steps=1, eps=1.0)
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.vocab_size = 259
    batch = make_source(data_cfg, 16, 8).batch(0)

    def constraints(jaxpr):
        found = set()
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "sharding_constraint":
                found.add(f"{eqn.outvars[0].aval.shape} {eqn.params['sharding'].spec}")
            for sub in jax.tree.leaves(list(eqn.params.values()), is_leaf=lambda x: isinstance(x, jcore.ClosedJaxpr)):
                if isinstance(sub, (jcore.ClosedJaxpr, jcore.Jaxpr)):
                    found |= constraints(getattr(sub, "jaxpr", sub))
        return found

    def one_step(shape, devices):
        cfg.mesh.update(data=shape[0], fsdp=shape[1], tensor=shape[2], dcn_data=shape[3])
        program = make_train_step(cfg, sharding.make_mesh(cfg.mesh, devices))
        state = program.init_fn(jax.random.key(0))
        global_batch = sharding.to_global(batch, program.batch_shardings["inputs"], 8)
        found = constraints(jax.make_jaxpr(program.step_fn)(state, global_batch).jaxpr)
        state, metrics = program.step_fn(state, global_batch)
        return float(metrics["loss"]), jax.tree.map(np.asarray, state["params"]), sorted(found)

    ref_loss, ref_params, _ = one_step((1, 1, 1, 1), jax.devices()[:1])
    out = {}
    # (data, fsdp, tensor, dcn_data): data only, data x fsdp, fsdp x tensor, and all three axes: 2 "slices" of
    # (1, 2, 2), the data axis spanning them. On these fake devices that last mesh is the mesh (2, 2, 2, 1)
    # builds, device for device (checked below without compiling), so (2, 2, 2, 1) is not stepped again.
    for shape in [(8, 1, 1, 1), (2, 4, 1, 1), (1, 2, 4, 1), (1, 2, 2, 2)]:
        loss, params, found = one_step(shape, jax.devices())
        diffs = jax.tree.leaves(jax.tree.map(
            lambda a, b: float(np.max(np.abs(a - b) / (1e-7 + 1e-5 * np.abs(b)))), params, ref_params))
        out[str(shape)] = {"loss": loss, "ref": ref_loss, "worst_param_tolerance_ratio": max(diffs),
                           "constraints": found}
    cfg.mesh.update(data=1, fsdp=-1, tensor=1, dcn_data=2)
    mesh = sharding.make_mesh(cfg.mesh)
    layout = {"shape": dict(mesh.shape), "slice0": sorted(d.id for d in mesh.devices[0].flat)}
    meshes = []
    for shape in [(2, 2, 2, 1), (1, 2, 2, 2)]:
        cfg.mesh.update(data=shape[0], fsdp=shape[1], tensor=shape[2], dcn_data=shape[3])
        mesh = sharding.make_mesh(cfg.mesh)
        meshes.append((dict(mesh.shape), [d.id for d in mesh.devices.flat]))
    layout["(2, 2, 2, 1) is (1, 2, 2, 2)"] = meshes[0] == meshes[1]
    print(json.dumps(out))
    print(json.dumps(layout))
""")


@pytest.mark.slow
def test_meshes_match_single_device():
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    results, layout = (json.loads(line) for line in r.stdout.strip().splitlines()[-2:])
    assert len(results) == 4
    # mesh.dcn_data=2: sizes describe one slice of 4 devices; the data axis spans the slices, slice-major.
    # The 2-slice mesh stepped above is the single-slice (2, 2, 2, 1) mesh, device for device.
    assert layout == {"shape": {"data": 2, "fsdp": 4, "tensor": 1}, "slice0": [0, 1, 2, 3],
                      "(2, 2, 2, 1) is (1, 2, 2, 2)": True}
    for shape, res in results.items():
        assert res["loss"] == pytest.approx(res["ref"], rel=1e-5), shape
        assert res["worst_param_tolerance_ratio"] <= 1.0, (shape, res)  # allclose(rtol=1e-5, atol=1e-7)
    # The residual stream [B, L, D] (embedding output, after attention, after the MLP; forward and backward)
    # is split over the sequence on `tensor` (sequence parallelism), and it is the only constrained activation.
    for shape in ["(1, 2, 4, 1)", "(1, 2, 2, 2)"]:
        assert results[shape]["constraints"] == ["(8, 16, 64) P(('data', 'fsdp'), 'tensor', None)"], shape
