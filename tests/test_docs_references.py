"""Every module path (`ladder/x/y.py`, `tests/...`, `bench/...`, `configs/...`) and dotted name
(`ladder.x.y`, `ladder.x.NAME`) that README.md and docs/*.md mention exists: a newcomer who follows the docs
to a module or function finds it, and a move or rename that forgets its docs fails here by name. Read from
the source with `ast` (nothing imported, well under a second)."""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH = re.compile(r"\b(?:ladder|tests|bench|configs)/[A-Za-z0-9_/.-]*\.py\b")
DOTTED = re.compile(r"\bladder(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


@cache
def _names(path: Path) -> frozenset[str]:
    """What a module defines or imports at any depth (functions, classes, assigned names, imported names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Assign):
            found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(found)


def resolves(dotted: str) -> bool:
    """`ladder.a.b.NAME`: the longest prefix that is a module or package, then NAME defined in it (the first
    attribute only: `ladder.x.Class.method` checks Class)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        for module in (base.with_suffix(".py"), base / "__init__.py"):
            if module.exists():
                return i == len(parts) or parts[i] in _names(module)
    return False


def _references():
    for doc in DOCS:
        text, where = doc.read_text(), str(doc.relative_to(ROOT))
        for ref in sorted(set(PATH.findall(text))):
            yield pytest.param(where, ref, id=f"{where}:{ref}")
        for ref in sorted(set(DOTTED.findall(text))):
            yield pytest.param(where, ref, id=f"{where}:{ref}")


@pytest.mark.parametrize("where, ref", list(_references()))
def test_a_module_or_name_the_docs_mention_exists(where, ref):
    found = (ROOT / ref).exists() if ref.endswith(".py") and "/" in ref else resolves(ref)
    assert found, f"{where} mentions {ref}, which does not exist: update the doc to where it moved"


def test_a_missing_name_is_caught():
    assert resolves("ladder.results.validate_table") and resolves("ladder.laws.training_sets")
    assert not resolves("ladder.results.no_such_function") and not resolves("ladder.no_such_module")
