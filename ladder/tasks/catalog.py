"""tfds catalog tasks (cloud runs): ARC-Easy/Challenge, HellaSwag, PIQA, OpenBookQA, BoolQ, read from a
prepared data_dir and formatted as the OLMo evaluation suite formats ranked classification; never downloaded
unless asked."""

from __future__ import annotations

from ladder.errors import LadderError
from ladder.tasks.question import Question, Task

CATALOG = {  # task name -> (tfds name, split evaluated, few-shot split)
    "arc_easy": ("ai2_arc/ARC-Easy", "test", "train"),
    "arc_challenge": ("ai2_arc/ARC-Challenge", "test", "train"),
    "hellaswag": ("hellaswag", "validation", "train"),
    "piqa": ("piqa", "validation", "train"),
    "openbookqa": ("openbookqa", "test", "train"),
    "boolq": ("bool_q", "validation", "train"),
}


def _s(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def catalog_question(task: str, r: dict) -> Question:
    """One tfds record -> Question, formatted as the OLMo evaluation suite formats ranked classification."""
    if task.startswith("arc"):
        return Question(f"Question: {_s(r['question'])}\nAnswer:", tuple(" " + _s(t) for t in r["choices"]["text"]),
                        int(list(r["choices"]["label"]).index(r["answerKey"])))
    if task == "hellaswag":
        return Question(f"{_s(r['activity_label'])}: {_s(r['context'])}", tuple(" " + _s(e) for e in r["endings"]),
                        int(r["label"]))
    if task == "piqa":
        return Question(f"Question: {_s(r['goal'])}\nAnswer:", (" " + _s(r["sol1"]), " " + _s(r["sol2"])), int(r["label"]))
    if task == "openbookqa":
        q = r["question"]
        return Question(f"Question: {_s(q['stem'])}\nAnswer:", tuple(" " + _s(q[f"choice_{c}"]) for c in "ABCD"),
                        int(r["answerKey"]))
    if task == "boolq":
        return Question(f"{_s(r['passage'])}\nQuestion: {_s(r['question'])}?\nAnswer:", (" no", " yes"),
                        int(bool(r["answer"])))
    raise LadderError(f"eval.tasks: no formatter for catalog task {task!r}")


def catalog_task(task: str, data_dir: str, k_shot: int = 0, seed: int = 0, max_questions: int = 0,
                 try_gcs: bool = False, download: bool = False) -> Task:
    from ladder.data.tfds_builder import catalog_source

    if task not in CATALOG:
        raise LadderError(f"eval.tasks: unknown catalog task {task!r}; choose from {', '.join(CATALOG)}")
    name, split, shot_split = CATALOG[task]
    source = catalog_source(name, split, data_dir, try_gcs=try_gcs, download=download)
    n = min(len(source), max_questions or len(source))
    questions = [catalog_question(task, source[i]) for i in range(n)]
    pool = []
    if k_shot:
        shots = catalog_source(name, shot_split, data_dir, try_gcs=try_gcs, download=download)
        pool = [catalog_question(task, shots[i]) for i in range(min(len(shots), 1000))]
    return Task(task, questions, pool, k_shot, seed)
