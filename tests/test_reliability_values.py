"""Issue 18, input probes the issue did not list (an independent hostile user, session 5; the storage probes
are in test_reliability_storage.py): byte-order marks, blank names, absurd magnitudes and tab-separated tables;
JSON nested past the parser and lone surrogates in task files; plan values of the wrong type or domain;
config overrides that name a section or put text where steps belong; bad LADDER_* variables; law files
edited by hand; imports that would write a wrong table; empty selections; config kinds. Each is one line
naming the field or file, never a traceback or a silent success. No JAX."""

import json

import numpy as np
import pytest

from ladder import cli
from ladder.errors import LadderError
from tests.test_reliability_inputs import RESULTS, _probe, _write


def _cli(capsys, *argv):
    return _probe(capsys, argv)


def test_byte_order_mark_is_dropped_in_every_text_input(tmp_path):
    """Excel's "CSV UTF-8" and Windows editors write one: before, the CSV's first column read as '\\ufeffrun'
    ("missing required columns ['run']") and JSON files failed on their first line."""
    from ladder.results import read_table
    from ladder.tasks import read_jsonl_task

    plain = read_table(_write(tmp_path, RESULTS), validate=True)
    bom = read_table(_write(tmp_path, b"\xef\xbb\xbf" + RESULTS.encode(), "bom.csv"), validate=True)
    assert list(bom) == list(plain) and all(np.array_equal(bom[k], plain[k]) for k in plain)
    line = json.dumps({"context": "2+2=", "choices": ["4", "5"], "gold": 0})
    assert len(read_jsonl_task(_write(tmp_path, b"\xef\xbb\xbf" + line.encode(), "t.jsonl")).questions) == 1


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("\nr1,", "\n,", 1), "column 'run' is blank in 1 rows, first data row 5"),
    (lambda t: t.replace(",3,t,", ",3, ,", 1), "column 'task' is blank in 1 rows"),
    (lambda t: t.replace("r3,8000000.0,", "r3,1e308,"), "column 'n' is outside [1, 1e+30] in 4 rows, first in run 'r3'"),
    (lambda t: t.replace("r3,8000000.0,", "r3,0.008,"), "column 'n' is outside [1, 1e+30] in 4 rows, first in run 'r3'"),
    (lambda t: t.replace(",4,t,", ",4,t,", 1).replace("r0,1000000.0,20000000.0,", "r0,1000000.0,1e300,", 1),
     "column 'd' is outside [1, 1e+30] in 1 rows"),
    (lambda t: t.replace(",", "\t"), "save it comma-separated (its columns are split by tabs)"),
    (lambda t: t.replace(",", ";"), "save it comma-separated (its columns are split by semicolons)"),
])
def test_results_names_and_magnitudes(tmp_path, edit, message):
    """Before: a blank run name became a run called "" (predict exited 0), n=1e308 fitted to nonsense flagged
    only by B/IN, and a tab-separated table said only that every column was missing."""
    from ladder.results import read_table

    with pytest.raises(LadderError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+").replace("[", r"\[")):
        read_table(_write(tmp_path, edit(RESULTS)), validate=True)


@pytest.mark.parametrize("line, message", [
    ("[" * 100_000 + "]" * 100_000, "t.jsonl:1: malformed JSON (nested too deeply to read)"),  # was RecursionError
    ('{"context": "\\ud800", "choices": ["a", "b"], "gold": 0}', "t.jsonl:1: the context holds a lone UTF-16"),
    ('{"context": "c", "choices": ["a", "\\udfff"], "gold": 0}', "t.jsonl:1: choice 1 holds a lone UTF-16"),
])
def test_task_jsonl_that_only_fails_later(tmp_path, line, message):
    """A lone surrogate passed reading and failed at tokenization, mid-evaluation."""
    from ladder.tasks import read_jsonl_task

    with pytest.raises(LadderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_jsonl_task(_write(tmp_path, line + "\n", "t.jsonl"))


# ------------------------------------------------------------------------------------------ plans

def _rung(**kv):
    return lambda p: p["rungs"][0].update(kv)


PLAN_EDITS = [
    (lambda p: p.update(targets=None), "targets is NoneType, not a list"),  # was TypeError
    (lambda p: p.update(rungs="abc"), "rungs is str, not a list"),  # was "rung 'a' is not a JSON object"
    (lambda p: p.update(defaults=[]), "defaults is not a JSON object"),
    (lambda p: p["targets"][0].update(n=-1), "target 'smoke-target': n is -1, not a finite number > 0"),
    (_rung(d_model="abc"), "d_model is 'abc', not a whole number > 0"),  # was "--config.model.d_model: ..."
    (_rung(d_model=-64), "d_model is -64, not a whole number > 0"),  # was accepted by launch --dry-run
    (_rung(total_steps=0), "total_steps is 0, not a whole number > 0"),
    (_rung(n=0), "n is 0, not a whole number > 0"),
    (_rung(batch_sequences=3.5), "batch_sequences is 3.5, not a whole number > 0"),
    (_rung(peak_lr=float("nan")), "peak_lr is nan, not a finite number"),
    (_rung(warmup_steps=-1), "warmup_steps is -1, not a whole number in [0, 2147483647]"),
    (_rung(eval_steps="10,20"), "eval_steps is '10,20', not a list of steps in [1, total_steps]"),
    (_rung(checkpoint_steps=[-5]), "checkpoint_steps is [-5], not a list of steps"),
    (_rung(schedule=3), "schedule is 3, not a string"),
]


@pytest.mark.parametrize("edit, message", PLAN_EDITS, ids=[m.split(",")[0] for _, m in PLAN_EDITS])
def test_plan_values_of_the_wrong_type_or_domain(capsys, tmp_path, edit, message):
    from ladder import plan as plan_lib

    plan = plan_lib.plan_ladder(["smoke-target"], preset="smoke")
    edit(plan)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    with pytest.raises(LadderError, match=message.replace("(", r"\(").replace("[", r"\[")):
        plan_lib.load_plan(path)
    rc, err = _cli(capsys, "status", path, "--run-root", tmp_path / "runs")  # was exit 0 on a garbage compute
    assert rc == 2 and message in err


def test_plan_rung_domains_are_the_trainers_and_name_the_rung(tmp_path):
    """Cross-field domains (heads dividing d_model) come from train_config.validate, at resolve_rung, which
    `launch --dry-run` passes through (before: accepted, failing only when the rung trained)."""
    from ladder import plan as plan_lib
    from ladder.train_config import resolve_rung

    plan = plan_lib.plan_ladder(["smoke-target"], preset="smoke")
    plan["rungs"][0]["n_heads"] = 7
    name = plan["rungs"][0]["name"]
    with pytest.raises(LadderError, match=f"plan rung '{name}': model.n_heads: 7 heads do not divide"):
        resolve_rung(plan, name)
    with pytest.raises(LadderError, match="plan: .* is not valid JSON \\(nested too deeply"):
        (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
        plan_lib.load_plan(tmp_path / "deep.json")


# ------------------------------------------------------------------------------------------ config, environment


@pytest.mark.parametrize("override, message", [
    ("model=3", "--config.model: 'model' is a section, not a value; set one of its keys, e.g. --config.model."),
    ("model={'d_model': 3}", "'model' is a section, not a value"),  # before: the section's repr, 60 lines
    ("train.eval_steps=['a']", "train.eval_steps: 'a' is not a step (a whole number)"),  # was TypeError
    ("train.eval_steps=[[]]", "train.eval_steps: [] is not a step"),  # was TypeError
    ("train.eval_steps=(1, 2.5)", "train.eval_steps: 2.5 is not a step"),  # was accepted: trained, never evaluated
    ("train.checkpoint_steps=[True]", "train.checkpoint_steps: True is not a step"),
])
def test_config_overrides_that_name_sections_or_put_text_in_steps(capsys, tmp_path, override, message):
    rc, err = _cli(capsys, "train", "configs/tiny.py", "--run-dir", tmp_path / "r", f"--config.{override}")
    assert rc == 2 and message in err, err
    assert "\n" not in err.strip() and not (tmp_path / "r").exists()


def test_override_values_past_the_literal_parser_are_text():
    from ladder.config import parse_value

    deep = "[" * 100_000 + "]" * 100_000
    assert parse_value(deep) == deep  # RecursionError / MemoryError in ast: the string, then a type error


@pytest.mark.parametrize("name, value, message", [
    ("LADDER_FIT_WORKERS", "-1", "LADDER_FIT_WORKERS: '-1' is not a whole number >= 1"),
    ("LADDER_FIT_WORKERS", "abc", "LADDER_FIT_WORKERS: 'abc' is not a whole number >= 1"),
    ("LADDER_FIT_WORKERS", "0", "LADDER_FIT_WORKERS: '0' is not a whole number >= 1"),
    ("LADDER_CACHE", "{file}", "LADDER_CACHE: {file} is a file, not a directory"),
])
def test_bad_environment_is_one_line_before_any_work(capsys, monkeypatch, tmp_path, name, value, message):
    """Before: LADDER_FIT_WORKERS=abc was ignored without a word; LADDER_CACHE naming a file failed inside
    `ladder train` as "storage: cannot write .../tfds/.../.locks ... free space or fix permissions"."""
    file = _write(tmp_path, "x", "cache")
    monkeypatch.setenv(name, value.format(file=file))
    rc, err = _cli(capsys, "plan", "--preset", "smoke", "-o", tmp_path / "p.json")
    assert rc == 2 and message.format(file=file) in err, err
    assert not (tmp_path / "p.json").exists()
    if name == "LADDER_FIT_WORKERS":  # a notebook calling the laws directly gets the same line
        from ladder.laws.parallel import default_workers, map_jobs

        with pytest.raises(LadderError, match=message):
            default_workers()
        with pytest.raises(LadderError, match=message):
            map_jobs(abs, [(1,), (2,)])
    monkeypatch.setenv(name, "")  # empty is unset
    cli.check_environment()


SPLIT_LAW = {"E": 1.5, "A": 400.0, "alpha": 0.3, "B": 400.0, "beta": 0.3, "k": 0.5, "rho": 0.9}


@pytest.mark.parametrize("law, message", [
    ({"domains": ["legal"]}, "--law: domains: is not a mapping of domain -> law"),  # was TypeError
    ({"domains": {"legal": {}}}, "--law: domains: legal: has no 'params'"),  # was KeyError
    ({"domains": {"legal": {"params": dict(SPLIT_LAW, E="x")}}}, "params: E: is 'x', not a finite number"),
    ({"domains": {"legal": {"params": dict(SPLIT_LAW, zzz=1)}}}, "not the parameters E, A, alpha, B, beta, k, rho"),
    ({"domains": {"legal": {"params": dict(SPLIT_LAW, alpha=float("nan"))}}},
     "params: alpha: is nan, not a finite number"),  # was an allocation computed from NaN, exit 0
    ({"domains": {"legal": {"params": dict(SPLIT_LAW, B=-400.0)}}},
     "params: B: is -400.0; the law's parameters are all >= 0"),  # was an allocation, exit 0
    ({"fits": [1]}, "--law: fits: has no 'domain'"),
    ({"fits": {"domain": {"params": {}}}}, "--law: fits: domain: params: holds [], not the parameters"),
])
def test_law_files_edited_by_hand(capsys, tmp_path, law, message):
    (tmp_path / "law.json").write_text(json.dumps(law))
    what = ["split", "--budget", "1e20"] if "domains" in law else ["dcpt", "--rule", "a", "--n", "2.5e5", "--d", "1e6"]
    rc, err = _cli(capsys, "allocate", what[0], "--law", tmp_path / "law.json", *what[1:], "-o", tmp_path / "out")
    assert rc == 2 and message in err, err
    assert not (tmp_path / "out").exists()


IMPORT = "model,params,tokens,step,task,accuracy\n" + "".join(
    f"m{i},{n},{n * 5 * s},{s},t,{0.3 + 0.1 * s / 4}\n" for i, n in enumerate((1e6, 2e6, 4e6)) for s in (1, 2))
MAP = "run=model,n=params,d=tokens,step=step,task=task,acc=accuracy"


@pytest.mark.parametrize("content, mapping, message", [
    (b"\xef\xbb\xbf" + IMPORT.encode(), MAP, None),  # before: run 'model' (BOM-glued header) for every row
    (IMPORT.encode(), MAP.replace("run=model", "run=nope"),
     "--map: run='nope' is not a column of"),  # before: one run 'nope' over three sizes, exit 0
    ((IMPORT + IMPORT.split("\n", 1)[1]).encode(), MAP, "run 'm0' task 't' step 1 is in the table twice"),
    (IMPORT.replace(",0.3", ",30.", 1).encode(), MAP, "neither all fractions nor all percentages"),  # one percent
    (IMPORT.encode(), MAP + ",run=params", "--map: maps 'run' twice"),
    (IMPORT.replace("m0", "m\xe9").encode("latin-1"), MAP, "is not UTF-8 text (byte 0xe9"),  # was a traceback
])
def test_import_checks_what_it_writes(capsys, tmp_path, content, mapping, message):
    (tmp_path / "in.csv").write_bytes(content)
    rc, err = _cli(capsys, "import", "csv", tmp_path / "in.csv", "--map", mapping, "-o", tmp_path / "out.csv")
    if message is None:
        assert rc == 0, err
        assert sorted({line.split(",")[0] for line in (tmp_path / "out.csv").read_text().splitlines()[1:]}) == \
            ["m0", "m1", "m2"]
    else:
        assert rc == 2 and message in err, err
        assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("entry, got", [("prose_continuation:abc", "'abc'"), ("prose_continuation:-3", "'-3'"),
                                        ("prose_continuation:", "''")])
def test_task_few_shot_suffix_that_is_not_a_count(entry, got):
    """Before: "'prose_continuation:abc' is neither an embedded task, a catalog task nor a .jsonl file"."""
    from ladder.tasks import parse_task_entry

    with pytest.raises(LadderError, match=f"the few-shot count after ':' must be a whole number >= 0, got {got}"):
        parse_task_entry(entry)
    assert parse_task_entry("gs://bucket/t.jsonl") == ("gs://bucket/t.jsonl", 0)  # a URL's colon is no suffix


@pytest.mark.parametrize("flag, value", [("--tasks", ""), ("--runs", ",,")])
def test_predict_selection_that_is_empty(capsys, tmp_path, flag, value):
    """Before: --tasks "" fitted every task, exit 0."""
    res = _write(tmp_path, RESULTS)
    rc, err = _cli(capsys, "predict", res, "--target", "t=1e9:2e10", "-o", tmp_path / "p.json", flag, value)
    assert rc == 2 and f"{flag}: is empty" in err, err


@pytest.mark.parametrize("argv, message", [
    (("cpt", "configs/tiny.py"), "configs/tiny.py is a `ladder train` config; run it with `ladder train`"),
    (("cpt", "configs/smoke.py"), "configs/smoke.py is a `ladder run` config; run it with `ladder run`"),
    (("run", "configs/specialization.py", "--dry-run"), "is a `ladder cpt` config; run it with `ladder cpt`"),
    (("train", "configs/specialization.py"), "is a `ladder cpt` config; run it with `ladder cpt`"),
])
def test_the_study_config_kind_is_named_too(capsys, tmp_path, argv, message):
    """Before: `ladder cpt configs/tiny.py` said "data: unknown config key; known keys here: base, budgets, ..."."""
    rc, err = _cli(capsys, *argv)
    assert rc == 2 and message in err, err


@pytest.mark.parametrize("override, what", [
    ("model.n_layers=100000", "2.63e+10 parameters"),  # before: minutes in the compiler, then an allocator failure
    ("model.seq_len=1073741824", "activations"),
    ("train.global_batch=2147483647", "activations"),
])
def test_a_model_that_cannot_fit_is_refused_before_compiling(capsys, tmp_path, override, what):
    rc, err = _cli(capsys, "train", "configs/tiny.py", "--run-dir", tmp_path / "r", f"--config.{override}")
    assert rc == 2 and "model: tiny needs at least" in err and what in err and "GiB per device" in err, err
    assert "\n" not in err.strip() and not (tmp_path / "r").exists()


def test_the_memory_check_is_the_planners_estimate_and_silent_where_memory_is_unknown():
    from ladder.arch import n_params_total
    from ladder.config import load_config
    from ladder.plan.resources import estimate_memory
    from ladder.arch import arch_of
    from ladder.device_checks import check_fits_memory

    cfg = load_config("configs/tiny.py")
    a = arch_of(cfg)
    need = estimate_memory({"name": "t", "d_model": a.d_model, "n_layers": a.n_layers, "mlp_hidden": a.mlp_hidden,
                            "seq_len": a.seq_len, "vocab_size": a.vocab_size, "n_total": n_params_total(a),
                            "batch_sequences": cfg.train.global_batch}, 1, {"data": 1, "fsdp": 1, "tensor": 1},
                           remat=cfg.model.remat, activation_bytes=4, loss_chunk=cfg.model.loss_chunk)["total"]
    mesh = {"data": 1, "fsdp": 1, "tensor": 1}
    check_fits_memory(cfg, mesh, None)  # unknown memory: nothing checked
    check_fits_memory(cfg, mesh, need)  # exactly enough
    with pytest.raises(LadderError, match="model: .* needs at least"):
        check_fits_memory(cfg, mesh, need - 1)
