"""Session 10's hostile-input round on the input surfaces (config values and lists, plan and run configs, the CPT
study's grid, `import csv` mappings, the predictor's and the specialization laws' tables and Python arguments):
classes earlier rounds missed. Each is one line naming the field and the fix (exit 2), or a result with an
honest note; each test says what happened before. Cheap: no training (one slow test trains a step), tiny
tables in tmp_path, fits with method paper and no bootstrap.
"""

import csv
import json
import warnings

import numpy as np
import pytest

from ladder import cpt
from ladder.config import apply_overrides, load_config
from ladder.errors import LadderError
from ladder.laws.predict import predict
from ladder.results import read_table, write_table
from ladder.train_config import default_config, validate
from test_dcpt import write_study
from test_split import write_two_domain_study
from tests.test_reliability_inputs import _probe
from tests.test_reliability_probes9_analysis import _rows

SMOKE_QUICK = "configs/smoke.py:quick"
SIZES = (60e6, 150e6, 370e6, 760e6)


def _ladder(scale_d=1.0):
    """probes9's clean 4-size x 4-budget ladder (one task, arc_easy), its d scaled by `scale_d`."""
    return [dict(r, d=r["d"] * scale_d) for r in _rows()]


@pytest.fixture(scope="module")
def ladder_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("ladder") / "results.csv"
    write_table(path, _ladder())
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """(D-CPT study rows, two-domain split study rows), as CSV row dicts."""
    root = tmp_path_factory.mktemp("study")
    return (list(csv.DictReader(open(write_study(root / "dcpt.csv", noise=1e-3)))),
            list(csv.DictReader(open(write_two_domain_study(root / "split.csv")))))


