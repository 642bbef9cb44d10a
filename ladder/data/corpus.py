"""The embedded corpus: real text that every machine with this package installed already has.

Three domains, gathered offline from the running Python installation (no download, nothing shipped):

- `prose`: English technical prose. Python's own documentation (the `pydoc_data.topics` pages of the
  language reference) and the docstrings of the standard library (one document per module: the module,
  class and function docstrings in source order).
- `code`: the standard library's Python sources, one document per file (tests and site-packages excluded).
- `legal`: the licence texts of ScanCode's licence database, from the `licensedcode-data` package at the
  version pinned in pyproject.toml (LICENSED_CODE_VERSION): one document per licence, its YAML header
  dropped, de-duplicated by paragraph so that boilerplate shared by licence variants is kept once. It used
  to be the licence files of whatever distributions were installed, so one extra package changed it.

Two more target domains for specialization studies (docs/data.md; not in the default data.domains):

- `notices`: the licence *notices* of ScanCode's rule database (same pinned `licensedcode-data`): the short
  headers put at the top of source files ("This program is free software; ..."), one document per rule
  flagged `is_license_notice`, comment markers stripped, de-duplicated by paragraph. Near `legal`, not it.
- `scidocs`: the docstrings of the installed numpy and scipy (one document per module, tests excluded):
  numerical-library API prose, far from the standard library's. Fixed by those packages' versions (the
  inputs key hashes their bytes), as prose and code are by the Python build.

Files are visited in sorted order and every document gets a split from the hash of its text. The legal
domain is the same bytes everywhere; prose and code are the same for the same Python build (patch
releases do edit the standard library). `inputs_key` hashes everything a domain is gathered from, so a
cache can never serve a corpus gathered from other inputs (docs/data.md).
"""

from __future__ import annotations

import ast
import hashlib
import functools
import importlib.metadata
import os
import re
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from pathlib import Path

DOMAINS = ("prose", "code", "legal", "notices", "scidocs")
SPLITS = ("train", "validation", "test")
# Per mille of documents (by hash) in each held-out split; the rest is train.
HELD_OUT_PER_MILLE = {"validation": 100, "test": 100}

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
_MIN_LEGAL_BYTES = 200
_MAX_LEGAL_CHARS = 16_000
# The one version of the licence corpus the legal domain is read from (pyproject.toml pins the same).
LICENSED_CODE_DIST, LICENSED_CODE_VERSION = "licensedcode-data", "32.1.0"


def split_of(text: str) -> str:
    """'train' | 'validation' | 'test' from the sha256 of the document's text (stable across machines)."""
    bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 1000
    if bucket < HELD_OUT_PER_MILLE["test"]:
        return "test"
    if bucket < HELD_OUT_PER_MILLE["test"] + HELD_OUT_PER_MILLE["validation"]:
        return "validation"
    return "train"


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=1)
def _stdlib_files() -> tuple[tuple[str, Path], ...]:
    """(relative path, path) of the standard library's .py files in Path sort order, skipped dirs pruned
    while walking (site-packages alone can be larger than the standard library)."""
    root = stdlib_dir()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        found += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return tuple((p.relative_to(root).as_posix(), p) for p in sorted(found))


def _stdlib_sources() -> Iterator[tuple[str, Path]]:
    yield from _stdlib_files()


def _read_source(path: Path) -> str | None:
    try:
        with tokenize.open(path) as f:  # honours PEP 263 encoding cookies
            return f.read()
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def code_documents() -> Iterator[tuple[str, str]]:
    for rel, path in _stdlib_sources():
        text = _read_source(path)
        if text and text.strip():
            yield f"stdlib/{rel}", text


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    return [d for d in (ast.get_docstring(n) for n in nodes) if d and d.strip()]


def _docstring_documents(files) -> Iterator[tuple[str, str]]:
    """One document per (relative path, path) source file that has docstrings: them, in line order, joined by
    blank lines (the prose of the stdlib, the scientific prose of numpy and scipy)."""
    for rel, path in files:
        text = _read_source(path)
        docs = _docstrings(text) if text else []
        if docs:
            yield f"docstrings/{rel}", "\n\n".join(docs) + "\n"


def prose_documents() -> Iterator[tuple[str, str]]:
    from pydoc_data import topics

    for name in sorted(topics.topics):
        text = topics.topics[name].strip()
        if text:
            yield f"pydoc_data/topics/{name}", text + "\n"
    yield from _docstring_documents(_stdlib_sources())


