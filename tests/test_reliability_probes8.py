"""Issue 18, session 8's probe round: classes no earlier round tried. Config files whose own code fails, key
typos, empty option values, hand-edited rung state files (status.json, launch.json, logs), run-directory stage
outputs of another shape, consoles and outputs that cannot take what is written, a deleted working directory,
dangling links on the output path, a target's FLOPs per token below one forward pass. Each is one line naming
the file or field and the fix (exit 2), or a correct recovery with a note. No JAX, no training.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ladder import cli
from ladder.errors import LadderError
from tests.test_reliability_inputs import _probe

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.py")
SMOKE = str(ROOT / "configs" / "smoke.py")
SIZES = (1e6, 2e6, 4e6, 8e6, 16e6, 32e6)


def _results(tmp_path):
    path = tmp_path / "res.csv"
    path.write_text("run,n,d,step,task,loss,acc\n" + "".join(
        f"r{i},{n:g},{n * 5 * s:g},{s},t,{1 + 1e3 / n ** 0.3},{0.3 + 0.02 * i + 0.01 * s}\n"
        for i, n in enumerate(SIZES) for s in (1, 2, 3, 4)))
    return path


# ------------------------------------------------------------------------------------------ config files

CONFIGS = {  # file body -> the line expected (before: a traceback for the first two)
    "def get_config():\n    raise RuntimeError('boom in my config')\n":
        "cfg.py line 2: get_config() raised RuntimeError: boom in my config; fix the file",
    "import nonexistent_module_xyz\ndef get_config():\n    pass\n":
        "cfg.py line 1 failed while loading: ModuleNotFoundError: No module named 'nonexistent_module_xyz'",
    "def get_config():\n    return undefined_name\n": "cfg.py line 2: get_config() raised NameError",
    "X = 1\n": "defines no get_config()",
    "import sys\nsys.exit(3)\n": "cfg.py line 2 called sys.exit(3) while loading",  # before: exit 3, no word
    "import sys\ndef get_config():\n    sys.exit('no')\n": "cfg.py line 3: get_config() called sys.exit('no')",
    "def get_config():\n    return 5\n": "get_config returned int, not a ConfigDict",
}


@pytest.mark.parametrize("body, message", list(CONFIGS.items()))
@pytest.mark.parametrize("verb", ["train", "run"])
def test_a_config_file_whose_code_fails_is_one_line_at_its_line(capsys, tmp_path, body, message, verb):
    (tmp_path / "cfg.py").write_text(body)
    rc, err = _probe(capsys, [verb, tmp_path / "cfg.py", "--config.train.total_steps=-7"])
    assert rc == 2 and message in err, err


def test_an_empty_variant_is_refused_not_the_default(capsys):
    """Before: `ladder run configs/smoke.py: --dry-run` planned the default config, exit 0."""
    rc, err = _probe(capsys, ["run", SMOKE + ":", "--dry-run"])
    assert rc == 2 and "names an empty variant after ':'" in err, err


@pytest.mark.parametrize("override, message", [
    ("train.totl_steps=5", "unknown key 'totl_steps'; did you mean 'total_steps'? known keys here:"),
    ("trian.total_steps=5", "unknown key 'trian'; did you mean 'train'? sections here: data,"),  # was "see the config file"
    ("optim.peak_lr.x=5", "'optim.peak_lr' is a value, not a section; set it as --config.optim.peak_lr=VALUE"),
    ("zzzzzz=1", "unknown key 'zzzzzz'; known keys here: data, distributed"),
])
def test_override_typos_name_the_nearest_key(capsys, override, message):
    rc, err = _probe(capsys, ["train", TINY, f"--config.{override}"])
    assert rc == 2 and message in err, err


# ------------------------------------------------------------------------------------------ empty values

@pytest.mark.parametrize("argv, message", [
    # before: each ran with the option's default, exit 0
    (["predict", "{res}", "--target", "t=1e9:2e10", "--method", "", "-o", "{tmp}/p.json"],
     "argument --method: is empty; give a value or leave --method out"),
    (["predict", "{res}", "--target", "t=1e9:2e10", "--holdout", " ", "-o", "{tmp}/p.json"],
     "argument --holdout: is empty"),
    (["plan", "--preset", "smoke", "--eval-fractions", ""], "argument --eval-fractions: is empty"),
    (["predict", "", "--target", "t=1e9:2e10", "-o", "{tmp}/p.json"], "argument results: is empty; give a value"),
    (["launch", "{tmp}/plan.json", "--rung", "", "--dry-run"], "argument --rung: is empty"),
    (["predict", "{res}", "--target", "t=1e9:2e10", "--tasks", "", "-o", "{tmp}/p.json"], "--tasks: is empty"),
])
def test_an_empty_value_is_refused_not_the_default(capsys, tmp_path, argv, message):
    res = _results(tmp_path)
    rc, err = _probe(capsys, [a.replace("{res}", str(res)).replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2 and message in err, err
    assert not (tmp_path / "p.json").exists()


def test_a_flag_whose_default_is_empty_may_be_given_empty():
    _, args = cli.parse("data", ["tasks", "--data-dir", "", "-o", "x"])
    assert args.data_dir == ""


# ------------------------------------------------------------------------------------------ rung state files

@pytest.fixture
def plan(tmp_path, capsys):
    path = tmp_path / "plan.json"
    assert cli.main(["plan", "--preset", "smoke", "-o", str(path)]) == 0
    capsys.readouterr()
    return path


@pytest.mark.parametrize("file, content, shown", [
    # before: a ValueError / TypeError / OverflowError traceback for each
    ("status.json", {"state": "running", "step": "abc"}, "status.json: ignored step='abc'"),
    ("status.json", {"state": "running", "step": float("nan")}, "status.json: ignored step=nan"),
    ("status.json", {"state": "running", "step": 3, "loss": "low"}, "ignored loss='low'"),
    ("status.json", {"state": "running", "step": 3, "loss": [1]}, "ignored loss=[1]"),
    ("status.json", {"state": "running", "step": 3, "tokens_per_s": "fast"}, "ignored tokens_per_s='fast'"),
    ("status.json", {"state": "running", "step": 3, "eta_s": "soon"}, "ignored eta_s='soon'"),
    ("status.json", {"state": "running", "step": 3, "updated": "now"}, "ignored updated='now'"),
    ("status.json", {"state": "running", "step": 3, "total_steps": "x"}, "ignored total_steps='x'"),
    ("status.json", {"state": "running", "step": 3, "tokens": float("inf")}, "ignored tokens=inf"),
    ("launch.json", {"attempts": "two", "state": "running"}, "launch.json: ignored attempts='two'"),
    # before: silent, and the rung was counted in no state at all ("0 running ... 8 pending" of 9 rungs)
    ("status.json", {"state": "zombie", "step": 3}, "status.json: ignored state='zombie'"),
    ("status.json", {"state": "running", "step": -5}, "ignored step=-5"),
])
def test_a_hand_edited_rung_state_file_is_shown_with_a_note(capsys, tmp_path, plan, file, content, shown):
    rung = json.loads(plan.read_text())["rungs"][0]["name"]
    (tmp_path / "root" / rung).mkdir(parents=True)
    (tmp_path / "root" / rung / file).write_text(json.dumps(content))
    rc = cli.main(["status", str(plan), "--run-root", str(tmp_path / "root")])
    out = capsys.readouterr().out
    assert rc == 0 and shown in out, out
    counts = re.findall(r"(\d+) (?:done|running|failed|pending|preempted)", out.splitlines()[-1])
    assert sum(map(int, counts)) == 9, out  # every rung counted once


def test_a_log_that_is_not_utf8_is_shown(capsys, tmp_path, plan):
    rung = json.loads(plan.read_text())["rungs"][0]["name"]
    (tmp_path / "root" / rung).mkdir(parents=True)
    (tmp_path / "root" / rung / "launch.log").write_bytes(b"step 1\n\xff\xfe bytes\n")
    rc, _ = _probe(capsys, ["status", plan, "--run-root", tmp_path / "root", "--logs", rung])
    assert rc == 0


def test_a_plan_fraction_that_is_not_a_number_is_named(capsys, tmp_path, plan):
    p = json.loads(plan.read_text())
    p["fraction"] = "1%"
    plan.write_text(json.dumps(p))
    rc, err = _probe(capsys, ["status", plan, "--run-root", tmp_path / "root"])
    assert rc == 2 and "fraction is '1%', not a finite number > 0" in err, err


# ------------------------------------------------------------------------------------------ run-dir outputs

GOOD = {"method": "paper", "loss": 1.0, "acc": 0.5, "acc_lo": 0.4, "acc_hi": 0.6, "compute_ratio": 10, "flags": []}
SELF_CHECK_ROW = {"method": "paper", "feature": "loss", "loss_pred": 1.0, "loss_meas": 1.1, "loss_err": -0.09,
                  "loss_lo": 0.9, "loss_hi": 1.2, "loss_covered": True, "acc_pred": 0.5, "acc_meas": 0.52,
                  "acc_err": -0.02, "acc_lo": 0.4, "acc_hi": 0.6, "covered": True}


@pytest.mark.parametrize("file, content, stage", [
    # valid JSON of another shape: before, AttributeError / KeyError / ValueError tracebacks in the report
    ("predictions.json", [1, 2], "predict"),
    ("predictions.json", {"t": 5}, "predict"),
    ("predictions.json", {"x": {"t": {"method": "paper", "loss": 1}}}, "predict"),
    ("predictions.json", {"x": {"t": dict(GOOD, acc="high")}}, "predict"),
    ("backtest.json", {"t": {"paper": {"error": "x"}}}, "predict"),
    ("backtest.json", {"t": 3}, "predict"),
    ("self_check.json", {"run": "x"}, "self_check"),
    # a field of another kind: before, flags "FB" was printed as "F; B", true as 1.0000, covered "no" as yes
    ("predictions.json", {"x": {"t": dict(GOOD, flags="FB")}}, "predict"),
    ("predictions.json", {"x": {"t": dict(GOOD, flags=[1])}}, "predict"),
    ("predictions.json", {"x": {"t": dict(GOOD, acc=True)}}, "predict"),
    ("predictions.json", {"x": {"t": dict(GOOD, method=["paper"])}}, "predict"),
    ("backtest.json", {"t": {"paper": {"error": 0.1, "loss_error": "5%"}}}, "predict"),
    ("self_check.json", {"run": "c", "n": 1, "tokens": 2, "tasks": {"t": dict(SELF_CHECK_ROW, covered="no")}},
     "self_check"),
    ("self_check.json", {"run": "c", "n": 1, "tokens": 2, "tasks": {"t": dict(SELF_CHECK_ROW, loss_err="1%")}},
     "self_check"),
])
def test_a_stage_output_of_another_shape_names_the_file_and_stage(tmp_path, plan, file, content, stage):
    from ladder.report import write_report

    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").write_bytes(plan.read_bytes())
    (out / "predictions.json").write_text(json.dumps({"x": {"t": GOOD}}))
    (out / file).write_text(json.dumps(content))
    with pytest.raises(LadderError, match=f"{file} is not what the {stage} stage writes .*; delete it and the "
                                          f"'{stage}' entry of stages.json"):
        write_report(out, str(out / "rungs"), {"plan": {"seconds": 1.0}})
    assert not (out / "report.md").exists()


def test_a_stage_output_of_the_right_kinds_is_reported(tmp_path, plan):
    """The fields' kinds above are checked, not their values: NaN from a failed fit and null where a stage writes
    it are reported; a flag list is joined."""
    from ladder.report import write_report

    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.json").write_bytes(plan.read_bytes())
    (out / "predictions.json").write_text(json.dumps({"x": {"t": dict(GOOD, flags=["FB", "X"])}}))
    (out / "backtest.json").write_text(json.dumps({"t": {"paper": {"error": float("nan")}, "auto": {"error": 0.1}}}))
    (out / "self_check.json").write_text(json.dumps({"run": "c", "n": 1, "tokens": 2, "tasks": {
        "t": dict(SELF_CHECK_ROW, loss_pred=None, loss_err=None, loss_covered=None)}}))
    text = write_report(out, str(out / "rungs"), {"plan": {"seconds": 1.0}}).read_text()
    assert "| FB; X |" in text and "| n/a | 0.1000 |" in text and "| t | paper | loss | - |" in text, text


# ------------------------------------------------------------------------------------------ the environment

def _cli_process(argv, cwd, env=None, stdout=None):
    return subprocess.run([sys.executable, "-m", "ladder", *map(str, argv)], cwd=cwd, capture_output=stdout is None,
                          stdout=stdout, stderr=subprocess.PIPE if stdout is not None else None, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})), timeout=120)


def test_a_console_that_cannot_encode_a_name_shows_it_escaped(tmp_path):
    """Before: PYTHONIOENCODING=ascii and a target named 'ü': a UnicodeEncodeError traceback after the plan."""
    p = _cli_process(["plan", "--preset", "smoke", "--target", "ü=1e8:1e10"], tmp_path,
                     env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert p.returncode == 0 and "targets: \\xfc (N 100,030,528" in p.stdout, p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_device_is_named_as_standard_output(tmp_path):
    """Before: 'a file: No space left on device; check that the path exists'."""
    with open("/dev/full", "w") as full:
        p = _cli_process(["plan", "--preset", "smoke"], tmp_path, stdout=full)
    assert p.returncode == 2 and "error: standard output: No space left on device" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr


def test_a_deleted_working_directory_is_named(capsys, tmp_path, monkeypatch):
    """Before: `-o p.json` from a deleted directory: 'a file: No such file or directory'."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    rc, err = _probe(capsys, ["predict", _results(tmp_path), "--target", "t=1e9:2e10", "-o", "p.json"])
    assert rc == 2 and "the current directory no longer exists" in err, err


