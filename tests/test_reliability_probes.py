"""Issue 18, session 6: hostile probes of kinds no earlier round tried (degenerate tables that fitted to a
confident number, held-out runs that were also fitted, budgets and names that made nonsense, plan fields that
disagree with what a rung trains, closed pipes). Each is one line naming the field or file, or a printed note;
never a traceback, a NaN or a confident number from nothing. No JAX, no training: every probe stops at its check.
"""

import csv
import json

import pytest

from ladder import cli
from ladder.errors import LadderError
from tests.test_reliability_inputs import _probe, _write

SIZES = (1e6, 2e6, 4e6, 8e6, 16e6, 32e6)  # six runs: enough for the paper's 5-parameter step 1


def _table(acc=lambda i, s: 0.3 + 0.02 * i + 0.01 * s, loss=lambda i, n: 1 + 1e3 / n ** 0.3,
           d=lambda i, n, s: n * 5 * s):
    return "run,n,d,step,task,loss,acc\n" + "".join(
        f"r{i},{n},{d(i, n, s)},{s},t,{loss(i, n)},{acc(i, s)}\n" for i, n in enumerate(SIZES) for s in (1, 2, 3, 4))


def _predict(capsys, tmp_path, table, *extra):
    res = _write(tmp_path, table)
    return _probe(capsys, ["predict", res, "--target", "t=1e9:2e10", "--method", "paper", "--bootstrap", "0",
                           "-o", tmp_path / "p.json", *extra])


@pytest.mark.parametrize("table, message", [
    (_table(acc=lambda i, s: 0.5), "task t: the accuracy is 0.5 in every fitted row, so there is no trend to fit"),
    (_table(acc=lambda i, s: 0.0), "the accuracy is 0 in every fitted row"),  # was predicted 1.000 [1.000, 1.000]
    (_table(acc=lambda i, s: 1.0), "the accuracy is 1 in every fitted row"),
    (_table(loss=lambda i, n: 2.0), "the step-1 feature (the method's loss column) is 2 in every run"),
    (_table(d=lambda i, n, s: 1e7), "step 1 sees one token count only (D = 1e+07 in every run)"),
])
def test_degenerate_tables_cannot_be_fitted(capsys, tmp_path, table, message):
    """Before: exit 0 and a prediction of 1.000 with the interval [1.000, 1.000] (constant accuracy), or an
    extrapolation in D from a table where D never varies."""
    rc, err = _predict(capsys, tmp_path, table)
    assert rc == 2 and message in err, err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("extra, message", [
    (("--holdout", "zz*"), "--holdout: 'zz*' matches no run in the table"),  # was named '--runs', after the fit
    (("--holdout", "r*"), "--holdout: holds out every run, so none is left to fit"),  # was error 0.0000
    (("--holdout", "r5", "--runs", "r*"), "--holdout: runs r5 are also fitted (--runs)"),
    (("--bootstrap", "1000000000"), "argument --bootstrap: must be <= 100,000, got 1,000,000,000"),  # ran for ever
])
def test_holdout_and_bootstrap_are_checked_before_the_fit(capsys, tmp_path, extra, message):
    rc, err = _predict(capsys, tmp_path, _table(), *extra)
    assert rc == 2 and message in err, err
    assert not (tmp_path / "p.json").exists()


def test_holdout_leaves_the_held_out_runs_out_of_the_fit(capsys, tmp_path):
    """With no --runs the fit is every run not held out; a method that cannot fit names why and prints n/a."""
    res = _write(tmp_path, _table())
    rc = cli.main([str(a) for a in ("predict", res, "--target", "t=1e9:2e10", "--method", "paper", "--bootstrap",
                                    "0", "-o", tmp_path / "p.json", "--holdout", "r5")])
    out = capsys.readouterr().out
    assert rc == 0 and "fitted runs: r0, r1, r2, r3, r4\n" in out
    assert "n/a" in out and "nan" not in out.split("held-out runs", 1)[1]
    hold = json.loads((tmp_path / "p.holdout.json").read_text())
    assert hold["t"]["paper"]["runs"] == ["r5"]
    assert hold["t"]["single-step"]["problem"].startswith("task t: single-step fit has 5 runs")
    assert "DIR" not in json.loads((tmp_path / "p.json").read_text())["t"]["t"]["flags"]  # accuracy rises


# ------------------------------------------------------------------------ specialization: fit, report, allocate