def licence_dir() -> Path:
    """The licence texts of the pinned `licensedcode-data`; any other version is an error naming the fix."""
    from ladder.errors import LadderError

    fix = f"install it: pip install '{LICENSED_CODE_DIST}=={LICENSED_CODE_VERSION}'"
    try:
        dist = importlib.metadata.distribution(LICENSED_CODE_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise LadderError(f"data.domains: the legal domain needs {LICENSED_CODE_DIST}, not installed; {fix}") from None
    if dist.version != LICENSED_CODE_VERSION:
        raise LadderError(f"data.domains: the legal domain is pinned to {LICENSED_CODE_DIST} {LICENSED_CODE_VERSION}, "
                          f"found {dist.version}; {fix}")
    path = Path(dist.locate_file("licensedcode/data/licenses"))
    if not path.is_dir():
        raise LadderError(f"data.domains: {path} is missing from {LICENSED_CODE_DIST}; reinstall it ({fix})")
    return path


def _licence_files() -> list[tuple[str, Path]]:
    """(id, path) of every licence text of the pinned corpus, sorted by id."""
    return [(f"scancode/{p.name}", p) for p in sorted(licence_dir().glob("*.LICENSE"))]


def _new_paragraphs(text: str, seen: set) -> list[str]:
    """The paragraphs of `text` not seen before (compared case- and whitespace-blind); marks them seen, so a
    paragraph shared by many licence files (a warranty disclaimer) enters the corpus once."""
    kept = []
    for para in re.split(r"\n\s*\n", text):
        key = " ".join(para.split()).lower()
        if key and key not in seen:
            seen.add(key)
            kept.append(para.strip("\n"))
    return kept


def _licence_text(raw: str) -> str:
    """A ScanCode .LICENSE file without its YAML header (key, name, category, urls: metadata, not text)."""
    raw = raw.replace("\r\n", "\n")
    if raw.startswith("---\n"):
        end = raw.find("\n---\n", 3)
        if end >= 0:
            return raw[end + 5:]
    return raw


def legal_documents() -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for doc_id, path in _licence_files():
        try:
            text = _licence_text(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        kept = _new_paragraphs(text, seen)
        # Long licences are cut at paragraph boundaries so that no one licence dominates a split.
        chunk, size, part = [], 0, 0
        for para in kept + [None]:
            if para is None or (chunk and size + len(para) > _MAX_LEGAL_CHARS):
                doc = "\n\n".join(chunk).strip()
                if len(doc.encode("utf-8")) >= _MIN_LEGAL_BYTES:
                    yield (f"{doc_id}#{part}" if part else doc_id), doc + "\n"
                chunk, size, part = [], 0, part + 1
            if para is not None:
                chunk.append(para)
                size += len(para) + 2


def _notice_files() -> list[tuple[str, Path]]:
    """(id, path) of every rule file of the pinned corpus, sorted by id (notices are picked when read)."""
    rules = licence_dir().parent / "rules"
    return [(f"scancode-rules/{p.name}", p) for p in sorted(rules.glob("*.RULE"))]


# A comment leader at a line start: C/Java block-comment stars, #, //, ;, --, %, dnl, rem, REM, '!' (Fortran).
_COMMENT_LEADER = re.compile(r"^[ \t]*(?:/\*+|\*+/|\*+|#+|//+|;+|--+|%+|dnl\b|rem\b|REM\b|!+)?[ \t]?", re.M)


def notice_documents() -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for doc_id, path in _notice_files():
        try:
            raw = path.read_text("utf-8").replace("\r\n", "\n")
        except (OSError, UnicodeDecodeError):
            continue
        if not re.search(r"^is_license_notice: yes$", raw.split("\n---\n", 1)[0], re.M):
            continue
        text = _COMMENT_LEADER.sub("", _licence_text(raw))
        kept = _new_paragraphs(text, seen)
        doc = "\n\n".join(kept).strip()
        if len(doc.encode("utf-8")) >= _MIN_LEGAL_BYTES:
            yield doc_id, doc + "\n"


_SCIDOCS_PACKAGES = ("numpy", "scipy")


def _scidocs_files() -> list[tuple[str, Path]]:
    """(package-relative path, path) of numpy's and scipy's .py files, tests and vendored code excluded."""
    import importlib.util

    found = []
    for pkg in _SCIDOCS_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(list(spec.submodule_search_locations)[0])
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and d not in ("_vendored", "_lib_vendored")]
            found += [(f"{pkg}/{(Path(dirpath) / f).relative_to(root).as_posix()}", Path(dirpath) / f)
                      for f in filenames if f.endswith(".py")]
    return sorted(found)


def scidocs_documents() -> Iterator[tuple[str, str]]:
    yield from _docstring_documents(_scidocs_files())


_BUILDERS = {"prose": prose_documents, "code": code_documents, "legal": legal_documents,
             "notices": notice_documents, "scidocs": scidocs_documents}
_INPUTS = {"prose": lambda: _stdlib_sources(), "code": lambda: _stdlib_sources(), "legal": lambda: _licence_files(),
           "notices": lambda: _notice_files(), "scidocs": lambda: _scidocs_files()}


@functools.lru_cache(maxsize=None)
def inputs_key(domain: str) -> str:
    """sha256 over everything a domain is gathered from: this module's code, the Python minor version and
    the bytes of every input file. Built corpora are cached under it, so another checkout, venv or Python
    sharing the cache directory can never be served a corpus gathered from different inputs (~0.2 s)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"{domain}|{sys.version_info.major}.{sys.version_info.minor}".encode())
    for rel, path in _INPUTS[domain]():
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def documents(domain: str) -> Iterator[tuple[str, str]]:
    """(id, text) for every document of one domain, exact duplicates removed, in a deterministic order."""
    if domain not in _BUILDERS:
        from ladder.errors import LadderError

        raise LadderError(f"data.domains: unknown embedded domain {domain!r}; choose from {', '.join(DOMAINS)}")
    seen: set[bytes] = set()
    for doc_id, text in _BUILDERS[domain]():
        h = hashlib.sha256(text.encode("utf-8")).digest()
        if h not in seen:
            seen.add(h)
            yield doc_id, text
