"""A multiple-choice question and a task (questions, a few-shot pool, k), checked as they are made.

A question is a context and two or more choices, one of them gold; the evaluator (ladder.eval) scores each
choice by the log-likelihood of its tokens after the task's (k-shot) prompt. Every source (ladder.tasks.jsonl,
.catalog, .embedded) builds these, so a malformed question is one clear line wherever it came from.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ladder.errors import LadderError


@dataclasses.dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    gold: int


@dataclasses.dataclass
class Task:
    name: str
    questions: list[Question]
    fewshot: list[Question] = dataclasses.field(default_factory=list)
    k_shot: int = 0
    seed: int = 0
    fewshot_separator: str = "\n\n"

    def __post_init__(self):
        if not self.questions:
            raise LadderError(f"task {self.name}: no questions; check the task file or source")
        for i, q in enumerate(self.questions):
            validate_question(q, f"task {self.name}, question {i}")
        if self.k_shot > len(self.fewshot):
            raise LadderError(f"task {self.name}: k_shot={self.k_shot} but the few-shot pool has "
                              f"{len(self.fewshot)} examples; lower eval.k_shot or add \"fewshot\": true lines")

    def prompt(self, i: int) -> str:
        """Question i's context after k solved examples drawn from the pool by (seed, i)."""
        q = self.questions[i]
        if not self.k_shot:
            return q.context
        rng = np.random.default_rng([self.seed, i])
        shots = [self.fewshot[j] for j in rng.choice(len(self.fewshot), self.k_shot, replace=False)]
        return "".join(s.context + s.choices[s.gold] + self.fewshot_separator for s in shots) + q.context


MAX_CHOICES = 1000  # per question; the suite's tasks have 2-5


def validate_question(q: Question, where: str) -> None:
    if not isinstance(q.context, str):
        raise LadderError(f"{where}: context must be a string")
    if len(q.choices) < 2:
        raise LadderError(f"{where}: {len(q.choices)} choice(s); a question needs at least 2")
    if len(q.choices) > MAX_CHOICES:  # each choice is one scored row: 100,000 ran for minutes without a word
        raise LadderError(f"{where}: {len(q.choices):,} choices; at most {MAX_CHOICES:,} per question (multiple-"
                          "choice tasks have a handful); split the question or check the file")
    if not all(isinstance(c, str) for c in q.choices):
        raise LadderError(f"{where}: every choice must be a string")
    if isinstance(q.gold, bool) or not isinstance(q.gold, (int, np.integer)):
        raise LadderError(f"{where}: gold must be the index of the correct choice (an integer), got {q.gold!r}")
    if not 0 <= q.gold < len(q.choices):
        raise LadderError(f"{where}: gold index {q.gold!r} is out of range for {len(q.choices)} choices")
    for j, text in [("context", q.context)] + list(enumerate(q.choices)):
        if not _encodable(text):  # a lone surrogate (JSON "\ud800") would fail at tokenization, mid-evaluation
            raise LadderError(f"{where}: {'the context' if j == 'context' else f'choice {j}'} holds a lone UTF-16 "
                              "surrogate (an escape such as \\ud800 with no pair), which is not text; fix the escape")
    empty = [j for j, c in enumerate(q.choices) if not c.encode("utf-8")]
    if empty:
        raise LadderError(f"{where}: choice {empty[0]} is empty; every choice needs at least one byte")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
