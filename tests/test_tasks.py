"""The JSONL task schema, few-shot prompts, and clear errors for bad task input."""

import json
import math
import tempfile
import time

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.ai2_arc.ai2_arc_dataset_builder import Builder as Ai2Arc
from tensorflow_datasets.text.hellaswag import Hellaswag

from ladder import eval as E
from ladder import tasks as T
from ladder.tasks import catalog
from ladder.data.tokenizer import BYTE_VOCAB_SIZE, ByteTokenizer
from ladder.errors import LadderError


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_jsonl_schema_and_fewshot_pool(tmp_path):
    path = _write(tmp_path / "capitals.jsonl", [
        {"context": "Capital of France:", "choices": [" Paris", " Rome"], "gold": 0},
        {"context": "Capital of Italy:", "choices": [" Paris", " Rome", " Oslo"], "gold": 1},
        {"context": "Capital of Norway:", "choices": [" Oslo", " Bern"], "gold": 0, "fewshot": True},
        {"context": "Capital of Spain:", "choices": [" Madrid", " Bern"], "gold": 0, "fewshot": True},
    ])
    task = T.load_tasks(ml_collections.ConfigDict(dict(tasks=str(path), k_shot=1, seed=3)))[0]
    assert task.name == "capitals" and len(task.questions) == 2 and len(task.fewshot) == 2
    prompt = task.prompt(1)
    assert prompt.endswith("Capital of Italy:") and prompt in {
        "Capital of Norway: Oslo\n\nCapital of Italy:", "Capital of Spain: Madrid\n\nCapital of Italy:"}
    assert task.prompt(1) == prompt  # deterministic in (seed, question)
    T.write_jsonl_task(task, tmp_path / "copy.jsonl")
    copy = T.read_jsonl_task(tmp_path / "copy.jsonl")
    assert copy.questions == task.questions and copy.fewshot == task.fewshot


@pytest.mark.parametrize("line, message", [
    ('{"context": "x", "choices": ["a", "b"], "gold": 0', r"bad\.jsonl:2: malformed JSON"),
    ({"context": "x", "choices": ["a"], "gold": 0}, r"bad\.jsonl:2: 1 choice\(s\); a question needs at least 2"),
    ({"context": "x", "choices": ["a", "b"], "gold": 2}, r"bad\.jsonl:2: gold index 2 is out of range"),
    ({"context": "x", "choices": ["a", ""], "gold": 0}, r"bad\.jsonl:2: choice 1 is empty"),
    ({"context": "x", "answers": ["a", "b"], "gold": 0}, r"bad\.jsonl:2: needs keys context, choices, gold"),
])
def test_bad_task_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "bad.jsonl", [{"context": "ok", "choices": ["a", "b"], "gold": 1}, line])
    with pytest.raises(LadderError, match=message):
        T.read_jsonl_task(path)


def test_empty_task_and_unknown_names(tmp_path):
    with pytest.raises(LadderError, match="no questions"):
        T.read_jsonl_task(_write(tmp_path / "empty.jsonl", []))
    with pytest.raises(LadderError, match="neither an embedded task"):
        T.load_tasks(ml_collections.ConfigDict(dict(tasks="mmlu_pro")))
    with pytest.raises(LadderError, match="k_shot=3"):
        T.Task("t", [T.Question("c", ("a", "b"), 0)], [], k_shot=3)


def test_k_shot_per_task_defaults_and_overrides():
    assert T.parse_task_entry("arc_easy") == ("arc_easy", 5)  # the reference ladder's tasks: 5-shot
    assert T.parse_task_entry("hellaswag", k_shot=0) == ("hellaswag", 0)  # eval.k_shot >= 0: every task
    assert T.parse_task_entry("piqa:0", k_shot=3) == ("piqa", 0)  # name:k wins over eval.k_shot
    assert T.parse_task_entry("legal_continuation") == ("legal_continuation", 0)
    assert T.parse_task_entry("/tmp/my:task.jsonl:2") == ("/tmp/my:task.jsonl", 2)
    assert T.parse_task_entry("/tmp/my:task.jsonl") == ("/tmp/my:task.jsonl", 0)


def test_five_shot_prompt_is_built_exactly(tmp_path):
    """The exact 5-shot prompt (OLMES layout: solved examples, each its context + gold choice, separated by a
    blank line, then the question's context) for seed 0, question 0 of a JSONL task with a 6-example pool."""
    shots = [{"context": f"Question: What is {a} + {a}?\nAnswer:", "choices": [f" {2 * a}", f" {a}"], "gold": 0,
              "fewshot": True} for a in range(1, 7)]
    path = _write(tmp_path / "sums.jsonl", [{"context": "Question: What is 7 + 7?\nAnswer:",
                                             "choices": [" 14", " 7"], "gold": 0}] + shots)
    task = T.load_tasks(ml_collections.ConfigDict(dict(tasks=f"{path}:5")))[0]
    assert task.k_shot == 5
    assert task.prompt(0) == ("Question: What is 3 + 3?\nAnswer: 6\n\n"
                              "Question: What is 4 + 4?\nAnswer: 8\n\n"
                              "Question: What is 5 + 5?\nAnswer: 10\n\n"
                              "Question: What is 6 + 6?\nAnswer: 12\n\n"
                              "Question: What is 2 + 2?\nAnswer: 4\n\n"
                              "Question: What is 7 + 7?\nAnswer:")
    # 0-shot stays available: eval.k_shot=0 or `:0`.
    zero = T.load_tasks(ml_collections.ConfigDict(dict(tasks=f"{path}:0")))[0]
    assert zero.prompt(0) == "Question: What is 7 + 7?\nAnswer:"


