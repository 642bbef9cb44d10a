"""The exceptions the CLI turns into one line: LadderError for a mistake the user can fix (exit 2),
TrainingFailed for a run that started and cannot go on (exit 1), Terminated for a SIGTERM (exit 143)."""

import contextlib
import signal
import threading


class LadderError(Exception):
    """A problem the user can fix (bad config, bad input file, missing run).

    The message names the field or file and says how to fix it; the CLI prints it as one line.
    """


class TrainingFailed(Exception):
    """The run started but cannot go on (NaN or diverged loss, a failed write, distributed start-up): exit 1."""

    storage = False  # a failed write: orbax's writer threads may still hold failing futures (see commands/train)
    exit_at_once = False  # a peer process is gone: the interpreter's exit would wait at JAX's shutdown barrier


def require(ok: bool, field: str, problem: str, fix: str) -> None:
    """Raise a LadderError worded as '<field>: <problem>; <fix>' unless ok."""
    if not ok:
        raise LadderError(f"{field}: {problem}; {fix}")


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-=@,")


def require_path_name(name, field: str) -> None:
    """A name that becomes one path component (a rung's run directory, runs/<config name>): letters, digits
    and ._+-=@, only, not starting with a dot or dash, so it can neither escape its parent (`../x`, `/abs`)
    nor hide or read as an option."""
    ok = (isinstance(name, str) and 0 < len(name) <= 200 and set(name) <= _NAME_CHARS
          and name[0] not in ".-")
    require(ok, field, f"{name!r} cannot be a directory name (no separators, no leading dot or dash, at most "
            "200 of letters, digits and ._+-=@,)", "rename it, e.g. 370M-5xC")


def require_file_part(name, field: str) -> None:
    """A name from a table that becomes part of one file name (split_<domain>.png): any text, non-ASCII
    included, but no path separator or NUL, not blank, '.' or '..', at most 200 characters. Looser than
    require_path_name, which names run directories on cloud storage."""
    ok = (isinstance(name, str) and name.strip() != "" and len(name) <= 200 and name not in (".", "..")
          and not set(name) & set("/\\\x00"))
    require(ok, field, f"{name!r} cannot be part of a file name (blank, '.', '..', a '/' or '\\', or over 200 "
            "characters)", "rename it in the table")


def read_utf8(path, what: str = "file") -> str:
    """A text file's content; non-UTF-8 bytes (a binary or Latin-1 file) are one LadderError naming the file
    and the byte offset, and NUL bytes (binary data that happens to decode) are refused the same way. A leading
    byte-order mark (Windows editors and Excel's "CSV UTF-8" write one) is dropped: otherwise it sticks to the
    first column name or makes the first JSON value unreadable."""
    from pathlib import Path

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        why = {IsADirectoryError: "is a directory, not a file", FileNotFoundError: "not found",
               PermissionError: "cannot be read (permission denied)"}.get(type(e), f"cannot be read ({e.strerror})")
        raise LadderError(f"{what}: {path} {why}; pass a readable file") from None
    return decode_utf8(data, path, what)


def decode_utf8(data: bytes, path, what: str = "file") -> str:
    """read_utf8 on bytes already read (a gs:// object, a run directory's file): the same checks and messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LadderError(f"{what}: {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8, or check that it is the right file") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise LadderError(f"{what}: {path} has a NUL byte at offset {len(text[:nul].encode('utf-8'))}, so it is "
                          "binary, not text; check that it is the right file")
    return text[1:] if text.startswith("\ufeff") else text


def read_user_json(path, what: str = "file", fix: str = "check that it is the right file"):
    """A JSON file the user gives (strict): unreadable, non-UTF-8 or malformed JSON is one LadderError naming the
    file (and the line and column of the JSON error) instead of a JSONDecodeError traceback. Files ladder itself
    writes atomically into a run directory are read by the tolerant `storage.read_json` (torn means absent)."""
    return parse_json(read_utf8(path, what), f"{what}: {path}", fix)


def parse_json(text: str, where: str, fix: str = "check that it is the right file", *,
               problem: str = " is not valid JSON", line: bool = True):
    """json.loads, with malformed JSON (line and column named unless line=False) and nesting too deep for
    Python's parser (a RecursionError, e.g. 100,000 `[`) as one LadderError: '<where><problem> (<why>); <fix>'."""
    import json

    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        at = f" at line {e.lineno} column {e.colno}" if line else ""
        raise LadderError(f"{where}{problem} ({e.msg}{at}); {fix}") from None
    except RecursionError:
        raise LadderError(f"{where}{problem} (nested too deeply to read); {fix}") from None
    except _RepeatedKey as e:
        raise LadderError(f"{where}: the key {e.args[0]!r} appears twice in one object, and JSON readers silently "
                          f"keep the last; {fix}") from None


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs: list) -> dict:
    """object_pairs_hook for user JSON: {"gold": 0, "gold": 1} read as gold 1 without a word; refuse it."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`, a scheduler) raised in the main thread. A KeyboardInterrupt, so every cleanup
    Ctrl-C runs runs for it too: storage.write_bytes removes its temp file, all_or_nothing its staged files
    and the directories it made, the launcher stops its trainers."""


@contextlib.contextmanager
def sigterm_raises_terminated():
    """Within the block SIGTERM raises Terminated, as Ctrl-C raises KeyboardInterrupt; the previous handler is
    restored after it. Off the main thread it does nothing (Python takes signal handlers only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
