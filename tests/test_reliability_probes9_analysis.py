"""Session 9's hostile-input round on the analysis and launch side (plan, import, predict, launch/status/collect
and the Python API a notebook calls): each class is read as meant or refused with one line naming the
argument, field or file. Each test names what happened before; the rules are in docs/laws.md ("From
Python"), docs/planning.md (Inputs) and docs/cloud-tpu.md ("When something is wrong"). Cheap: tiny tables in tmp_path, fits with method paper, no bootstrap, one task."""

import csv
import logging
import pathlib
import shlex
import shutil
import socket
import subprocess

import numpy as np
import pytest

from ladder import cli
from ladder.commands.predict import plot_dir_names
from ladder.errors import LadderError
from ladder.importers import import_csv, parse_mapping
from ladder.launch import cloud_names
from ladder.laws.predict import predict
from ladder.plan import plan_ladder
from ladder.plan.dryrun import parse_mesh
from ladder.results import read_table, write_table

SIZES = (60e6, 150e6, 370e6, 760e6)
MULTS = (1, 2, 5, 10)


def _rows():
    """A clean 4-size x 4-budget ladder, two checkpoints per run, one task."""
    out = []
    for n in SIZES:
        for m in MULTS:
            D = 20 * n * m
            for s in (1, 2):
                d = D * s / 2
                out.append({"run": f"{n / 1e6:.0f}M-{m}xC", "n": n, "d": d, "step": 100 * s, "task": "arc_easy",
                            "loss": 0.5 + 400 / n ** 0.3 + 300 / d ** 0.3,
                            "acc": min(0.95, 0.25 + 0.05 * np.log10(6 * n * d / 1e17))})
    return out


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "results.csv"
    write_table(path, _rows())
    return path


def _acc(cols, targets=None, **kw):
    args = dict(method="paper", n_bootstrap=0, workers=1, tasks=["arc_easy"])
    args.update(kw)
    pred = predict(cols, targets or {"7B": (7e9, 4e12)}, **args)
    return pred.results["7B"]["arc_easy"]["acc"]


# --- the Python API: every form a notebook has the table in gives the validated table's prediction ---

def test_the_predictor_takes_the_table_in_any_form_a_notebook_has(table):
    reference = _acc(read_table(table, validate=True))
    rows = list(csv.DictReader(open(table)))
    forms = [str(table), pathlib.Path(table), rows, _rows(),
             {k: [r[k] for r in _rows()] for k in _rows()[0]}, read_table(table)]
    for cols in forms:  # before: TypeError / AttributeError in taskdata.py for all but the last
        assert _acc(cols) == pytest.approx(reference, abs=1e-12)
    assert _acc(read_table(table), tasks="arc_easy") == pytest.approx(reference)  # was read letter by letter
    assert _acc(read_table(table), targets={"7B": np.array([7e9, 4e12])}) == pytest.approx(reference)
    assert _acc(read_table(table), targets={"7B": ("7e9", "4e12")}, n_bootstrap=np.int64(0)) == pytest.approx(reference)


@pytest.mark.parametrize("change, says", [
    (dict(cols=None), "cols: is a NoneType"),
    (dict(cols={"run": np.array(["a"])}), "cols: has no column 'n'"),
    (dict(targets=[("7B", 7e9, 4e12)]), "targets: is a list"),
    (dict(targets="7b-4t"), "targets: is a str"),
    (dict(targets={"7B": (7e9,)}), "targets['7B']: is (7000000000.0,)"),
    (dict(targets={"7B": ("7B", "4T")}), "N = '7B' is not a number"),
    (dict(targets={"7B": (float("nan"), 4e12)}), "N = nan is not a positive finite number"),
    (dict(targets={"7B": (7e9, 0)}), "D = 0 is not a positive finite number"),
    (dict(targets={"7B": (7e9, 1e31)}), "D = 1e+31 is above 1e+30"),
    (dict(targets={"7B": (7e9, 4e3)}), "fewer tokens than parameters"),
    (dict(runs=[]), "runs: is empty"),
    (dict(tasks=[]), "tasks: is empty"),
    (dict(n_bootstrap=2.5), "n_bootstrap: is 2.5"),
    (dict(n_bootstrap=True), "n_bootstrap: is True"),
    (dict(seed="1"), "seed: is '1'"),
    (dict(workers="2"), "workers: is '2'"),
    (dict(method=["paper"]), "method: is ['paper']"),
])
def test_arguments_of_the_wrong_kind_are_one_line(table, change, says):
    """Before: TypeError, IndexError or ValueError inside numpy or the fits; NaN and zero targets were fitted."""
    args = dict(cols=read_table(table, validate=True), targets=None)
    args.update(change)
    with pytest.raises(LadderError, match=None) as e:
        _acc(**args)
    assert says in str(e.value)