def test_an_output_under_a_dangling_link_is_refused_before_the_fit(capsys, tmp_path):
    """Before: the fit ran, then 'DIR: File exists; check that the path exists'."""
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    rc, err = _probe(capsys, ["predict", _results(tmp_path), "--target", "t=1e9:2e10", "-o", tmp_path / "link/p.json"])
    assert rc == 2 and f"{tmp_path}/link is a link to {tmp_path}/nowhere, which does not exist" in err, err


# ------------------------------------------------------------------------------------------ values

@pytest.mark.parametrize("target, ok", [("t=1e9:2e10:5", False), ("t=1e9:2e10:1.9e9", False),
                                        ("t=1e9:2e10:6e9", True)])
def test_flops_per_token_below_a_forward_pass_is_refused(target, ok):
    """Before: F=5 for N=1e9 predicted from a compute 10^9 times too small, exit 0."""
    from ladder.commands.common import target_spec

    if ok:
        assert target_spec(target)["flops_per_token"] == 6e9
    else:
        with pytest.raises(LadderError, match=r"--target t: FLOPs per token F = .* is below 2N = 2e\+09"):
            target_spec(target)


# ------------------------------------------------------------------------------------------ options a mode never reads

@pytest.mark.parametrize("argv, message", [
    # before: each ran, exit 0, the option silently meaningless
    (["launch", "{plan}", "--dry-run", "--spot"], "--spot: applies to --backend tpu-vm / queued-resources / xpk, not local"),
    (["launch", "{plan}", "--dry-run", "--zone", "us-west4-a"], "--zone: applies to --backend"),
    (["launch", "{plan}", "--dry-run", "--backend", "tpu-vm", "--run-root", "gs://bkt/x", "--pack"],
     "--pack: applies to --backend queued-resources, not tpu-vm"),
    (["launch", "{plan}", "--dry-run", "--backend", "queued-resources", "--run-root", "gs://bkt/x", "--image", "x"],
     "--image: applies to --backend xpk, not queued-resources"),
    (["launch", "{plan}", "--dry-run", "--backend", "xpk", "--run-root", "gs://bkt/x", "--parallel", "2"],
     "--parallel: applies to --backend local, not xpk"),
    (["status", "{plan}", "--lines", "5"], "--lines: applies with --logs RUNG only"),
    (["fit", "split", "{tmp}/study.csv", "--n", "1e6"], "--n: applies to ladder fit dcpt, not split"),
    (["fit", "split", "{tmp}/study.csv", "--cross-domain"], "--cross-domain: applies to ladder fit dcpt, not split"),
    (["allocate", "split", "--law", "{tmp}/law.json", "--rule", "a"], "--rule: applies to ladder allocate dcpt, not split"),
    (["allocate", "dcpt", "--law", "{tmp}/law.json", "--budget", "1e20"], "--budget: applies to ladder allocate split"),
    (["data", "tasks", "-o", "{tmp}/tasks", "--vocab-size", "5"], "--vocab-size: applies to ladder data spm, not tasks"),
    (["data", "build", "--name", "x"], "--name: applies to ladder data files, not build"),
    (["data", "verify", "{tmp}", "-o", "{tmp}/x"], "-o/--out: applies to ladder data spm / tasks / tokenize, not verify"),
    (["compile", "{plan}", "--topology", "v5litepod-16", "--chip", "v4"], "drop --chip v4"),  # before: v4 ignored
])
def test_an_option_the_chosen_mode_never_reads_is_refused(capsys, tmp_path, plan, argv, message):
    rc, err = _probe(capsys, [a.replace("{plan}", str(plan)).replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2 and message in err, err


def test_the_options_a_mode_reads_still_pass(capsys, tmp_path, plan):
    rc, err = _probe(capsys, ["launch", plan, "--dry-run", "--parallel", "2", "--run-root", tmp_path / "root"])
    assert rc == 0, err



@pytest.mark.parametrize("argv, message", [
    # before: the run planned (and would train) into the current directory, exit 0
    (["run", SMOKE + ":quick", "--dry-run", "--config.out_dir="], "out_dir: is empty (the run would land in the current"),
    (["cpt", str(ROOT / "configs" / "specialization.py") + ":ci", "--config.out_dir= "], "out_dir: is empty"),
    # the shell stripped the quotes of ['nosuch']: the fix says how to quote a list of names
    (["run", SMOKE + ":quick", "--dry-run", "--config.plan.skip=[nosuch]"],
     """quote the names for Python inside shell quotes, e.g. --config.plan.skip='["nosuch"]'"""),
])
def test_run_config_values_that_cannot_be_meant(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    rc, err = _probe(capsys, argv)
    assert rc == 2 and message in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value, kept", [(5.95, 5.95), (0, 0), (None, None), ("x", None), ([1], None),
                                         (float("nan"), None), (-1.0, None), (True, None)])
def test_a_hand_edited_first_loss_is_not_the_divergence_reference(capfd, value, kept):
    """Probed with real resumes: 'x' was a TypeError mid-run, NaN turned the divergence check off, -1 stopped a
    healthy run as 'diverged'. Now the resumed run judges against its own first step, with a note."""
    from ladder.train_log import saved_first_loss

    assert saved_first_loss(value, "runs/x") == kept
    err = capfd.readouterr().err
    assert ("first_loss=" in err and "is not a loss" in err) == (kept is None and value is not None), err


def test_metrics_rows_without_numeric_tokens_or_loss_are_left_out_of_the_loss_plot(tmp_path, plan):
    """Before: a hand-edited metrics.jsonl row ({"step": 2} or "loss": "low") was a KeyError/TypeError in the
    report stage's loss-curve plot."""
    from ladder.plots import plot_loss_curves

    p = json.loads(plan.read_text())
    rung = p["rungs"][0]["name"]
    (tmp_path / "root" / rung).mkdir(parents=True)
    (tmp_path / "root" / rung / "metrics.jsonl").write_text(
        '{"step": 1, "tokens": 100, "loss": 5.0}\n{"step": 2}\n{"step": 3, "tokens": 300, "loss": "low"}\n'
        '{"step": 4, "tokens": 400, "loss": 4.0}\n')
    path = plot_loss_curves(p, str(tmp_path / "root"), tmp_path / "out")
    assert path is not None and path.stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    # before: exit 0, the results table replaced by the predictions JSON (the input lost)
    (["predict", "{res}", "--target", "t=1e9:2e10", "-o", "{res}", "--overwrite"], "is also the input results"),
    (["import", "csv", "{res}", "--map", "run=run,n=n,d=d,step=step,task=task,acc=acc,loss=loss", "-o", "{res}",
      "--overwrite"], "is also the input PATH"),
    (["predict", "{tmp}/link.csv", "--target", "t=1e9:2e10", "-o", "{res}", "--overwrite"], "is also the input results"),
    (["collect", "{plan}", "--run-root", "{tmp}", "-o", "{plan}", "--overwrite"], "is also the input plan"),
])
def test_an_output_onto_one_of_the_inputs_is_refused(capsys, tmp_path, plan, argv, message):
    res = _results(tmp_path)
    (tmp_path / "link.csv").symlink_to(res)
    before = res.read_bytes(), plan.read_bytes()
    rc, err = _probe(capsys, [a.replace("{res}", str(res)).replace("{tmp}", str(tmp_path)).replace("{plan}", str(plan))
                              for a in argv])
    assert rc == 2 and message in err and "write the output to another path" in err, err
    assert (res.read_bytes(), plan.read_bytes()) == before


