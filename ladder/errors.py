"""One exception type for every user mistake, so the CLI can print one line and exit 2."""


class LadderError(Exception):
    """A problem the user can fix (bad config, bad input file, missing run).

    The message names the field or file and says how to fix it; the CLI prints it as one line.
    """


def require(ok: bool, field: str, problem: str, fix: str) -> None:
    """Raise a LadderError worded as '<field>: <problem>; <fix>' unless ok."""
    if not ok:
        raise LadderError(f"{field}: {problem}; {fix}")