def test_paths_and_mappings_from_python(tmp_path, table):
    assert len(read_table(bytes(table)) ["run"]) == len(_rows())
    for bad in (3, None, open(table)):
        with pytest.raises(LadderError, match="is not a path"):
            read_table(bad)
    src = tmp_path / "in.csv"
    src.write_text("model,params,tokens,task,accuracy\n" + "".join(
        f"m{i}-{m},{n:.0f},{n * m:.0f},arc,{0.3 + 0.05 * i}\n" for i, n in enumerate(SIZES[:3]) for m in (10, 20)))
    text = "run=model,n=params,d=tokens,task=task,acc=accuracy"
    as_dict = dict(run="model", n="params", d="tokens", task="task", acc="accuracy")
    rows = [repr(import_csv(*args)) for args in ((src, text), (str(src), as_dict), (src, parse_mapping(text)))]
    assert rows[0] == rows[1] == rows[2]  # repr: the blank losses are NaN
    assert parse_mapping(as_dict) == as_dict
    for bad in (None, ["run=model"]):
        with pytest.raises(LadderError, match="is not FIELD=COLUMN text"):
            import_csv(src, bad)


def test_plan_ladder_takes_one_target_and_comma_strings():
    assert len(plan_ladder("7b-4t")["rungs"]) == len(plan_ladder(["7b-4t"])["rungs"])
    assert [r["name"] for r in plan_ladder("7b-4t", sizes="60M,150M", multiples="1,2")["rungs"]] == \
        [r["name"] for r in plan_ladder(["7b-4t"], sizes=["60M", "150M"], multiples=[1, 2])["rungs"]]
    with pytest.raises(LadderError, match="spend 2.63e\\+06x the targets' compute"):  # before: planned and written
        plan_ladder("7b-4t", sizes="60M", multiples="1e12")


# --- the CLI ---

def _run(argv, capsys):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's refusal of an option value (the usage line, then one error line)
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("target", ["7b-4", "7B=7:4", "x=1e9:1e6"])
def test_a_target_with_fewer_tokens_than_parameters_is_a_unit_slip(table, tmp_path, capsys, target):
    """Before: predicted, and flagged IN ('inside the ladder's range'), at 6ND = 168 FLOPs."""
    code, _, err = _run(["predict", table, "--target", target, "-o", tmp_path / "p.json"], capsys)
    assert code == 2 and "fewer tokens than parameters" in err and err.count("\n") == 1
    if "=" not in target or target.startswith("x"):
        code, _, err = _run(["plan", "--target", target], capsys)
        assert code == 2 and "fewer tokens than parameters" in err


@pytest.mark.parametrize("mesh, says", [
    ("foo=2", "unknown axis foo"), ("data=0", "mesh.data: size 0 is invalid"),
    ("data=-1,fsdp=-1", "both -1"), ("data=2,data=2", "axis data is given twice"), ("data=x", "cannot read"),
])
def test_a_mesh_is_checked_before_any_slice_is_tried(mesh, says):
    with pytest.raises(LadderError, match=None) as e:
        parse_mesh(mesh)
    assert says in str(e.value)


def test_a_dry_run_mesh_without_devices(capsys):
    """Before: `--mesh fsdp=-1` (no tensor axis) ended in KeyError 'tensor'; a mesh no slice size divides was
    reported as 'does not fit any single v5p slice by the memory estimate'."""
    code, out, _ = _run(["plan", "--target", "7b-4t", "--dry-run", "--mesh", "fsdp=-1"], capsys)
    assert code == 0 and "v5p-" in out
    code, _, err = _run(["plan", "--target", "7b-4t", "--dry-run", "--mesh", "data=2,fsdp=3"], capsys)
    assert code == 2 and "mesh: no v5p slice" in err and "memory" not in err