@pytest.mark.parametrize("source, message", [
    ("{tmp}/nowhere", "nowhere: does not exist"),  # all three said "no run CSVs found"
    ("{res}", "res.csv: is a file, not a directory"),
    ("{tmp}/empty", "holds no run CSVs"),
])
def test_import_olmo_says_what_is_wrong_with_its_directory(capsys, tmp_path, source, message):
    res = _results(tmp_path)
    (tmp_path / "empty").mkdir()
    rc, err = _probe(capsys, ["import", "olmo", source.replace("{tmp}", str(tmp_path)).replace("{res}", str(res)),
                              "-o", tmp_path / "out.csv"])
    assert rc == 2 and message in err, err


@pytest.mark.parametrize("key, value, message", [
    ("cpt.global_batch", 0, "cpt.global_batch: 0; give a batch >= 1"),  # was a ZeroDivisionError traceback
    ("cpt.lr_factor", -1.0, "cpt.lr_factor: -1.0 is not a positive number"),  # failed after the base runs trained
    ("fit.starts", 0, "fit.starts: 0; give 1 or more"),  # the same, after the whole grid trained
    ("cpt.seed_offset", -1, "cpt.seed_offset: -1"),
])
def test_a_cpt_study_value_is_checked_before_any_run_trains(key, value, message):
    from ladder import cpt

    cfg = cpt.default_config()
    section, leaf = key.split(".")
    cfg[section][leaf] = value
    with pytest.raises(LadderError, match=message):
        cpt.check_config(cfg)
    cpt.check_config(cpt.default_config())