def _study(tmp_path, edit):
    from tests.test_split import write_two_domain_study

    path = write_two_domain_study(tmp_path / "study.csv")
    rows = list(csv.DictReader(open(path)))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(edit(r) for r in rows)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda r: dict(r, domain_loss="1.5"), "domain_loss: is 1.5 at every point, so there is no trend to fit"),
    (lambda r: dict(r, n="1000000"), "n: every point has the same model size N = 1e+06"),  # was r2 0.28, exit 0
    (lambda r: dict(r, domain="legal/../x"), "domain: 'legal/../x' cannot be part of a file name"),
])
def test_fit_split_refuses_what_it_cannot_fit(capsys, tmp_path, edit, message):
    rc, err = _probe(capsys, ["fit", "split", _study(tmp_path, edit), "-o", tmp_path / "out"])
    assert rc == 2 and message in err, err
    assert not (tmp_path / "out").exists()


def test_report_metric_must_be_numeric(capsys, tmp_path):
    """Before: ValueError traceback (could not convert string to float)."""
    rc, err = _probe(capsys, ["report", "specialization", _study(tmp_path, dict), "--metric", "run",
                              "-o", tmp_path / "out"])
    assert rc == 2 and "--metric run: is a text column, not a loss" in err, err


SPLIT_LAW = {"E": 1.5, "A": 400.0, "alpha": 0.3, "B": 400.0, "beta": 0.3, "k": 0.5, "rho": 0.9}


@pytest.mark.parametrize("extra, message", [
    (("--budget", "1e20", "--domains", ","), "--domains: is empty"),  # was every domain
    (("--budget", "1e20", "--domains", "legal,legal"), "--domains: 'legal' is listed twice"),  # was collapsed
    (("--budget", "1"), "--budget: 1 FLOPs leaves 1.67e-07 pretraining tokens"),  # was an allocation, exit 0
])
def test_allocate_budgets_and_domains(capsys, tmp_path, extra, message):
    (tmp_path / "law.json").write_text(json.dumps({"domains": {"legal": {"params": SPLIT_LAW},
                                                               "code": {"params": SPLIT_LAW}}}))
    rc, err = _probe(capsys, ["allocate", "split", "--law", tmp_path / "law.json", *extra, "-o", tmp_path / "out"])
    assert rc == 2 and message in err, err


def test_allocate_at_the_edge_of_the_size_range_says_so(capsys, tmp_path):
    """Before: numpy overflow warnings on stderr and N = 1e13 (the range's top) given as the optimum."""
    (tmp_path / "law.json").write_text(json.dumps({"domains": {"legal": {"params": SPLIT_LAW}}}))
    rc, err = _probe(capsys, ["allocate", "split", "--law", tmp_path / "law.json", "--budget", "1e300",
                              "-o", tmp_path / "out"])
    assert rc == 0 and "warning: the optimum N = 1e+13 sits at the edge of --n-range" in err, err
    assert "RuntimeWarning" not in err


# ------------------------------------------------------------------------------------------ tables and plans

def test_csv_module_errors_are_one_line(capsys, tmp_path):
    """A field over the csv module's 128 KiB limit: before, a _csv.Error traceback."""
    path = _write(tmp_path, "m,params,tokens,step,acc\na,1e6,2e7,1,0.3," + "x" * 200_000 + "\n", "in.csv")
    rc, err = _probe(capsys, ["import", "csv", path, "--map", "run=m,n=params,d=tokens,step=step,task=t,acc=acc",
                              "-o", tmp_path / "out.csv"])
    assert rc == 2 and f"import: {path} after line" in err and "field larger than field limit" in err, err


def _plan(tmp_path, edit):
    from ladder.plan import plan_ladder

    plan = plan_ladder(preset="smoke")
    edit(plan)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return tmp_path / "plan.json"


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["rungs"][0].update(tokens=10, total_steps=1, eval_steps=[1], checkpoint_steps=[1], warmup_steps=0),
     "tokens is 10, but total_steps x batch_sequences x seq_len = 2,048 tokens are trained"),  # was launched
    (lambda p: p["rungs"][0].update(batch_tokens=7), "batch_tokens is 7, not batch_sequences x seq_len = 2,048"),
    (lambda p: p["targets"].append(dict(p["targets"][0])), "target name 'smoke-target' appears twice"),
])
def test_plan_fields_agree_with_what_is_trained(capsys, tmp_path, edit, message):
    rc, err = _probe(capsys, ["status", _plan(tmp_path, edit), "--run-root", tmp_path / "runs"])
    assert rc == 2 and message in err, err