def test_import_names_an_infinite_cell_and_a_column_spelled_alike(tmp_path, capsys):
    def imp(text, mapping="run=model,n=params,d=tokens,task=task,acc=accuracy"):
        (tmp_path / "in.csv").write_text(text)
        return _run(["import", "csv", tmp_path / "in.csv", "--map", mapping, "-o", tmp_path / "o.csv",
                     "--overwrite"], capsys)
    body = "".join(f"m{i}-{m},{n:.0f},{n * m:.0f},arc,{0.3 + 0.05 * i}\n" for i, n in enumerate(SIZES[:3]) for m in (10, 20))
    code, _, err = imp("model,params,tokens,task,accuracy\n" + body.replace("60000000,", "1e400,", 1))
    assert code == 2 and "in.csv:2: column 'params' has '1e400', an infinite n" in err
    code, _, err = imp("model,params,tokens,task,accuracy\n" + body.replace(",0.3\n", ",inf\n", 1))
    assert code == 2 and "column 'accuracy' has 'inf', an infinite acc" in err
    code, _, err = imp("Model,Params,Tokens,Task,Accuracy\n" + body)
    assert code == 2 and "(mapped to n); did you mean 'Params'? (names are compared exactly)" in err


def test_set_plot_folders_never_collide():
    """Before: sets 'a/b' and 'a_b' both plotted into a_b/ (the second replaced the first)."""
    names = ["a/b", "a_b", "C4", "c4", "dolma", "../x", "ü"]
    folders = plot_dir_names(names)
    assert folders["a_b"] == "a_b" and folders["dolma"] == "dolma"
    assert len({f.casefold() for f in folders.values()}) == len(names)
    assert all("/" not in f and not f.startswith(".") for f in folders.values())


def test_every_help_example_parses():
    for verb in cli.VERBS:
        text = cli.verb_parser(verb, cli._load(verb)).format_help()
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(f"ladder {verb} "):
                cli.parse(verb, shlex.split(line)[2:])  # SystemExit on an example the parser refuses


# --- launch: the names a cloud launch hands to gcloud ---

@pytest.fixture(scope="module")
def olmo_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "olmo.json"
    assert cli.main(["plan", "--target", "7b-4t", "-o", str(path)]) == 0
    return path


def _launch(plan, capsys, *extra, backend="tpu-vm"):
    argv = ["launch", plan, "--dry-run", "--no-compile-check", "--backend", backend, "--run-root", "gs://bkt/x",
            "--project", "my-proj", "--zone", "us-central2-b", "--rung", "93M-1xC"]
    argv += ["--package", "ladder"] if backend != "xpk" else ["--image", "gcr.io/p/ladder:1", "--cluster", "c1"]
    return _run(argv + list(extra), capsys)


@pytest.mark.parametrize("extra, says", [
    (["--project", "My_Proj"], "--project: 'My_Proj' is not a project ID"),
    (["--project", "p;rm -rf /"], "is not a project ID"),
    (["--zone", "us-central2"], "is a region, not a zone; add the zone's letter, e.g. us-central2-b"),
    (["--zone", "US-CENTRAL2-B"], "is not a zone name"),
    (["--run-root", "gs://B_ad/x"], "'B_ad' in 'gs://B_ad/x' is not a Cloud Storage bucket name"),
    (["--run-root", "gs://"], "is not a Cloud Storage bucket name"),
    (["--run-root", "gs://bkt//x"], "an empty part (//)"),
    (["--run-root", "gs://bkt/x\ny"], "a control character"),
    (["--package", "ladder\nid"], "--package: 'ladder\\nid' has a control character"),
    (["--runtime-version", "v2 alpha"], "has a space"),
    (["--rung", "93M-1xC"], "--rung: 93M-1xC is listed twice"),
    (["--price", "v5p=nan"], "--price v5p=nan: expected"),
    (["--price", "v5p=inf"], "--price v5p=inf: expected"),
])
def test_cloud_names_are_checked_before_the_plan_ships(olmo_plan, capsys, extra, says):
    """Before: every one printed a launch (the gcloud commands, shell-quoted) and an estimate ($nan, or twice
    the chip-hours for a rung listed twice); gcloud would refuse the project only mid-launch."""
    code, out, err = _launch(olmo_plan, capsys, *extra)
    assert code == 2 and says in err and "gcloud" not in out


