import json
import shlex
import subprocess
import sys

import pytest

from ladder import cli
from ladder.errors import LadderError
from ladder.results import append_rows


def test_help_lists_every_verb(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in cli.VERBS:
        assert verb in out


def test_unknown_verb_exits_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown verb" in capsys.readouterr().err


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "ladder", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "plan" in r.stdout


def test_version_comes_from_package_metadata(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ladder {cli.version()}"


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_every_verb_has_examples_defaults_and_says_how_to_override_a_config(verb):
    module = cli._load(verb)
    text = cli.verb_parser(verb, module).format_help()
    assert "examples:\n  ladder " + verb in text
    assert ("--config.section.key=value" in text or "--config.eval.key=value" in text) == \
        getattr(module, "TAKES_CONFIG", False)
    for example in module.EXAMPLES.strip().splitlines():  # each example parses
        argv = shlex.split(example, comments=True)
        assert argv[:2] == ["ladder", verb]
        cli.parse(verb, argv[2:])


# The config each verb's --config.* overrides land in (launch and compile: every rung's train config).
OVERRIDDEN_CONFIG = {"train": "configs/tiny.py", "run": "configs/smoke.py", "cpt": "configs/specialization.py",
                     "launch": "configs/tiny.py", "compile": "configs/tiny.py"}


@pytest.mark.parametrize("verb", sorted(OVERRIDDEN_CONFIG))
def test_the_override_line_names_a_key_the_verbs_config_has(verb):
    """Before: every verb's help gave --config.train.total_steps=100, an unknown key for `ladder run` and `ladder
    cpt` (their configs have no train section)."""
    from ladder.config import load_config

    module = cli._load(verb)
    assert module.TAKES_CONFIG and not hasattr(module, "CONFIG_LINE")
    line = cli.verb_parser(verb, module).epilog.splitlines()[-1]
    example = line.split("e.g. ")[1].split()[0]
    load_config(OVERRIDDEN_CONFIG[verb], [example[len("--config."):]])


def test_help_defaults_read_as_typed(capsys):
    text = " ".join(cli.verb_parser("allocate", cli._load("allocate")).format_help().split())
    assert "(default: 1e6 1e13)" in text and "(default: 0 1)" in text
    text = " ".join(cli.verb_parser("data", cli._load("data")).format_help().split())
    assert "(default: )" not in text


def test_defaults_are_shown_once():
    text = " ".join(cli.verb_parser("fit", cli._load("fit")).format_help().split())
    assert "(default: 24)" in text and "(default: text)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_config_overrides_are_refused_by_verbs_without_a_config(capsys):
    with pytest.raises(SystemExit):
        cli.parse("plan", ["--preset", "smoke", "--config.train.total_steps=3"])
    assert "unrecognized arguments: --config.train.total_steps=3" in capsys.readouterr().err
    _, args = cli.parse("train", ["configs/tiny.py", "--config.train.total_steps=3"])
    assert args.config_overrides == ["train.total_steps=3"]


def test_an_existing_output_is_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert cli.main(["plan", "--preset", "smoke", "-o", str(out)]) == 0
    out.write_text("{}")
    assert cli.main(["plan", "--preset", "smoke", "-o", str(out)]) == 2
    assert f"--out: {out} already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "{}"
    assert cli.main(["plan", "--preset", "smoke", "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["preset"] == "smoke"


def test_targets_are_read_the_same_way_by_plan_and_predict(tmp_path):
    from ladder.commands.common import plan_targets, resolve_targets

    assert cli.main(["plan", "--target", "7b-4t", "--target", "big=3e9:6e10", "--fraction", "0.01",
                     "-o", str(tmp_path / "p.json")]) == 0
    from_plan = plan_targets(tmp_path / "p.json")
    from_flags = resolve_targets(["7b-4t", "big=3e9:6e10"])
    assert from_plan["7b-4t"] == from_flags["7b-4t"]
    assert from_flags["big"] == (3e9, 6e10)  # NAME=N:D is taken exactly; the plan shapes an arch near N
    assert from_plan["big"][1] == 6e10 and from_plan["big"][0] == pytest.approx(3e9, rel=0.1)
    assert resolve_targets(["7B=7B:4T"]) == {"7B": (7e9, 4e12)}
    assert resolve_targets(["7B=7B:4T:4.2e10"]) == {"7B": (7e9, 4e12, 4.2e10)}
    with pytest.raises(LadderError, match="^--target: cannot read 'x=1e9'"):
        resolve_targets(["x=1e9"])


def test_predict_takes_its_targets_from_a_plan(tmp_path, capsys):
    from test_predict import synthetic_rows

    append_rows(tmp_path / "r.csv", synthetic_rows())
    assert cli.main(["plan", "--preset", "olmo-ladder", "-o", str(tmp_path / "plan.json")]) == 0
    common = [str(tmp_path / "r.csv"), "--bootstrap", "0", "--method", "single-step"]
    assert cli.main(["predict", *common, "--plan", str(tmp_path / "plan.json"), "-o", str(tmp_path / "a.json")]) == 0
    assert cli.main(["predict", *common, "--target", "7b-4t", "--target", "13b-5t", "-o", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert set(a) == {"7b-4t", "13b-5t"} and a == b
    assert cli.main(["predict", *common, "--plan", str(tmp_path / "plan.json"), "-o", str(tmp_path / "a.json")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_native_stderr_is_quiet_while_libtpu_loads_and_replayed_on_failure(capfd):
    """`ladder compile` (and a trainer's backend start off a TPU VM) loads libtpu inside
    cpu_threads.native_stderr_quiet: its C++ start-up lines (written to fd 2,
    which no env var silences) are dropped, unless loading fails, when they are the diagnosis."""
    import os

    from ladder.cpu_threads import native_stderr_quiet

    with native_stderr_quiet():
        os.write(2, b"WARNING: could not determine TPU accelerator type\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), native_stderr_quiet():
        os.write(2, b"E0000 libtpu_init_utils.cc:370\n")
        raise RuntimeError("libtpu failed")
    assert capfd.readouterr().err == "E0000 libtpu_init_utils.cc:370\n"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
