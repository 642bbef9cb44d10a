"""Tasks from JSONL files: one question per line, {"context": str, "choices": [str, ...], "gold": int}; lines
with "fewshot": true form the task's few-shot pool instead of being questions (docs/tasks.md)."""

from __future__ import annotations

import json
from pathlib import Path

from ladder.errors import LadderError, parse_json, read_utf8
from ladder.tasks.question import Question, Task, validate_question


def read_jsonl_task(path: str | Path, name: str | None = None, k_shot: int = 0, seed: int = 0) -> Task:
    path = Path(path)
    if not path.is_file():
        raise LadderError(f"eval.tasks: no task file {str(path)!r}")
    questions, pool, ids = [], [], {}
    # split on "\n" only: str.splitlines would also cut a JSON string holding U+2028 or a form feed
    for lineno, line in enumerate(read_utf8(path, "eval.tasks").split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        r = parse_json(line, where, "fix or remove the line", problem=": malformed JSON", line=False)
        if not isinstance(r, dict) or not {"context", "choices", "gold"} <= set(r):
            raise LadderError(f"{where}: needs keys context, choices, gold (see docs/tasks.md)")
        if not isinstance(r["choices"], list):
            raise LadderError(f"{where}: choices must be a list of strings")
        q = Question(r["context"], tuple(r["choices"]), r["gold"])
        validate_question(q, where)
        if len(set(q.choices)) < len(q.choices):  # identical choices always score alike: the gold cannot win
            j = next(j for j, c in enumerate(q.choices) if q.choices.index(c) != j)
            raise LadderError(f"{where}: choices {q.choices.index(q.choices[j])} and {j} are identical "
                              f"({q.choices[j]!r}); make every choice distinct")
        if not isinstance(r.get("fewshot", False), bool):
            raise LadderError(f"{where}: fewshot must be true or false, got {r['fewshot']!r}")
        if "id" in r:  # a question listed twice would count twice in the accuracy
            key = json.dumps(r["id"], sort_keys=True)
            if key in ids:
                raise LadderError(f"{where}: id {r['id']!r} already appears on line {ids[key]}; "
                                  "give every question its own id (or drop the repeat)")
            ids[key] = lineno
        (pool if r.get("fewshot") else questions).append(q)
    if not questions:
        raise LadderError(f"{path}: no questions (empty file, or every line is a few-shot example)")
    return Task(name or path.stem, questions, pool, k_shot, seed)


def write_jsonl_task(task: Task, path: str | Path) -> None:
    from ladder import storage

    lines = []
    for q, shot in [(q, False) for q in task.questions] + [(q, True) for q in task.fewshot]:
        record = {"context": q.context, "choices": list(q.choices), "gold": int(q.gold)}
        lines.append(json.dumps(record | ({"fewshot": True} if shot else {})) + "\n")
    storage.write_text(path, "".join(lines))