@pytest.mark.parametrize("edit, message", [
    # before: fraction 5 was read, and the report said the rungs spent 500% of the targets' compute
    (lambda p: p.update(fraction=5), r"fraction is 5, but the rungs' shares of the targets' compute sum to 0\.0100"),
    (lambda p: p["rungs"][0].update(share=0.5), r"share is 0\.5, but its flops_6nd over the targets' combined"),
])
def test_a_plan_fraction_or_share_that_disagrees_with_the_flops_is_named(capsys, tmp_path, plan, edit, message):
    p = json.loads(plan.read_text())
    edit(p)
    plan.write_text(json.dumps(p))
    rc, err = _probe(capsys, ["status", plan, "--run-root", tmp_path / "root"])
    assert rc == 2 and re.search(f"plan.json: .*{message}", err) and "rewrite the plan with `ladder plan`" in err, err


def test_a_plan_fraction_rounded_by_hand_is_still_read(capsys, tmp_path, plan):
    p = json.loads(plan.read_text())
    p["fraction"] = float(f"{p['fraction']:.4g}")
    plan.write_text(json.dumps(p))
    assert _probe(capsys, ["status", plan, "--run-root", tmp_path / "root"])[0] == 0


# ------------------------------------------------------------------------------------------ signals

def _terminate_self(*_, **__):
    import signal

    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM was not raised")  # the handler raises at the kill; reaching here is a failure


