"""The embedded corpus: real text that every machine with this package installed already has.

Three domains, gathered offline from the running Python installation (no download, nothing shipped):

- `prose`: English technical prose. Python's own documentation (the `pydoc_data.topics` pages of the
  language reference) and the docstrings of the standard library (one document per module: the module,
  class and function docstrings in source order).
- `code`: the standard library's Python sources, one document per file (tests and site-packages excluded).
- `legal`: licence texts shipped by the installed distributions: Python packages (`*.dist-info`
  LICENSE/COPYING/NOTICE files and licence files listed in their RECORD), Python's own LICENSE.txt and,
  where the OS has them (Debian/Ubuntu), `/usr/share/common-licenses/*` and `/usr/share/doc/*/copyright`.
  One document per file, de-duplicated by paragraph so that the MIT/BSD/GPL boilerplate repeated by many
  packages is kept once.

Files are visited in sorted order and every document gets a split from the hash of its text, so the
corpus is deterministic for a given installation; the exact bytes depend on the Python and package
versions installed, which is why the built dataset records a content hash and counts (docs/data.md).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from pathlib import Path

DOMAINS = ("prose", "code", "legal")
SPLITS = ("train", "validation", "test")
# Per mille of documents (by hash) in each held-out split; the rest is train.
HELD_OUT_PER_MILLE = {"validation": 100, "test": 100}

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
_LICENSE_NAME = re.compile(r"^(licen[cs]e|copying|notice|copyright)([._-].*)?$", re.IGNORECASE)
_MIN_LEGAL_BYTES = 200
_MAX_LEGAL_CHARS = 16_000
_SYSTEM_LICENCE_DIRS = ("/usr/share/common-licenses", "/usr/share/doc")


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


def _stdlib_sources() -> Iterator[tuple[str, Path]]:
    root = stdlib_dir()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not _SKIP_DIRS.intersection(rel.parts):
            yield rel.as_posix(), path


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


def prose_documents() -> Iterator[tuple[str, str]]:
    from pydoc_data import topics

    for name in sorted(topics.topics):
        text = topics.topics[name].strip()
        if text:
            yield f"pydoc_data/topics/{name}", text + "\n"
    for rel, path in _stdlib_sources():
        text = _read_source(path)
        docs = _docstrings(text) if text else []
        if docs:
            yield f"docstrings/{rel}", "\n\n".join(docs) + "\n"


def _licence_files() -> list[tuple[str, Path]]:
    """(id, path) of every licence file of the installed distributions, sorted by id."""
    found: dict[str, Path] = {}
    python_licence = stdlib_dir() / "LICENSE.txt"
    if python_licence.is_file():
        found[f"python-{sys.version_info.major}.{sys.version_info.minor}/LICENSE.txt"] = python_licence
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "unknown").lower()
        candidates = []
        for f in dist.files or ():
            parts = Path(str(f)).parts
            if _LICENSE_NAME.match(parts[-1]) or any(p in ("licenses", "licences") for p in parts[:-1]):
                candidates.append(Path(dist.locate_file(f)))
        base = getattr(dist, "_path", None)  # the .dist-info dir: RECORD may be missing
        if base is not None and Path(base).is_dir():
            candidates += [p for p in Path(base).rglob("*") if _LICENSE_NAME.match(p.name)]
        for path in candidates:
            if path.is_file() and path.suffix not in (".py", ".pyc", ".so"):
                try:
                    rel = path.resolve().relative_to(Path(dist.locate_file("")).resolve())
                except ValueError:
                    rel = Path(path.name)
                found.setdefault(f"{name}/{rel.as_posix()}", path)
    for root in _SYSTEM_LICENCE_DIRS:  # Debian/Ubuntu: the OS's installed packages and their licences
        root = Path(root)
        if root.is_dir():
            for path in sorted(root.glob("*/copyright")) + sorted(p for p in root.glob("*") if p.is_file()):
                found.setdefault(f"system{path.as_posix()}", path)
    return sorted(found.items())


def legal_documents() -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for doc_id, path in _licence_files():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        kept = []
        for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
            key = " ".join(para.split()).lower()
            if key and key not in seen:
                seen.add(key)
                kept.append(para.strip("\n"))
        # Long files (some copyright files bundle hundreds of licences) are cut at paragraph boundaries so
        # that no one file dominates a split.
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


_BUILDERS = {"prose": prose_documents, "code": code_documents, "legal": legal_documents}


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
