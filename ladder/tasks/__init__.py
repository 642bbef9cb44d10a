"""Multiple-choice tasks for ranked classification: what `eval.tasks` names, from one of three sources.

- JSONL files (ladder.tasks.jsonl): one question per line; lines marked "fewshot" form the few-shot pool.
- tfds catalog tasks (ladder.tasks.catalog, cloud runs): ARC-Easy/Challenge, HellaSwag, PIQA, OpenBookQA,
  BoolQ, read from a prepared data_dir; never downloaded unless asked.
- embedded tasks (ladder.tasks.embedded) built from the held-out split of the embedded corpus, one per domain.
Each builds Questions and a Task (ladder.tasks.question). Schema and examples: docs/tasks.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from ladder.errors import LadderError
from ladder.tasks.catalog import CATALOG, catalog_task
from ladder.tasks.embedded import EMBEDDED, EMBEDDED_DEFAULT, embedded_task
from ladder.tasks.jsonl import read_jsonl_task, write_jsonl_task
from ladder.tasks.question import Question, Task

__all__ = ["CATALOG", "EMBEDDED", "EMBEDDED_DEFAULT", "Question", "Task", "default_k_shot", "embedded_task",
           "load_tasks", "parse_task_entry", "read_jsonl_task", "write_jsonl_task"]

# Few-shot examples per task when eval.k_shot is -1 (the default): 5 for the reference ladder's tasks, as the
# OLMo ladder evaluates them (Bhagia et al. 2024 use the OLMES suite: 5 solved examples before each question);
# 0 for the embedded tasks and JSONL files (a 160-character embedded context with 5 shots is ~1 KB, far past
# the smoke ladder's 128-byte window, so the shots would be cut away from the left anyway).
REFERENCE_K_SHOT = 5


def default_k_shot(name: str) -> int:
    """Few-shot examples a task gets when neither `name:k` nor eval.k_shot >= 0 says otherwise."""
    return REFERENCE_K_SHOT if name in CATALOG else 0


_K_SUFFIX = re.compile(r"^(?P<name>.+):(?P<k>\d+)$")
_ANY_SUFFIX = re.compile(r"^(?P<name>[^:/]+):(?P<k>[^/:.]*)$")  # a task name, not a path


def parse_task_entry(entry: str, k_shot: int = -1) -> tuple[str, int]:
    """(task name, k) from an eval.tasks entry: `name:k` fixes k for that task; otherwise `k_shot` when it is
    >= 0 (one k for every task), else the task's default (`default_k_shot`: 5 catalog, 0 embedded/JSONL)."""
    m = _K_SUFFIX.match(entry)
    if m:
        return m["name"], int(m["k"])
    bad = _ANY_SUFFIX.match(entry)  # `name:abc`, `name:-3`, `name:` (a path or gs:// URL has a / after its colon)
    if bad:
        raise LadderError(f"eval.tasks: {entry!r}: the few-shot count after ':' must be a whole number >= 0, got "
                          f"{bad['k']!r}; write e.g. {bad['name']}:5, or {bad['name']} for its default")
    return entry, (k_shot if k_shot >= 0 else default_k_shot(entry))


def load_tasks(task_cfg=None, data_cfg=None) -> list[Task]:
    """Tasks named by `eval.tasks` (a comma string or list). Each entry is one of:
    "embedded" (all embedded tasks) | an embedded task name | a catalog task name | a path to a .jsonl file,
    optionally followed by `:k` for k solved examples before each question (e.g. `arc_easy:5,hellaswag:0`).
    Other fields: k_shot (-1 = each task's default, 5 for catalog tasks and 0 otherwise; k >= 0 = k for every
    task without a `:k`), max_questions (0 = all; embedded tasks are built with n_questions = 300),
    seed (0), tfds_data_dir (for catalog tasks), try_gcs/download (False).
    """
    get = (lambda k, d: task_cfg.get(k, d) if task_cfg is not None else d)
    names = get("tasks", "embedded")
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    default_k, seed, cap = int(get("k_shot", -1)), int(get("seed", 0)), int(get("max_questions", 0))
    entries = []
    for entry in (n for n in names if n):
        name, k = parse_task_entry(entry, default_k)  # "embedded" defaults to 0 shots, as each embedded task
        entries += [(e, k) for e in EMBEDDED_DEFAULT] if name == "embedded" else [(name, k)]
    if not entries:
        raise LadderError("eval.tasks: empty; name tasks such as 'embedded' or a .jsonl file")
    tasks = []
    for n, k_shot in entries:
        if n in EMBEDDED:
            task = embedded_task(n, data_cfg, n_questions=int(get("n_questions", 300)), k_shot=k_shot, seed=seed)
        elif n in CATALOG:
            task = catalog_task(n, get("tfds_data_dir", ""), k_shot, seed, cap, bool(get("try_gcs", False)),
                                bool(get("download", False)))
        elif n.endswith(".jsonl") or Path(n).is_file():
            task = read_jsonl_task(n, k_shot=k_shot, seed=seed)
        else:
            raise LadderError(f"eval.tasks: {n!r} is neither an embedded task ({', '.join(EMBEDDED)}), a catalog "
                              f"task ({', '.join(CATALOG)}) nor a .jsonl file")
        if cap:
            task.questions = task.questions[:cap]
        tasks.append(task)
    return tasks