@pytest.mark.parametrize("argv", [["plan", "--preset", "smoke"], ["import", "csv", "{res}", "-o", "{tmp}/o.csv"],
                                  ["report", "specialization", "{res}"],
                                  ["predict", "{res}", "--target", "t=1e9:2e10", "-o", "{tmp}/p.json"]])
def test_sigterm_during_a_verb_is_one_line_and_143(capsys, tmp_path, monkeypatch, argv):
    """Before: exit 143 with no word. The previous handler is back after the verb."""
    import importlib
    import signal

    res = _results(tmp_path)
    argv = [a.replace("{res}", str(res)).replace("{tmp}", str(tmp_path)) for a in argv]
    monkeypatch.setattr(importlib.import_module(f"ladder.commands.{cli.VERBS[argv[0]][0]}"), "run", _terminate_self)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(argv) == 143
    err = capsys.readouterr().err
    assert err == f"ladder {argv[0]}: interrupted by SIGTERM; nothing half-written (every file is written whole or " \
                  "not at all), re-run the same command to do the work\n", err
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_while_predict_writes_leaves_the_old_output_and_no_temp_file(capsys, tmp_path, monkeypatch):
    from ladder import storage

    out = tmp_path / "p.json"
    out.write_text("old\n")
    monkeypatch.setattr(storage.os, "fsync", _terminate_self)
    rc = cli.main(["predict", str(_results(tmp_path)), "--target", "t=1e9:2e10", "-o", str(out), "--overwrite"])
    assert rc == 143 and "interrupted by SIGTERM" in capsys.readouterr().err
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "res.csv"]


