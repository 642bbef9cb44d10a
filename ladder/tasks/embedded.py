"""Embedded tasks, built from the held-out (test) split of the embedded corpus, one per domain.

`prose_continuation`, `legal_continuation`: which of four passages continues a text cut inside a word (the
true one or passages from other held-out documents, drawn alike so that only the context tells);
`code_next_line`: which of four line endings completes the next line of a source file, the context running
into its first word (the true one or those of same-indentation lines from other files). Few-shot pools come
from the validation split. `notices_continuation` and `scidocs_continuation` are the same continuation exam
on the specialization domains `notices` and `scidocs` (ladder/data/corpus.py).
"""

from __future__ import annotations

import functools
import re

import numpy as np

from ladder.errors import LadderError
from ladder.tasks.question import Question, Task

EMBEDDED = {"prose_continuation": "prose", "code_next_line": "code", "legal_continuation": "legal",
            "notices_continuation": "notices", "scidocs_continuation": "scidocs"}
# What `eval.tasks=embedded` means: the tasks of the default corpus (prose, code, legal). The other domains'
# exams are named one by one (building their corpora costs ~10-30 s the first time).
EMBEDDED_DEFAULT = ("prose_continuation", "code_next_line", "legal_continuation")
SPECIALIZATION_DOMAINS = ("notices", "scidocs")  # their exams never repeat a context (`distinct`)


# Continuation questions cut the text inside a word: after a word's first two letters, with three or more
# letters to come, so every choice opens with the rest of some word. Completing the word, then the phrase, is
# what a better language model does better; a cut at a sentence or line start left the choices' first
# characters (indentation, capitals, headers) to decide the answer. Gold passages and distractors are drawn
# from one distribution (a uniform character position of a held-out document, snapped to the next cut, with
# the same filters), so a scorer that ignores the context is at chance: only the context tells them apart.
_CUT = re.compile(r"(?<=\b[A-Za-z]{2})(?=[a-z]{3})")
_WORD = re.compile(r"[A-Za-z]+")
# Marks of file lists, code, e-mail addresses, URLs, version strings and tables: not running prose.
_NOT_PROSE = re.compile(r"[/@<>_=|\\{}\[\]#*`$%^~]|\d\d|\.\w")


def _prose(text: str, min_words: int) -> bool:
    return len(_WORD.findall(text)) >= min_words and not _NOT_PROSE.search(text)


def _all_caps(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) > len(letters) / 2


def _shingles(text: str, k: int = 4) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i : i + k]) for i in range(len(words) - k + 1)}