def _write_rows(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


# --- config numbers the device cannot hold: finite in Python, inf or 0 in float32 ---

@pytest.mark.parametrize("override, value", [
    ("model.rope_theta", "1e-300"),  # before: loss NaN at step 1, "lower optim.peak_lr" (exit 1)
    ("model.init_std", "1e300"),     # the same
    ("model.norm_eps", "1e300"),
    ("optim.peak_lr", "1e-320"),     # subnormal: 0 in float32
    ("train.z_loss", "1e39"),
])
def test_a_float_outside_float32s_range_is_one_line(override, value):
    with pytest.raises(LadderError, match=f"{override}: .* is outside float32's range"):
        validate(load_config("configs/tiny.py", [f"{override}={value}"]))


def test_floats_of_sensible_size_and_zero_still_pass():
    validate(load_config("configs/tiny.py", ["optim.weight_decay=0.0", "model.rope_theta=1e-30",
                                              "train.z_loss=1e30", "optim.eps=1e-30"]))


def test_train_refuses_it_before_anything_is_written(capsys, tmp_path):
    rc, err = _probe(capsys, ["train", "configs/tiny.py", "--run-dir", tmp_path / "r", "--config.model.init_std=1e300"])
    assert rc == 2 and "model.init_std: 1e+300 is outside float32's range" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_nan_at_the_first_step_blames_the_initial_weights_not_the_learning_rate(capsys, tmp_path):
    """init_std 1e30 fits float32 but overflows the first forward pass: the message named the learning rate."""
    rc, err = _probe(capsys, ["train", "configs/tiny.py", "--run-dir", tmp_path / "r", "--config.model.init_std=1e30",
                              "--config.train.total_steps=2", "--config.optim.warmup_steps=1"])
    assert rc == 1 and "step 1:" in err and "before any update" in err and "model.init_std" in err, err
    assert "lower optim.peak_lr" not in err


# --- lists in configs: numbers where numbers belong, no value twice ---

CPT_LISTS = [
    ("ratios=[0,'a',1]", "ratios: has 'a', not a number"),  # before: TypeError traceback in check_config
    ("budgets=['1',2]", "budgets: has '1', not a number"),  # the same
    ("ratios=[0,0.5,True]", "ratios: has True, not a number"),  # before: planned as r = 1
    ("ratios=[0,0.5,0.5,1]", "ratios: lists 0.5 twice"),  # before: 12 rungs shared a name (one run directory)
    ("budgets=[1.0,1.0]", "budgets: lists 1.0 twice"),  # before: 36 rungs shared a name
    ("cross_domains=['code','code']", "cross_domains: lists 'code' twice"),
    ("general_budgets=['x']", "general_budgets: ['x']"),  # before: TypeError traceback
    ("cross_domain_sizes=['9M']", "cross_domain_sizes: ['9M'] are not base sizes"),  # before: silently no runs
]


@pytest.mark.parametrize("override, says", CPT_LISTS, ids=[o for o, _ in CPT_LISTS])
def test_cpt_study_lists_are_checked_before_planning(override, says):
    with pytest.raises(LadderError, match=None) as e:
        cpt.check_config(apply_overrides(cpt.default_config(), [override]))
    assert says in str(e.value)


@pytest.mark.parametrize("config, override, says", [
    (SMOKE_QUICK, "plan.multiples=[0.1,0.1]", "plan.multiples: lists 0.1 twice"),
    (SMOKE_QUICK, "plan.eval_fractions=[0.5,0.5]", "plan.eval_fractions: lists 0.5 twice"),
    (SMOKE_QUICK, "launch.devices=[0,0]", "launch.devices: lists 0 twice"),
    (SMOKE_QUICK, "plan.seed=4294967296", "plan.seed: 4294967296 is too large"),
    # the predict stage's values: before, a seed of -1 failed after every rung trained, 10^9 resamples had no cap
    (SMOKE_QUICK, "predict.seed=-1", "predict.seed: -1 is negative"),
    (SMOKE_QUICK, "predict.bootstrap=1000000000", "predict.bootstrap: 1000000000 is outside [0, 100,000]"),
])
def test_run_config_values_are_checked_before_any_rung(capsys, tmp_path, config, override, says):
    rc, err = _probe(capsys, ["run", config, "--dry-run", "-o", tmp_path / "o", f"--config.{override}"])
    assert rc == 2 and says in err, err
    assert not (tmp_path / "o").exists()


def test_repeated_train_overrides_stay_allowed_and_train_steps_do_not_repeat():
    cfg = apply_overrides(cpt.default_config(), ["train_overrides=['eval.n_questions=5','eval.n_questions=6']"])
    cpt.check_config(cfg)  # overrides apply in order: a later one wins, as on the command line
    with pytest.raises(LadderError, match="train.eval_steps: lists 50 twice"):
        validate(apply_overrides(default_config(), ["train.eval_steps=[50,50]"]))


# --- the CPT study: every rung's train config is resolved before the first trains ---

@pytest.mark.parametrize("override, says", [
    ("cross_domains=['nosuch']", "unknown embedded domain 'nosuch'"),
    ("domain='prose'", "must be non-empty and disjoint"),  # prose is in `general`
    ("general='legal'", "must be non-empty and disjoint"),
    ("domain=''", "mix.domain: is empty"),
    ("budgets=[0.5,1,1e30]", "is too large (at most 2^31 - 1)"),  # 10^30 tokens per parameter
])
def test_a_study_rung_that_cannot_train_is_refused_before_the_base_runs(tmp_path, override, says):
    """Before: these passed check_config and failed only when their CPT run started, after every base run
    had trained (hours on a real grid)."""
    cfg = apply_overrides(cpt.default_config(), [override])
    cpt.check_config(cfg)
    with pytest.raises(LadderError, match=None) as e:
        cpt.study_configs(cfg, tmp_path)
    assert says in str(e.value)
    assert not list(tmp_path.iterdir())


# --- plans: what the planner shows or writes is what `ladder launch` accepts ---

def test_a_plan_seed_the_trainer_cannot_hold_is_refused_where_it_is_given(capsys, tmp_path):
    """Before: `ladder plan --seed 2**40 -o p.json` wrote the plan, and every rung was refused at launch."""
    from ladder.plan import plan_ladder

    rc, err = _probe(capsys, ["plan", "--preset", "smoke", "--seed", 2 ** 40, "-o", tmp_path / "p.json"])
    assert rc == 2 and "argument --seed: must be <= 2,147,483,647" in err and not (tmp_path / "p.json").exists()
    with pytest.raises(LadderError, match=r"seed is 1099511627776, not a whole number in \[0, 2147483647\]"):
        plan_ladder(preset="smoke", seed=2 ** 40)
    assert plan_ladder(preset="smoke", seed=2 ** 31 - 1)["rungs"][0]["seed"] == 2 ** 31 - 1


# --- import csv: one source column is one number ---

@pytest.mark.parametrize("mapping, says", [
    ("run=model,n=params,d=params,task=task,acc=accuracy", "n and d both read column 'params'"),  # was D = N
    ("run=model,n=params,d=tokens,task=task,acc=accuracy,loss=accuracy", "acc and loss both read column"),
])
def test_one_column_mapped_to_two_numbers_is_refused(capsys, tmp_path, mapping, says):
    src = tmp_path / "in.csv"
    src.write_text("model,params,tokens,task,accuracy\n" + "".join(
        f"m{n:.0f}-{k},{n:.0f},{n * k:.0f},arc,{0.3 + n / 1e10:.3f}\n" for n in SIZES for k in (20, 40)))
    rc, err = _probe(capsys, ["import", "csv", src, "--map", mapping, "-o", tmp_path / "out.csv"])
    assert rc == 2 and says in err, err
    # a text field and a number may share a column: run names that are size labels (run=size, n=size)
    rc, err = _probe(capsys, ["import", "csv", src, "--map", "run=params,n=params,d=tokens,task=task,acc=accuracy",
                              "-o", tmp_path / "ok.csv"])
    assert rc == 0, err


# --- D-CPT, split and the report read the CPT token columns by one rule ---

@pytest.mark.parametrize("edit, says", [
    (lambda r: dict(r, d_cpt="-5"), "d_cpt: is -5 in 1 rows"),  # before: dropped from the D-CPT fit silently
    (lambda r: dict(r, d_cpt="inf"), "d_cpt: is inf in 1 rows"),
    (lambda r: dict(r, d_cpt=str(float(r["d"]) * 10)), "d_cpt: is above d"),  # split blamed a missing base run
])
@pytest.mark.parametrize("verb", [["fit", "dcpt"], ["fit", "split"], ["report", "specialization"]])
def test_cpt_tokens_out_of_their_domain_are_one_line_in_every_verb(capsys, tmp_path, studies, edit, says, verb):
    rows = [dict(r) for r in studies[1 if verb[1] == "split" else 0]]
    i = next(i for i, r in enumerate(rows) if float(r["d_cpt"] or 0) > 0)
    rows[i] = edit(rows[i])
    rc, err = _probe(capsys, [*verb, _write_rows(tmp_path / "t.csv", rows), "-o", tmp_path / "out"])
    assert rc == 2 and says in err, err


def test_the_specialization_api_takes_the_table_as_the_predictor_does(tmp_path, studies):
    """Before: a path was 'run: column missing', None a TypeError, steps='x' fitted every step, and a budget or
    size given as text a TypeError inside the allocator."""
    from ladder import specialization as sp

    path = _write_rows(tmp_path / "split.csv", studies[1])
    by_path, by_rows = sp.fit_split(path), sp.fit_split(studies[1])
    law = sp.fit_dcpt(studies[0], starts=2).summary
    assert by_path.summary["domains"].keys() == by_rows.summary["domains"].keys() == {"code", "legal"}
    for call, says in [(lambda: sp.fit_dcpt(None), "table: is a NoneType"),
                       (lambda: sp.fit_dcpt(studies[0], steps="x"), "steps: is 'x'"),
                       (lambda: sp.allocate_split(by_path.summary, "1e20"), "--budget: is '1e20'"),
                       (lambda: sp.dcpt_rule(law, "a", n="2.5e5", d=1e6), "--n: is '2.5e5'")]:
        with pytest.raises(LadderError, match=None) as e:
            call()
        assert says in str(e.value)


# --- the predictor: token counts in other units, too few resamples, readable flags ---

def test_a_table_with_tokens_in_other_units_is_refused_like_a_target(capsys, tmp_path, ladder_csv):
    """d in millions (every run at ~2e-5 tokens per parameter): before, fitted to a confident accuracy flagged
    only X100, while a target with fewer tokens than parameters was refused as a unit slip."""
    path = tmp_path / "millions.csv"
    write_table(path, _ladder(scale_d=1e-6))
    rc, err = _probe(capsys, ["predict", path, "--target", "7b-4t", "--method", "paper", "--bootstrap", 0,
                              "-o", tmp_path / "p.json"])
    assert rc == 2 and "(under N/100), so d is not a plain count of tokens" in err, err
    with pytest.raises(LadderError, match="under N/100"):
        predict(read_table(path, validate=True), {"7B": (7e9, 4e12)}, method="paper", n_bootstrap=0, workers=1)


def test_too_few_resamples_say_their_interval_is_rough(ladder_csv):
    """Before: --bootstrap 1 printed a '95% interval' from one refit, without a word."""
    cols = read_table(ladder_csv, validate=True)
    for n, warned in ((3, True), (0, False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = predict(cols, {"7B": (7e9, 4e12)}, method="paper", n_bootstrap=n, workers=1)
        said = [str(w.message) for w in caught if "too few for a 95% interval" in str(w.message)]
        assert bool(said) == warned and any("too few" in note for note in pred.warnings) == warned


def test_a_huge_compute_ratio_is_written_readably(ladder_csv):
    """X100's detail printed the ratio with %.0f: 39 digits for a 1e29-parameter target."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BELOW: 10 tokens per parameter, under the ladder's 20
        pred = predict(read_table(ladder_csv, validate=True), {"x": (1e29, 1e30)}, method="paper", n_bootstrap=0,
                       workers=1)
    detail = pred.results["x"]["arc_easy"]["flag_details"]["X100"]
    assert detail.startswith("8.66e+38x the compute"), detail
    json.dumps(pred.results)  # and the result is still plain JSON


def test_accuracy_that_does_not_follow_compute_is_flagged_flat(ladder_csv):
    """Accuracies drawn at random (no relation to scale): before, 7B was predicted at 0.997 flagged only X100.
    The clean ladder (rank correlation +1) is not flagged."""
    rng = np.random.default_rng(0)
    noisy = [dict(r, acc=float(rng.uniform(0.2, 0.9))) for r in _ladder()]
    for rows, flat in ((noisy, True), (_ladder(), False)):
        pred = predict(rows, {"7B": (7e9, 4e12)}, method="paper", n_bootstrap=0, workers=1)
        res = pred.results["7B"]["arc_easy"]
        assert ("FLAT" in res["flags"]) == flat and "DIR" not in res["flags"]
        if flat:
            assert "rank correlation" in res["flag_details"]["FLAT"]


def test_a_quote_left_open_is_named_not_read_as_one_cell(capsys, tmp_path):
    """A stray `"` made the csv module read the rest of the file as one cell: the import said "no row with an
    accuracy; check the acc mapping", and a results table lost its rows. Now both readers are strict."""
    src = tmp_path / "in.csv"
    src.write_text('model,params,tokens,task,accuracy\n"m1,6e7,1.2e9,arc,0.3\nm2,1.5e8,3e9,arc,0.4\n')
    rc, err = _probe(capsys, ["import", "csv", src, "--map", "run=model,n=params,d=tokens,task=task,acc=accuracy",
                              "-o", tmp_path / "out.csv"])
    assert rc == 2 and 'has a quote (") opened on line 2 or after that is never closed' in err, err
    table = tmp_path / "results.csv"
    table.write_text('run,n,d,step,task,loss,acc\n"r1,1e6,2e7,1,t,3,0.3\nr2,2e6,4e7,1,t,3,0.4\n')
    rc, err = _probe(capsys, ["predict", table, "--target", "x=1e9:2e10", "-o", tmp_path / "p.json"])
    assert rc == 2 and 'results.csv line 3: a quote (") is never closed' in err, err


@pytest.mark.parametrize("name", ["a\nb", "7B\t", "   "])
def test_a_target_name_that_would_break_the_table_is_refused(ladder_csv, name):
    """A line break in a target's name split its row of the printed table in two (exit 0)."""
    with pytest.raises(LadderError, match="is not a name of printable characters"):
        predict(read_table(ladder_csv, validate=True), {name: (7e9, 4e12)}, method="paper", n_bootstrap=0)


@pytest.mark.parametrize("spelling", ["true", "yes", "1", "'False'", "on"])
def test_a_boolean_spelled_another_way_says_how_python_spells_it(spelling):
    with pytest.raises(LadderError, match=r"expected bool .* write True or False as Python spells them, e\.g\. "
                                          r"--config\.train\.async_checkpoints=False"):
        load_config("configs/tiny.py", [f"train.async_checkpoints={spelling}"])


def test_a_question_count_no_benchmark_has_is_refused_where_it_is_given(capsys, tmp_path):
    """eval.n_questions=10^8 (a typo for 300) built 10^8 questions (~0.14 CPU-ms each) before scoring one."""
    with pytest.raises(LadderError, match="eval.n_questions: 100,000,000 is more than 100,000"):
        validate(load_config("configs/tiny.py", ["eval.n_questions=100000000", "eval.tasks=embedded"]))
    rc, err = _probe(capsys, ["data", "--tasks", "--n-questions", 10 ** 8, "-o", tmp_path / "q"])
    assert rc == 2 and "argument --n-questions: must be <= 100,000" in err, err
