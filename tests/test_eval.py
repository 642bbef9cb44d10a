"""Ranked classification against hand-computed numbers: a fixed unigram and a fixed bigram model."""

import json
import math

import numpy as np
import pytest

from ladder import eval as E
from ladder.data.tokenizer import BYTE_VOCAB_SIZE, ByteTokenizer
from ladder.errors import LadderError
from ladder.results import append_rows, read_table
from ladder.tasks import Question, Task

V = BYTE_VOCAB_SIZE


def _unigram(probs: dict[str, float]):
    """p(byte) fixed for the named bytes, the rest of the mass spread evenly over the other ids."""
    p = np.full(V, (1 - sum(probs.values())) / (V - len(probs)))
    for ch, v in probs.items():
        p[ord(ch)] = v
    return E.ngram_logits_fn(p[None, :], order=1)


def test_task_loss_accuracy_and_prob_are_exact():
    fn = _unigram({"a": 0.5, "b": 0.25})
    task = Task("hand", [
        Question("context", ("aaa", "b"), 0),  # raw: b wins (1/4 > 1/8); per character: aaa wins
        Question("ctx", ("a", "bb"), 1),  # bb is less likely per character and in total
    ])
    [m] = E.evaluate(fn, [task], ByteTokenizer(), batch_size=3, seq_len=16)  # 4 rows: a padded second batch
    # loss: q1 -log2(1/8)/3 bytes = 1 bit/byte; q2 -log2(1/16)/2 bytes = 2 bits/byte
    assert m["loss"] == pytest.approx(1.5, abs=1e-5)
    assert m["acc"] == 0.5 and m["acc_raw"] == 0.0
    assert m["prob"] == pytest.approx(((1 / 8) / (1 / 8 + 1 / 4) + (1 / 16) / (1 / 16 + 1 / 2)) / 2, abs=1e-6)
    assert m["n_questions"] == 2 and m["task"] == "hand"


def test_answer_tokens_are_aligned_with_their_prefix_and_bytes_count_utf8():
    counts = np.full((V, V), 1e-9)
    counts[:, :] = 1.0
    counts[ord("q"), ord("b")] = 1.0 * (V - 1)  # after 'q', 'b' has probability 1/2
    counts[ord("b"), 0xC3] = 3.0 * (V - 1)  # after 'b', byte 0xC3 has probability 3/4
    fn = E.ngram_logits_fn(counts, order=2)
    p_b_q = counts[ord("q"), ord("b")] / counts[ord("q")].sum()
    p_c3_b = counts[ord("b"), 0xC3] / counts[ord("b")].sum()
    p_a9_c3 = 1 / counts[0xC3].sum()
    task = Task("bigram", [Question("x" * 40 + "q", ("bé", "zz"), 0)])  # é = C3 A9: 3 bytes in all
    [m] = E.evaluate(fn, [task], ByteTokenizer(), batch_size=2, seq_len=8)  # the context is cut from the left
    expected = -(math.log2(p_b_q) + math.log2(p_c3_b) + math.log2(p_a9_c3)) / 3
    assert m["loss"] == pytest.approx(expected, rel=1e-5)


def test_bad_choices_are_clear_errors():
    fn = _unigram({"a": 0.5})
    long = Task("long", [Question("c", ("a" * 20, "b"), 0)])
    with pytest.raises(LadderError, match="more than the evaluation sequence length"):
        E.evaluate(fn, [long], ByteTokenizer(), batch_size=2, seq_len=8)
    with pytest.raises(LadderError, match="at least 2"):
        Task("one", [Question("c", ("a",), 0)])


def test_rows_append_to_the_results_table(tmp_path):
    metrics = [{"task": "t1", "loss": 1.25, "acc": 0.5, "acc_raw": 0.25, "prob": 0.3, "n_questions": 4}]
    rows = E.rows_for_results(metrics, run="370M-5xC", n=371_262_464, d=10**9, step=100, flops=1e18)
    append_rows(tmp_path / "results.csv", rows)
    table = read_table(tmp_path / "results.csv")
    assert table["task"][0] == "t1" and table["loss"][0] == 1.25 and table["step"][0] == 100
    assert table["acc_raw"][0] == 0.25 and table["flops"][0] == 1e18


@pytest.mark.slow
def test_ladder_eval_rescores_a_checkpoint_exactly_as_the_trainer_did(tmp_path, capsys):
    """`ladder eval RUN_DIR` end to end: restore the final checkpoint of a tiny `ladder train` run and score it
    with the run's own eval config (a JSONL task, 1-shot). The rows equal, to the last bit, the ones the trainer
    wrote at its last step through the library (ladder.eval.make_on_eval) from the parameters in memory."""
    from ladder import cli

    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    lines = []
    for i in range(10):
        choices = [" " + " ".join(rng.choice(words, 2)) for _ in range(3)]
        lines.append({"context": f"Q{i}: " + " ".join(rng.choice(words, 5)), "choices": choices, "gold": i % 3,
                      **({"fewshot": True} if i < 3 else {})})
    task_file = tmp_path / "words.jsonl"
    task_file.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    run_dir = tmp_path / "run"
    tiny = ["--config.model.d_model=32", "--config.model.n_layers=2", "--config.model.n_heads=2",
            "--config.model.seq_len=64", "--config.train.global_batch=4", "--config.train.total_steps=4",
            "--config.train.checkpoint_every=4", "--config.train.async_checkpoints=False",
            "--config.optim.warmup_steps=2", f"--config.eval.tasks={task_file}", "--config.eval.k_shot=1"]
    assert cli.main(["train", "configs/tiny.py", *tiny, "--run-dir", str(run_dir)]) == 0
    trained = read_table(run_dir / "results.csv")
    assert list(trained["task"]) == ["words"] and list(trained["step"]) == [4]

    capsys.readouterr()
    assert cli.main(["eval", str(run_dir), "-o", str(tmp_path / "rescored.csv")]) == 0
    rescored = read_table(tmp_path / "rescored.csv")
    for column in ("run", "n", "d", "step", "task", "loss", "acc", "acc_raw", "prob"):
        assert list(rescored[column]) == list(trained[column]), column
    assert "tiny step 4 words: loss " in capsys.readouterr().err
    assert cli.main(["eval", str(run_dir), "--step", "3"]) == 2
    assert "--step: no checkpoint at step 3" in capsys.readouterr().err