def test_plan_target_below_any_shape(capsys):
    """Before: TypeError (the message formatted a tolerance of None)."""
    rc, err = _probe(capsys, ["plan", "--target", "x=1e3:1e4"])
    assert rc == 2 and "sizes: no shape hits 1k parameters at vocab" in err, err


def test_status_of_a_run_root_that_does_not_exist(capsys, tmp_path):
    rc, err = _probe(capsys, ["status", _plan(tmp_path, lambda p: None), "--run-root", tmp_path / "typo"])
    assert rc == 0 and f"note: {tmp_path / 'typo'} does not exist, so no rung has started there" in err, err


@pytest.mark.parametrize("exc, rc, message", [(BrokenPipeError(32, "Broken pipe"), 141, ""),
                                              (MemoryError("Unable to allocate 1.01 TiB"), 2,
                                               "error: out of host memory (Unable to allocate 1.01 TiB)")])
def test_closed_pipe_and_memory_errors(capsys, monkeypatch, exc, rc, message):
    """`ladder plan | head -1` said "a file: Broken pipe; check that the path exists..."; global_batch=2^31-1
    was an _ArrayMemoryError traceback."""
    from ladder.commands import plan

    def boom(args):
        raise exc

    monkeypatch.setattr(plan, "run", boom)
    got, err = _probe(capsys, ["plan", "--preset", "smoke"])
    assert got == rc and message in err and (message or err == ""), err


# ------------------------------------------------------------------------------------------ train configs

@pytest.mark.parametrize("overrides, message", [
    (["data.source=embedded", "data.domains=prose,prose"], "data.domains: names 'prose' twice"),  # trained
    (["data.source=embedded", "mix.r=0.5", "mix.general=klingon"], "mix.general: unknown embedded domain 'klingon'"),
    (["data.source=embedded", "eval.lm_loss_batches=2"], "eval.lm_loss_batches: is set but eval.tasks is empty"),
    (["eval.tasks=embedded", "eval.lm_loss_batches=2", "eval.lm_loss_domains=klingon"],
     "eval.lm_loss_domains: unknown embedded domain 'klingon'"),  # was named data.domains
    (["data.max_documents=-5"], "data.max_documents: must be >= 0, got -5"),  # trained
    (["model.vocab_size=1"], "model.vocab_size: 1 leaves nothing to predict"),  # trained to loss 3.6
    (["data.weights=1,2,3"], "--config.data.weights: expected str (like ''), got (1, 2, 3); quote it"),
])
def test_train_config_values_checked_where_set(overrides, message):
    from ladder.config import load_config
    from ladder.train_config import validate

    with pytest.raises(LadderError) as e:
        validate(load_config("configs/tiny.py", overrides), data=False)
    assert message in str(e.value), e.value


def test_file_part_names_allow_unicode_but_not_separators():
    from ladder.errors import require_file_part

    for ok in ("legal", "法律", "a b", "x.y"):
        require_file_part(ok, "domain")
    for bad in ("", " ", ".", "..", "a/b", "a\\b", "a\x00b", "x" * 201, None):
        with pytest.raises(LadderError, match="cannot be part of a file name"):
            require_file_part(bad, "domain")


def test_repeated_json_keys_are_refused_in_user_json(tmp_path):
    """{"gold": 0, "gold": 1} read as gold 1 without a word (every user JSON goes through errors.parse_json)."""
    from ladder.errors import parse_json
    from ladder.tasks import read_jsonl_task

    line = '{"context": "a", "choices": ["x", "y"], "gold": 0, "gold": 1}\n'
    with pytest.raises(LadderError, match="t.jsonl:1: the key 'gold' appears twice in one object"):
        read_jsonl_task(_write(tmp_path, line, "t.jsonl"))
    assert parse_json('{"a": {"b": 1}, "c": [{"b": 2}]}', "x") == {"a": {"b": 1}, "c": [{"b": 2}]}


def test_a_bad_matplotlib_backend_does_not_reach_the_plots(capsys, tmp_path, monkeypatch):
    """MPLBACKEND=bogus: a ValueError traceback after the fit; the CLI draws with Agg, which it always used."""
    import importlib
    import os

    monkeypatch.setenv("MPLBACKEND", "bogus")
    importlib.reload(cli)
    assert os.environ["MPLBACKEND"] == "Agg"