def _cut_window(doc: str, pos: int, context_chars: int, answer_chars: int) -> tuple[int, str] | None:
    """(cut, passage): the first in-word cut at or after pos and about answer_chars after it, ending at a word
    boundary; None unless both the passage and the context's last 48 characters are running prose."""
    m = _CUT.search(doc, pos)
    if m is None or m.start() < context_chars:
        return None
    at = m.start()
    piece = doc[at : at + answer_chars + 16]
    end = piece.rfind(" ", answer_chars // 2, answer_chars + 16)
    if end <= 0:
        return None
    passage = piece[:end]
    return (at, passage) if _prose(passage, 4) and _prose(doc[at - 48 : at], 3) else None


def continuation_questions(docs: list[str], n: int, seed: int, context_chars: int = 160,
                           answer_chars: int = 32, n_choices: int = 4, distinct: bool = False) -> list[Question]:
    """Which passage continues the context (cut inside a word): the true one, or passages from other
    held-out documents with the same case pattern (all-caps disclaimers against all-caps) that share no
    four-word phrase with the true passage or the context (licence boilerplate repeats across documents:
    a near-copy of the answer is not a wrong answer). `distinct`: never the same context twice (the
    domain exams of 500+ questions; small test splits would otherwise repeat ~10% of their cuts)."""
    docs = [d for d in docs if len(d) > context_chars + 2 * answer_chars]
    if len(docs) < n_choices:
        raise LadderError(f"embedded task: {len(docs)} usable held-out documents, need {n_choices}; corpus too small")
    weights = np.array([len(d) for d in docs], float)
    weights /= weights.sum()
    rng = np.random.default_rng(seed)

    def draw(exclude: int = -1) -> tuple[int, int, str] | None:
        """(document, cut, passage), one distribution for gold and distractors; None for a rejected draw."""
        i = int(rng.choice(len(docs), p=weights))
        window = _cut_window(docs[i], int(rng.integers(len(docs[i]))), context_chars, answer_chars)
        return (i, *window) if window and i != exclude else None

    out, tries, used = [], 0, set()
    while len(out) < n and tries < 200 * n:
        tries += 1
        drawn = draw()
        if drawn is None:
            continue
        i, at, gold = drawn
        context = docs[i][at - context_chars : at]
        if distinct and context in used:
            continue
        used.add(context)
        taken = _shingles(gold) | _shingles(context)
        distractors: list[str] = []
        for _ in range(100 * n_choices):
            if len(distractors) == n_choices - 1:
                break
            other = draw(exclude=i)
            if other is None:
                continue
            piece = other[2]
            if _all_caps(piece) == _all_caps(gold) and not _shingles(piece) & taken and piece not in distractors + [gold]:
                distractors.append(piece)
        if len(distractors) < n_choices - 1:
            continue
        g = int(rng.integers(n_choices))
        out.append(Question(context, tuple(distractors[:g] + [gold] + distractors[g:]), g))
    if len(out) < n:
        raise LadderError(f"embedded task: only {len(out)} of {n} continuation questions found in "
                          f"{len(docs)} held-out documents; lower eval.n_questions or use a larger corpus")
    return out


# A code line is cut after its indentation and the first two characters of its first word (an identifier or
# keyword of four or more characters): the choices complete lines, so knowing the language and the file's
# names pays from the first character on.
_LINE_HEAD = re.compile(r"[ \t]*[A-Za-z_]{2}(?=[A-Za-z_]{2})")


def next_line_questions(docs: list[str], n: int, seed: int, context_chars: int = 160,
                        n_choices: int = 4) -> list[Question]:
    """Which line comes next in a source file, the context running into the line's first word: the true rest
    of the line, or the rests of lines with the same indentation from other files. Gold and distractor lines
    are drawn alike (any line of 8 to 100 characters, context_chars or more into its file, starting with a
    word), so a scorer that ignores the context is at chance."""
    lines: list[tuple[int, int, str]] = []  # (document, offset of the rest of the line, line)
    for d, doc in enumerate(docs):
        offset = 0
        for raw in doc.splitlines(keepends=True):
            line = raw.rstrip("\n")
            head = _LINE_HEAD.match(line)
            if head and offset + head.end() >= context_chars and len(line.strip()) >= 8 and len(line) <= 100:
                lines.append((d, offset + head.end(), line))
            offset += len(raw)
    by_indent: dict[str, list[int]] = {}
    for k, (_, _, line) in enumerate(lines):
        by_indent.setdefault(line[: len(line) - len(line.lstrip())], []).append(k)
    if len({d for d, _, _ in lines}) < n_choices:
        raise LadderError(f"embedded task: held-out source files too few or too short, need {n_choices}")
    rest = lambda line: line[_LINE_HEAD.match(line).end():] + "\n"  # noqa: E731
    rng = np.random.default_rng(seed)
    out, tries = [], 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        d, at, line = lines[int(rng.integers(len(lines)))]
        gold, pool = rest(line), by_indent[line[: len(line) - len(line.lstrip())]]
        others: list[str] = []
        for k in rng.permutation(len(pool))[: 8 * n_choices]:
            other_doc, _, other = lines[pool[k]]
            if other_doc != d and rest(other) not in others + [gold]:
                others.append(rest(other))
            if len(others) == n_choices - 1:
                break
        if len(others) < n_choices - 1:
            continue
        g = int(rng.integers(n_choices))
        out.append(Question(docs[d][at - context_chars : at], tuple(others[:g] + [gold] + others[g:]), g))
    if len(out) < n:
        raise LadderError(f"embedded task: only {len(out)} of {n} next-line questions found in {len(docs)} held-out "
                          "files; lower eval.n_questions or use a larger corpus")
    return out


def embedded_task(name: str, data_cfg=None, n_questions: int = 300, k_shot: int = 0, seed: int = 0) -> Task:
    from ladder.data.pipeline import documents

    if name not in EMBEDDED:
        raise LadderError(f"eval.tasks: unknown embedded task {name!r}; choose from {', '.join(EMBEDDED)}")
    domain = EMBEDDED[name]
    make = next_line_questions if domain == "code" else continuation_questions
    if domain in SPECIALIZATION_DOMAINS:
        make = functools.partial(continuation_questions, distinct=True)
    test = documents(data_cfg, "test", domain=domain)
    questions = make(test, n_questions, seed=1000 + seed)
    pool = make(documents(data_cfg, "validation", domain=domain), 64, seed=2000 + seed) if k_shot else []
    return Task(name, questions, pool, k_shot, seed)
