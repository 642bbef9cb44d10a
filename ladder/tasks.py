"""Multiple-choice tasks for ranked classification: JSONL files, tfds catalog tasks, embedded tasks.

A question is a context and two or more choices, one of them gold; the evaluator scores each choice by the
log-likelihood of its tokens after the (k-shot) prompt. Three sources (schema and examples: docs/tasks.md):

- JSONL files: one question per line, {"context": str, "choices": [str, ...], "gold": int}; lines with
  "fewshot": true form the task's few-shot pool instead of being questions.
- tfds catalog tasks (cloud runs): ARC-Easy/Challenge, HellaSwag, PIQA, OpenBookQA, BoolQ, read from a
  prepared data_dir; never downloaded unless asked.
- embedded tasks built from the held-out (test) split of the embedded corpus, one per domain:
  `prose_continuation`, `legal_continuation` (which of four passages continues a text cut inside a word: the
  true one or passages from other held-out documents, drawn alike so that only the context tells) and
  `code_next_line` (which of four line endings completes the next line of a source file, the context running
  into its first word: the true one or those of same-indentation lines from other files). Few-shot pools
  come from the validation split. `notices_continuation` and `scidocs_continuation` are the same
  continuation exam on the specialization domains `notices` and `scidocs` (ladder/data/corpus.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

import numpy as np

from ladder.errors import LadderError, parse_json, read_utf8

EMBEDDED = {"prose_continuation": "prose", "code_next_line": "code", "legal_continuation": "legal",
            "notices_continuation": "notices", "scidocs_continuation": "scidocs"}
# What `eval.tasks=embedded` means: the tasks of the default corpus (prose, code, legal). The other domains'
# exams are named one by one (building their corpora costs ~10-30 s the first time).
EMBEDDED_DEFAULT = ("prose_continuation", "code_next_line", "legal_continuation")
SPECIALIZATION_DOMAINS = ("notices", "scidocs")  # their exams never repeat a context (`distinct`)
# Few-shot examples per task when eval.k_shot is -1 (the default): 5 for the reference ladder's tasks, as the
# OLMo ladder evaluates them (Bhagia et al. 2024 use the OLMES suite: 5 solved examples before each question);
# 0 for the embedded tasks and JSONL files (a 160-character embedded context with 5 shots is ~1 KB, far past
# the smoke ladder's 128-byte window, so the shots would be cut away from the left anyway).
REFERENCE_K_SHOT = 5
CATALOG = {  # task name -> (tfds name, split evaluated, few-shot split)
    "arc_easy": ("ai2_arc/ARC-Easy", "test", "train"),
    "arc_challenge": ("ai2_arc/ARC-Challenge", "test", "train"),
    "hellaswag": ("hellaswag", "validation", "train"),
    "piqa": ("piqa", "validation", "train"),
    "openbookqa": ("openbookqa", "test", "train"),
    "boolq": ("bool_q", "validation", "train"),
}


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


# ------------------------------------------------------------------------------------------ JSONL
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
    with open(path, "w", encoding="utf-8") as f:
        for q, shot in [(q, False) for q in task.questions] + [(q, True) for q in task.fewshot]:
            record = {"context": q.context, "choices": list(q.choices), "gold": int(q.gold)}
            f.write(json.dumps(record | ({"fewshot": True} if shot else {})) + "\n")


# ------------------------------------------------------------------------------------------ catalog
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


# ------------------------------------------------------------------------------------------ embedded
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


# ------------------------------------------------------------------------------------------ config
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