def test_xpk_cluster_and_image_and_a_work_dir_that_is_a_file(olmo_plan, capsys, tmp_path):
    code, _, err = _launch(olmo_plan, capsys, "--cluster", "C_1 x", backend="xpk")
    assert code == 2 and "is not a GKE cluster name" in err
    code, _, err = _launch(olmo_plan, capsys, "--image", "us-docker.pkg.dev/MY_PROJECT/l/l:v1", backend="xpk")
    assert code == 2 and "capitals in its repository path 'MY_PROJECT/l/l'" in err
    for ok in ("localhost:5000/team/img:RC1", "ubuntu:Jammy", "gcr.io/p/img@sha256:ABC"):  # tags, digests, ports
        cloud_names.check_image(ok)
    (tmp_path / "w").write_text("")
    code, _, err = _launch(olmo_plan, capsys, "--work-dir", tmp_path / "w")
    assert code == 2 and "--work-dir" in err and "is a file" in err
    code, out, _ = _launch(olmo_plan, capsys)
    assert code == 0 and "tpu-vm create ladder-93m-1xc" in out


def test_rungs_whose_resource_names_collide_are_refused(olmo_plan, capsys, tmp_path):
    """Before: '1.3B-1xC' and '1-3B-1xC' (a hand-edited plan) both got TPU VM ladder-1-3b-1xc."""
    import json

    plan = json.loads(olmo_plan.read_text())
    plan["rungs"] = [dict(plan["rungs"][0], name=n) for n in ("1.3B-1xC", "1-3B-1xC")]
    plan["fraction"] = sum(r["share"] for r in plan["rungs"])
    path = tmp_path / "coll.json"
    path.write_text(json.dumps(plan))
    code, _, err = _run(["launch", path, "--dry-run", "--no-compile-check", "--backend", "tpu-vm", "--run-root",
                         "gs://bkt/x", "--package", "ladder"], capsys)
    assert code == 2 and "rungs 1.3B-1xC and 1-3B-1xC would share the cloud resource name ladder-1-3b-1xc" in err


PROJECTS = ["my-proj", "1proj", "example.com:my-proj", "proj-", "my_proj", "Proj", "prøj", "p;rm"]


def test_the_project_rule_is_gclouds():
    """Ours matches the installed gcloud's offline check on each (skipped without gcloud); the values and their
    verdicts are pinned either way."""
    ours = {p: bool(cloud_names.PROJECT.match(p)) for p in PROJECTS}
    assert ours == {"my-proj": True, "1proj": True, "example.com:my-proj": True, "proj-": False,
                    "my_proj": False, "Proj": False, "prøj": False, "p;rm": False}
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed")
    for p in PROJECTS:
        done = subprocess.run(["gcloud", "compute", "tpus", "tpu-vm", "describe", "x", "--zone=us-central2-b",
                               f"--project={p}"], capture_output=True, text=True, timeout=60,
                              env={"CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "PATH": "/usr/bin:/bin"})
        assert ("not a valid project ID" not in done.stderr and "not the project name" not in done.stderr) == ours[p], p


def test_status_names_an_unreachable_storage_and_a_bad_bucket(capsys, olmo_plan):
    """Before: 55 lines of gcsfs/aiohttp tracebacks, then 'a file: Name or service not known; check that the path
    exists ... and that the disk is not full'; a bucket Cloud Storage refuses took a minute of retries."""
    line = cli.os_error_line(socket.gaierror(-2, "Name or service not known"))
    assert line.startswith("Cloud Storage cannot be reached (Name or service not known); check the network")
    assert cli.os_error_line(FileNotFoundError(2, "No such file or directory", "x.csv")).startswith("x.csv: No such")
    cli.quiet_library_loggers()
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("gcsfs").handlers)
    code, _, err = _run(["status", olmo_plan, "--run-root", "gs://B_ad/x"], capsys)
    assert code == 2 and "is not a Cloud Storage bucket name" in err


def test_flops_per_token_that_is_the_total_compute_is_refused_and_an_unused_one_is_said(table, tmp_path, capsys):
    """Before: F = 1.7e23 (7B's total training FLOPs) was predicted from, without a flag; and on a table without
    a flops column any F was dropped without a word (compute is 6ND there on both sides)."""
    code, _, err = _run(["predict", table, "--target", "7B=6.89e9:3.95e12:1.7e23", "-o", tmp_path / "p.json"], capsys)
    assert code == 2 and "is 4.11e+12 x 6N (is it the total training FLOPs?)" in err
    with pytest.raises(LadderError, match="is below 2N"):
        _acc(read_table(table, validate=True), targets={"7B": (7e9, 4e12, 1.0)})
    code, out, _ = _run(["predict", table, "--target", "7B=7e9:4e12:4.2e10", "--method", "compute", "--bootstrap",
                         "0", "--workers", "1", "-o", tmp_path / "p.json"], capsys)
    assert code == 0 and "note: --target 7B: F is not used; the table has no flops column" in out