def test_catalog_formatting_and_unprepared_catalog_task(tmp_path):
    arc = {"question": b"Which is a mammal?", "choices": {"text": [b"cat", b"trout"], "label": [0, 1]}, "answerKey": 0}
    q = catalog.catalog_question("arc_easy", arc)
    assert q == T.Question("Question: Which is a mammal?\nAnswer:", (" cat", " trout"), 0)
    boolq = {"passage": b"Water is wet.", "question": b"is water wet", "answer": True}
    assert catalog.catalog_question("boolq", boolq).gold == 1
    with pytest.raises(LadderError, match="not prepared"):
        catalog.catalog_task("piqa", str(tmp_path))


def _prepare_catalog(builder_cls, data_dir, splits, config=None):
    """Write a tiny catalog dataset with the real builder's name, version and feature spec (dataset_info.json +
    array_record shards), as `tfds build` would, from hand-written records instead of the download."""

    class Fixture(builder_cls, skip_registration=True):
        name = builder_cls.name

        @classmethod
        def _get_pkg_dir_path(cls):  # the real builder's metadata files (citation, tags)
            return builder_cls._get_pkg_dir_path()

        def _split_generators(self, dl_manager):
            return {split: enumerate(records) for split, records in splits.items()}

    tfds.disable_progress_bar()
    Fixture(config=config, data_dir=str(data_dir), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def test_catalog_tasks_read_from_a_prepared_data_dir_and_score(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"  # tfds leaves empty mkdtemp("tfds") dirs while preparing: keep them here
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    arc = lambda q, texts, key: dict(id=q, question=q, answerKey=key,  # noqa: E731
                                     choices=dict(text=texts, label=["A", "B", "C"][: len(texts)]))
    _prepare_catalog(Ai2Arc, tmp_path, config="ARC-Easy", splits={
        "test": [arc("Which is a mammal?", ["trout", "cat", "eel"], "B"), arc("Which swims?", ["cow", "eel"], "B")],
        "train": [arc("Which is red?", ["sky", "blood"], "B")]})
    _prepare_catalog(Hellaswag, tmp_path, splits={"validation": [dict(
        context="A man is in a kitchen. He", endings=["swims.", "cooks eggs.", "flies.", "sings."],
        activity_label="Cooking", label=1, split_type="indomain", source_id="x")]})
    # Catalog tasks default to the reference ladder's 5 shots; this pool has one example, hellaswag none.
    with pytest.raises(LadderError, match="task arc_easy: k_shot=5 but the few-shot pool has 1"):
        T.load_tasks(ml_collections.ConfigDict(dict(tasks="arc_easy", tfds_data_dir=str(tmp_path))))
    cfg = ml_collections.ConfigDict(dict(tasks="arc_easy:0,hellaswag:0", tfds_data_dir=str(tmp_path)))
    arc_task, swag = T.load_tasks(cfg)
    assert arc_task.k_shot == swag.k_shot == 0 and arc_task.prompt(0) == arc_task.questions[0].context
    # (tfds shuffles records by key when it writes the shards)
    assert sorted(arc_task.questions, key=lambda q: q.context) == [
        T.Question("Question: Which is a mammal?\nAnswer:", (" trout", " cat", " eel"), 1),
        T.Question("Question: Which swims?\nAnswer:", (" cow", " eel"), 1)]
    assert swag.questions == [T.Question("Cooking: A man is in a kitchen. He",
                                         (" swims.", " cooks eggs.", " flies.", " sings."), 1)]
    shot = T.load_tasks(ml_collections.ConfigDict(dict(tasks="arc_easy", k_shot=1, tfds_data_dir=str(tmp_path))))[0]
    assert shot.prompt(0) == "Question: Which is red?\nAnswer: blood\n\n" + shot.questions[0].context

    # A unigram model with p('c') = 1/2: a choice with a 'c' wins per character.
    V = BYTE_VOCAB_SIZE
    p = np.full(V, 0.5 / (V - 1))
    p[ord("c")] = 0.5
    arc_m, swag_m = E.evaluate(E.ngram_logits_fn(p[None, :], order=1), [arc_task, swag], ByteTokenizer(),
                               batch_size=4, seq_len=64)
    bits = lambda s: -sum(math.log2(p[b]) for b in s.encode()) / len(s.encode())  # noqa: E731
    assert arc_m["acc"] == 0.5 and swag_m["acc"] == 1.0  # " cat" right, " cow" wrong; " cooks eggs." right
    assert arc_m["loss"] == pytest.approx((bits(" cat") + bits(" eel")) / 2, rel=1e-5)
    assert swag_m["loss"] == pytest.approx(bits(" cooks eggs."), rel=1e-5)


def test_missing_catalog_task_is_a_fast_clear_error(tmp_path):
    start = time.perf_counter()
    with pytest.raises(LadderError, match=r"'piqa' is not prepared under .*tfds build --file_format=array_record"):
        T.load_tasks(ml_collections.ConfigDict(dict(tasks="piqa", tfds_data_dir=str(tmp_path))))
    with pytest.raises(LadderError, match="data.data_dir: empty"):
        T.load_tasks(ml_collections.ConfigDict(dict(tasks="boolq")))
    assert time.perf_counter() - start < 30  # never the ~200 s download attempt of an unprepared dataset