def test_the_cli_leaves_sigterm_to_the_trainer_while_it_steps(monkeypatch):
    """`ladder train` (and cpt) train in-process: ladder/preemption.py's handler saves a checkpoint on SIGTERM
    while the steps run; before and after them (data build, compile) SIGTERM is the CLI's one line and 143
    (session 9: it ended the process with no word)."""
    import signal

    from ladder.commands import train
    from ladder.preemption import Preemption

    seen = []

    def run(args):
        seen.append(signal.getsignal(signal.SIGTERM))
        preemption = Preemption()
        seen.append(signal.getsignal(signal.SIGTERM))
        preemption.restore()
        seen.append(signal.getsignal(signal.SIGTERM))
        return 0

    outside = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(train, "run", run)
    assert cli.main(["train", TINY]) == 0 and signal.getsignal(signal.SIGTERM) == outside
    assert seen[0] != outside and seen[1] == preemption_handler(seen[1]) and seen[2] == seen[0]


def preemption_handler(handler):
    from ladder.preemption import Preemption

    assert getattr(handler, "__func__", None) is Preemption._handle
    return handler


# ------------------------------------------------------------------------------------------ -o through a link

def test_an_output_that_is_a_link_is_written_through_to_its_target(capsys, tmp_path):
    """Before: `-o link.json` replaced the link by a regular file and left its target as it was."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "p.json").write_text("old\n")
    (tmp_path / "link.json").symlink_to(shared / "p.json")
    (tmp_path / "dangling.json").symlink_to(shared / "new.json")
    for out in ("link.json", "dangling.json"):
        rc, err = _probe(capsys, ["plan", "--preset", "smoke", "-o", tmp_path / out, "--overwrite"])
        assert rc == 0, err
        assert (tmp_path / out).is_symlink()
    assert json.loads((shared / "p.json").read_text())["rungs"] and json.loads((shared / "new.json").read_text())["rungs"]
    assert sorted(p.name for p in shared.iterdir()) == ["new.json", "p.json"]  # no temp file left beside either


def test_a_link_written_through_stays_atomic_and_names_both_paths(tmp_path, monkeypatch):
    from ladder import storage

    (tmp_path / "ro").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "ro" / "f")
    storage.write_text(tmp_path / "link", "one")
    assert (tmp_path / "ro" / "f").read_text() == "one" and (tmp_path / "link").is_symlink()
    monkeypatch.setattr(storage.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError) as e:
        storage.write_text(tmp_path / "link", "two")
    assert (e.value.filename, e.value.filename2) == (str(tmp_path / "link"), str(tmp_path / "ro" / "f"))
    assert (tmp_path / "ro" / "f").read_text() == "one" and os.listdir(tmp_path / "ro") == ["f"]


def test_a_dangling_output_link_into_a_missing_directory_is_refused_before_the_fit(capsys, tmp_path):
    (tmp_path / "link.json").symlink_to(tmp_path / "nowhere" / "p.json")
    rc, err = _probe(capsys, ["predict", _results(tmp_path), "--target", "t=1e9:2e10", "-o", tmp_path / "link.json"])
    assert rc == 2 and f"link.json is a link to {tmp_path}/nowhere/p.json, whose directory does not exist" in err, err


# ------------------------------------------------------------------------------------------ library noise

def test_a_fresh_data_build_logs_no_tfds_variant_folder_warning(tmp_path, caplog):
    """Before: two 'WARNING:absl:Variant folder ... has no dataset_info.json' lines on every fresh cache (tfds's
    is_prepared() answering no). Warnings logged outside that question still show."""
    import logging

    from ladder.data import tfds_builder

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a document with some words in it\n" * 20)
    builder = tfds_builder.files_builder(str(tmp_path / "docs"), tmp_path / "tfds")
    with caplog.at_level(logging.WARNING):
        assert tfds_builder.prepared(builder).is_prepared()
        logging.getLogger("absl").warning("still shown")
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "still shown" in shown and not [m for m in shown if "Variant folder" in m], shown