def test_counts_and_topologies_that_cannot_be_meant():
    """--target x=1e300:1e301 predicted 1.000 after numpy overflow warnings; `--topology 2xv5p-8 --num-slices 3`
    compiled 2 slices without a word; `compile --no-flops` printed nan in its FLOPs columns."""
    from ladder.compile_report import CompileRow, format_rows
    from ladder.plan.sizes import parse_count
    from ladder.topology import parse_topology

    with pytest.raises(LadderError, match=r"--target x: '1e300' is above 1e\+30"):
        parse_count("1e300", "--target x")
    assert parse_count("1e30", "n") == 1e30
    with pytest.raises(LadderError, match="num_slices: 2xv5p-8 says 2 slices but 3 were asked for"):
        parse_topology("2xv5p-8", 3)
    assert parse_topology("2xv5p-8", 2).num_slices == parse_topology("2xv5p-8").num_slices == 2
    row = CompileRow("r", "v5p-8", "1/4/1", 0, 0, 0, 0, 95, 0, True, float("nan"), float("nan"), None, 1.0)
    assert "nan" not in format_rows([row])


def test_domain_lists_outside_train_configs(capsys, tmp_path):
    """`ladder data build --domains ,` built nothing and exited 0; a run config's unknown predict.method failed
    only after every rung had trained."""
    from ladder.config import load_config
    from ladder.run_config import validate

    rc, err = _probe(capsys, ["data", "build", "--domains", ",", "--cache-dir", tmp_path])
    assert rc == 2 and "--domains: is empty" in err, err
    with pytest.raises(LadderError, match="predict.method: unknown method 'bogus'"):
        validate(load_config("configs/smoke.py", ["predict.method=bogus"]))


DCPT = {"fits": {loss: {"params": dict(E=e, A=20.0, alpha=0.3, B=5.0, eta=0.8, beta=0.3, C=0.4, gamma=0.4, eps=0.05)}
                 for loss, e in (("domain", 0.8), ("general", 1.0))}}


@pytest.mark.parametrize("extra, message", [
    (("--rule", "c", "--compute", "1", "--r", "0.3"), "--compute: 1 FLOPs gives N = 20.5, D = 0.00813 tokens"),
    (("--rule", "c", "--compute", "1e300", "--r", "0.3"), "--compute: 1e+300 FLOPs gives N = 2.05e+151"),
    (("--rule", "a", "--n", "1e300", "--d", "1e6"), "argument --n: must be a finite number in (0, 1e+30]"),
])
def test_dcpt_rules_answer_only_real_runs(capsys, tmp_path, extra, message):
    """Before: rule (c) allocated N = 20 parameters on 0.008 tokens, or N = 2e151, exit 0."""
    (tmp_path / "dcpt.json").write_text(json.dumps(DCPT))
    rc, err = _probe(capsys, ["allocate", "dcpt", "--law", tmp_path / "dcpt.json", *extra, "-o", tmp_path / "out"])
    assert rc == 2 and message in err, err


def test_ctrl_c_while_the_verb_loads(capsys, monkeypatch):
    """Ctrl-C in the first half second (`ladder collect` importing its module) was a KeyboardInterrupt traceback
    from inside importlib; now "interrupted", exit 130, as later."""
    def interrupted(verb):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load", interrupted)
    rc = cli.main(["collect", "plan.json", "-o", "x.csv"])
    err = capsys.readouterr().err
    assert rc == 130 and err == "ladder collect: interrupted\n", err


@pytest.mark.parametrize("rows, message", [
    ("{name},45344,1000,1,t,2.0,0.3\n{name},45344,1000,1,t,2.0,0.3\n", "1 rows repeat a (run, step, task)"),
    ("{name},45344,1000,1,t,2.0,nan\n", "column 'acc' outside [0, 1] in 1 rows"),
    ("someone-else,45344,1000,1,t,2.0,0.3\n", "has rows for run 'someone-else', not for the rung"),
    ("{name},99999,1000,1,t,2.0,0.3\n", "has n = 99999 but the plan says n = 45344"),  # was collected
])
def test_collect_writes_only_a_table_predict_accepts(capsys, tmp_path, rows, message):
    """Before: collect wrote the repeated row, the NaN accuracy or another run's rows, exit 0; predict then
    refused the table (or fitted the stranger as one more run)."""
    plan = _plan(tmp_path, lambda p: None)
    name = json.loads(plan.read_text())["rungs"][0]["name"]
    (tmp_path / "runs" / name).mkdir(parents=True)
    (tmp_path / "runs" / name / "status.json").write_text(json.dumps({"state": "done", "step": 1}))
    (tmp_path / "runs" / name / "results.csv").write_text("run,n,d,step,task,loss,acc\n" + rows.format(name=name))
    rc, err = _probe(capsys, ["collect", plan, "--run-root", tmp_path / "runs", "-o", tmp_path / "out.csv"])
    assert rc == 2 and message in err, err
    assert not (tmp_path / "out.csv").exists()


