"""The JSONL task schema, few-shot prompts, and clear errors for bad task input."""

import json

import ml_collections
import pytest

from ladder import tasks as T
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


def test_catalog_formatting_and_unprepared_catalog_task(tmp_path):
    arc = {"question": b"Which is a mammal?", "choices": {"text": [b"cat", b"trout"], "label": [0, 1]}, "answerKey": 0}
    q = T.catalog_question("arc_easy", arc)
    assert q == T.Question("Question: Which is a mammal?\nAnswer:", (" cat", " trout"), 0)
    boolq = {"passage": b"Water is wet.", "question": b"is water wet", "answer": True}
    assert T.catalog_question("boolq", boolq).gold == 1
    with pytest.raises(LadderError, match="not prepared"):
        T.catalog_task("piqa", str(tmp_path))
