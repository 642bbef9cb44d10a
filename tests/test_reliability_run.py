"""Issue 18, stopping and resuming: a stop request during a long evaluation ends it between two batches, saves
that step and exits; the resume redoes the evaluation, and every row and the final state equal an
uninterrupted run's."""

import json
import os
import signal

import numpy as np

from tests.test_train import _leaves, final_params, metric_rows, tiny_config


def _task_file(tmp_path):
    """10 questions x 3 choices: 30 rows, 8 evaluation batches of 4."""
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega"]
    path = tmp_path / "words.jsonl"
    path.write_text("".join(json.dumps({"context": " ".join(rng.choice(words, 3)),
                                        "choices": [" " + w for w in rng.choice(words, 3, replace=False)],
                                        "gold": i % 3}) + "\n" for i in range(10)))
    return path


def _config(tmp_path):
    cfg = tiny_config(total_steps=30, eval_steps=[20], checkpoint_every=10, async_checkpoints=False)
    cfg.eval.update(tasks=str(_task_file(tmp_path)), batch_size=4, lm_loss_batches=2)
    return cfg


def _train(cfg, run_dir, stop_at=None):
    """train() with the run's own evaluator; stop_at=(step, k): SIGTERM to this process after the k-th batch
    of that step's evaluation (the handler sets the stop flag before the next batch: deterministic)."""
    from ladder.eval import make_on_eval
    from ladder.train import train

    evaluate = make_on_eval(cfg, str(run_dir))

    def on_eval(step, params, logits_fn):
        batches = [0]

        def counted(*args):
            out = logits_fn(*args)
            assert out.shape == (4, 16, 259) and out.dtype == np.float32  # the real vocab, not the padded one
            batches[0] += 1
            if (step, batches[0]) == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        evaluate(step, params, counted)

    return train(cfg, str(run_dir), on_eval=on_eval)


def test_a_stop_during_an_evaluation_saves_that_step_and_the_resume_redoes_it(tmp_path, capsys):
    """Before: the evaluation ran to its end before the save (on a large evaluation, minutes after SIGTERM).
    Now it stops within a batch; each stop below lands mid-evaluation, one of them during the redone one.
    (Also the trainer's SIGTERM test: a resume ends "done" with an uninterrupted run's rows; a done run is left
    alone; another config in its directory is refused.)"""
    import pytest

    from ladder.cpt import compilation_cache
    from ladder.errors import LadderError
    from ladder.results import read_table
    from ladder.train import train

    cfg = _config(tmp_path)
    stopped = tmp_path / "stopped"
    with compilation_cache(tmp_path / "jax-cache"):  # the later runs load the first one's programs
        straight = _train(cfg, tmp_path / "straight")
        assert straight["state"] == "done"

        first = _train(cfg, stopped, stop_at=(20, 3))
        assert first["state"] == "preempted" and first["step"] == 20 and first["eval_pending"] == 20
        status = json.loads((stopped / "status.json").read_text())
        assert status["state"] == "preempted" and status["eval_pending"] == 20 and status["signal"] == "SIGTERM"
        assert (stopped / "checkpoints" / "20").is_dir()
        assert not (stopped / "results.csv").exists()  # nothing of the stopped evaluation was written
        assert "evaluation of step 20 stopped by SIGTERM" in capsys.readouterr().err

        again = _train(cfg, stopped, stop_at=(20, 1))  # the redone evaluation, stopped too: the save is kept
        assert again["state"] == "preempted" and again["step"] == 20 and again["eval_pending"] == 20
        assert sorted(p.name for p in (stopped / "checkpoints").iterdir() if p.name.isdigit()) == ["10", "20"]

        final = _train(cfg, stopped, stop_at=(30, 2))  # the final evaluation
        assert final["state"] == "preempted" and final["step"] == 30 and final["eval_pending"] == 30
        assert list(read_table(stopped / "results.csv")["step"]) == [20.0]

        assert _train(cfg, stopped)["state"] == "done"
    assert "resuming" in capsys.readouterr().err
    status = json.loads((stopped / "status.json").read_text())
    assert status["state"] == "done" and "eval_pending" not in status
    assert status["step"] == 30 and status["tokens"] == 30 * 4 * 16
    # Every evaluation row equal to the uninterrupted run's, to the last digit written, none missing or twice.
    assert (stopped / "results.csv").read_text() == (tmp_path / "straight" / "results.csv").read_text()
    assert list(read_table(stopped / "results.csv")["step"]) == [20.0, 30.0]
    assert metric_rows(stopped) == metric_rows(tmp_path / "straight")
    for x, y in zip(_leaves(final_params(stopped)), _leaves(final_params(tmp_path / "straight")), strict=True):
        np.testing.assert_array_equal(x, y)
    rows = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert rows[0]["tokens_per_s"] is None and rows[20]["tokens_per_s"] is None  # the first after each start
    assert set(rows[-1]) >= {"step", "loss", "z_loss", "grad_norm", "lr", "tokens", "tokens_per_s", "mfu", "time"}
    assert list((stopped / "tb").iterdir())
    # Already done: nothing happens; another config in the same run dir is refused.
    assert train(cfg, str(stopped))["state"] == "done"
    cfg.train.total_steps = 31
    with pytest.raises(LadderError, match="--run-dir: .* holds a run with another config"):
        train(cfg, str(stopped))
    assert json.loads((stopped / "status.json").read_text())["updated"] == status["updated"]
