"""Local corpus files (`data.source=files`, `ladder data files`, `ladder data tokenize FILES`): which paths a
spec names and how each file is read. .txt/.md: one UTF-8 document per file; .jsonl/.json: one JSON object
per line holding the text. Everything a file cannot be (not UTF-8, binary, a FIFO, a link to nothing, a
pretty-printed JSON document, JSON nested past the parser) is one LadderError naming the file and where in it
(docs/data.md, "Local files and catalog datasets")."""

from __future__ import annotations

import glob
import json
from pathlib import Path

from ladder.errors import LadderError


def read_text_file(path: str) -> str:
    """One .txt/.md document. Bytes that are not UTF-8 (a Latin-1 export, a binary file named .txt) and NUL
    bytes are one LadderError naming the file and offset: they were read with errors="replace" and trained on
    as U+FFFD tokens without a word (a random 3 kB file gave 5,468 tokens of nothing)."""
    from ladder.errors import read_utf8

    return read_utf8(path, "data.files")


_ONE_PER_LINE = " (a .jsonl/.json file holds one JSON object per line, JSON Lines)"


def read_jsonl_texts(path: str, field: str):
    """(id, text) per JSONL line; a malformed line is a LadderError naming the file and line number."""
    with open(path, "rb") as f:  # bytes: a non-UTF-8 line is named (a UnicodeDecodeError traceback before)
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise LadderError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                  "save the file as UTF-8") from None
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]  # a byte-order mark, as read_utf8 drops it
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                hint = _ONE_PER_LINE if lineno == 1 and line.strip() in ("{", "[") else ""  # pretty-printed JSON
                raise LadderError(f"{path}:{lineno}: malformed JSON ({e.msg}){hint}; fix or remove the line") from None
            except RecursionError:  # 100,000 `[`: a traceback from the parser before
                raise LadderError(f"{path}:{lineno}: malformed JSON (nested too deeply to read); fix or remove the "
                                  "line") from None
            if not isinstance(record, dict):  # a JSON array or value: "no 'text' field" sent users to text_field
                raise LadderError(f"{path}:{lineno}: a JSON {type(record).__name__}, not an object{_ONE_PER_LINE}; "
                                  f"write one {{{field!r}: ...}} object per line")
            if field not in record:
                raise LadderError(f"{path}:{lineno}: no {field!r} field; set data.text_field to the text's key")
            text = record[field]
            if not isinstance(text, str):
                raise LadderError(f"{path}:{lineno}: field {field!r} is {type(text).__name__}, not a string")
            if text.strip():
                yield f"{path}:{lineno}", text


def expand_paths(spec: str) -> list[str]:
    """A directory (every .txt/.md/.jsonl/.json under it), a glob, or a comma-separated list of those."""
    out: list[str] = []
    for part in [p.strip() for p in str(spec).split(",") if p.strip()]:
        p = Path(part).expanduser()
        for match in [str(p)] if p.is_dir() else sorted(glob.glob(str(p), recursive=True)):
            out += _regular_files(Path(match), spec)
    out = sorted(set(out))
    if not out:
        raise LadderError(f"data.files: {spec!r} matches no .txt/.md/.jsonl files; give a directory, glob or list")
    return out


_TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".json")


def _regular_files(path: Path, spec: str) -> list[str]:
    """A directory's text files (recursively: one a glob matched too, which was opened as a file before), or
    the one regular file named. A FIFO, socket or device named by the spec was read and blocked forever (a
    FIFO) or streamed garbage; a link to nothing failed in os.path.getsize: each is one line now."""
    if path.is_dir():
        return sorted(str(q) for q in path.rglob("*") if q.is_file() and q.suffix in _TEXT_SUFFIXES)
    if path.is_file():
        return [str(path)]
    what = "a link to nothing" if path.is_symlink() and not path.exists() else "not a regular file (a FIFO, " \
        "socket or device)"
    named = f"{path}" if str(path) == str(spec).strip() else f"{path} (from {spec!r})"
    raise LadderError(f"data.files: {named} is {what}; name regular .txt/.md/.jsonl files")