def test_a_question_with_100000_choices(tmp_path):
    """Before: read, then scored 100,000 rows for one question, minutes without a word."""
    from ladder.tasks import read_jsonl_task

    line = json.dumps({"context": "a", "choices": [f"c{i}" for i in range(100_000)], "gold": 0})
    with pytest.raises(LadderError, match="t.jsonl:1: 100,000 choices; at most 1,000 per question"):
        read_jsonl_task(_write(tmp_path, line + "\n", "t.jsonl"))


def test_direction_accuracy_that_falls_with_scale_is_flagged_not_confident(capsys, tmp_path):
    """Before: larger runs scored lower, the sigmoid (k >= 0) fitted a flat ceiling and printed 1.000 with
    only CEIL. Now DIR says the direction is wrong and the interval is the whole [chance, 1] range."""
    rc, err = _predict(capsys, tmp_path, _table(acc=lambda i, s: 0.6 - 0.05 * i - 0.001 * s))
    assert rc == 0, err
    r = json.loads((tmp_path / "p.json").read_text())
    res = r["t"]["t"]
    assert "DIR" in res["flags"] and "falls" in res["flag_details"]["DIR"]
    assert (res["acc_lo"], res["acc_hi"]) == (0.0, 1.0)



@pytest.mark.parametrize("args, message", [
    (("--multiples", "1e-9"), "multiples: 1e-09xC gives rung 45k-1e-09xC 0.000907 tokens, less than one batch "
                              "(2,048 tokens); use --multiples of at least 0.00226"),  # was 1 step labelled 1e-09xC
    (("--sizes", "45k,45k"), "sizes: '45k' repeats size 45k (45,344 parameters); list each size once"),  # deduped
    (("--sizes", "45k,45000"), "sizes: '45000' repeats size 45k"),
    (("--multiples", "2,1,2"), "multiples: '2' is listed twice"),
])
def test_plan_refuses_sub_batch_multiples_and_repeats(capsys, tmp_path, args, message):
    rc, err = _probe(capsys, ["plan", "--preset", "smoke", *args, "-o", tmp_path / "p.json"])
    assert rc == 2 and message in err, err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("verb", [["launch", "--backend", "local", "--dry-run"], ["status"], ["collect", "-o", "x.csv"]])
def test_run_root_with_an_unsupported_scheme_is_refused(capsys, tmp_path, verb):
    """Before: `launch --backend local --run-root s3://...` passed the dry run (a local dir named `s3:`)."""
    plan = _plan(tmp_path, lambda p: None)
    rc, err = _probe(capsys, [verb[0], plan, *verb[1:], "--run-root", "s3://bucket/ladder"])
    assert rc == 2 and "argument --run-root: s3:// is not supported; give a local path or gs://BUCKET/PATH" in err, err


def test_spm_vocab_below_the_floor_names_the_smallest_size(capsys, tmp_path):
    """Before: "sentencepiece refused 3 ()" (an id check with no reason). Now the floor: 4 special ids + 256 byte
    pieces + the corpus's characters (sentencepiece's own figure where it gives one)."""
    rc, err = _probe(capsys, ["data", "spm", "--vocab-size", "3", "-o", tmp_path / "s.model"])
    assert rc == 2 and "--vocab-size: 3 is too small for this corpus: sentencepiece needs about " in err, err
    assert "()" not in err and not (tmp_path / "s.model").exists()


def test_an_os_error_inside_ladder_cache_names_the_variable(monkeypatch):
    """Before: LADDER_CACHE=/proc/ladder gave '/proc/ladder: No such file or directory; check that the path...',
    a path the user never typed."""
    from ladder.cli import os_error_line

    monkeypatch.setenv("LADDER_CACHE", "/proc/ladder")
    line = os_error_line(FileNotFoundError(2, "No such file or directory", "/proc/ladder/tfds/x"))
    assert line.startswith("LADDER_CACHE=/proc/ladder: /proc/ladder/tfds/x: No such file or directory; point "
                           "LADDER_CACHE at a writable directory"), line
    assert "LADDER_CACHE" not in os_error_line(FileNotFoundError(2, "No such file", "/proc/ladderx"))
