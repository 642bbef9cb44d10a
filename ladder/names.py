"""One rule for names that look alike (runs, tasks, training sets in a results table): two spellings that
differ only by case, Unicode form (NFC `é` vs NFD `e` + U+0301, NFKC's full-width letters) are refused with one
line naming both, and so is a name with spaces around it or an invisible character (a zero-width space, a
BOM, a control character) in it.

Why refuse instead of merging: each of these was a silent split before (session 10). `ARC` and `arc` were two
tasks fitted apart, each on half the rows; `190M-1xC` and `190m-1xc` two runs of one size; an NFD `é` a
second task whose plot file overwrote the first's on a case-insensitive disk. Which spelling is meant is the
user's call, and both are printed with ascii() so the difference is visible.
"""

from __future__ import annotations

import unicodedata

from ladder.errors import LadderError

_INVISIBLE = ("Cc", "Cf", "Zl", "Zp")  # control, format (zero-width, BOM, bidi marks), line/paragraph separators


def fold(name: str) -> str:
    """The key two spellings of one name share: NFKC, then case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def problem(name: str) -> str | None:
    """Why `name` cannot be a name (spaces around it, an invisible character), or None."""
    if name != name.strip():
        return "has spaces around it"
    bad = next((c for c in name if unicodedata.category(c) in _INVISIBLE), None)
    if bad is not None:
        return f"holds the invisible character U+{ord(bad):04X} ({unicodedata.name(bad, 'unnamed')})"
    return None


def check_names(names, field: str, where: str) -> None:
    """Every distinct value of a name column: none invisible-marked or space-padded, and no two that fold to
    one key. Raises a LadderError naming the column, both spellings and the fix."""
    seen: dict[str, str] = {}
    for name in dict.fromkeys(str(n) for n in names):
        why = problem(name)
        if why:
            raise LadderError(f"{where}: {field} {ascii(name)} {why}; remove it (names are compared exactly)")
        other = seen.setdefault(fold(name), name)
        if other != name:
            raise LadderError(f"{where}: {field} {ascii(other)} and {ascii(name)} differ only by case or Unicode "
                              f"form, so they would be two {field}s; spell them one way")
