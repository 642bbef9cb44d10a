"""Reading and writing files, local or gs://: the one atomic writer and the one tolerant reader (no JAX here).

Every file ladder writes and someone reads back (run-directory files, results tables, plots, plans,
predictions, caches, token stores) goes through `write_bytes`: local files atomically (temp file, fsync,
os.replace), so a reader never sees half a file; an object store has no rename, but an object appears only
once its upload completes, which gives the same guarantee. `all_or_nothing` makes a verb's several output
files land together; `editing` serialises read-change-write edits of one file between processes.

Paths go through etils.epath (gs:// needs gcsfs). What the files of a run directory are and mean lives in
ladder/rundir.py, which builds on this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import math
import os
import sys

from etils import epath

from ladder.errors import LadderError, decode_utf8


def path(p) -> epath.Path:
    """A path, local or gs:// (etils.epath)."""
    return epath.Path(p)


def is_remote(p) -> bool:
    return "://" in str(p)


def join(root, name: str) -> str:
    """Join a local or gs:// root with a child name (no os.path: gs:// keeps its double slash)."""
    return str(root).rstrip("/") + "/" + name


def forget_listing(p) -> None:
    """Drop gcsfs's cached listing of a gs:// path before a decision rests on it: gcsfs keeps listings with
    no expiry, so a long-lived process (the launcher) would answer is_dir/iterdir from what it saw before a
    trainer wrote. Reads are always fresh; only listings need this."""
    if is_remote(p):
        from etils.epath import backend

        backend.fsspec_backend.fs(os.fspath(p)).invalidate_cache()


def _gcsfs_hint(p, e: ImportError) -> LadderError:
    return LadderError(f"{p}: reading gs:// needs gcsfs ({e}); run `pip install gcsfs`")


def read_bytes(p) -> bytes | None:
    """A file's bytes (local or gs://); None when absent."""
    try:
        return path(p).read_bytes()
    except FileNotFoundError:
        return None
    except ImportError as e:
        raise _gcsfs_hint(p, e) from e


def read_text(p) -> str | None:
    """A file's text (local or gs://, UTF-8); None when absent; LadderError naming file and byte offset when it
    is not UTF-8 text (errors.decode_utf8)."""
    raw = read_bytes(p)
    return None if raw is None else decode_utf8(raw, p, "run directory")


def read_json(p) -> dict | None:
    """A JSON object file ladder wrote (local or gs://), read tolerantly; None when absent or torn
    (written atomically, so torn, binary or not an object means foreign). User-given JSON goes through the
    strict `errors.read_user_json` instead."""
    try:
        text = read_text(p)
        value = None if text is None else json.loads(text)
    except (LadderError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def write_text(p, text: str) -> None:
    """Write a whole file atomically (UTF-8): see write_bytes."""
    write_bytes(p, text.encode("utf-8"))


def write_bytes(p, data: bytes) -> None:
    """The one atomic writer of every file ladder writes that someone reads back (run-directory files,
    results tables, plots, plans, predictions, caches): a kill -9 at any moment leaves the old file or the new
    one, never a torn one. A symbolic link is written through (`through_links`). Local: a uniquely named
    `.tmp-<name>-*` sibling (two writers never share one),
    fsync, os.replace, and the temp file removed on any failure (a full disk leaves nothing behind); an error
    names the target path, not the temp file. gs:// objects are written whole: an object appears only once
    its upload completes (a rename there is a copy and a delete: twice the bytes, and a `moveTo` call the
    Cloud Storage emulator does not serve)."""
    if is_remote(p):
        path(p).write_bytes(data)
        return
    import tempfile

    p = os.fspath(p)
    if os.path.isdir(p):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", p)
    target = through_links(p)
    parent, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=parent or ".", prefix=f".tmp-{name[:100]}-")
    except OSError as e:
        raise named_error(e, parent or ".") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # what open(p, "w") would have given (mkstemp makes 0600)
        staged = _STAGED.get()
        if staged is None:
            os.replace(tmp, target)
        else:
            staged.append((tmp, target))
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise named_error(e, p, target if target != p else None) from None
        raise


def named_error(e: OSError, target, target2=None) -> OSError:
    """`e` again, of its type, naming `target` (the file the user knows, not a temp file) and always with a
    reason: numpy's ndarray.tofile (under np.save) reports a write the disk cut short as a bare
    "OSError: 1048576 requested and 0 written", with no errno, which printed as "[Errno None] None"."""
    errno_, reason = e.errno, e.strerror
    if not reason:
        short = "requested and" in str(e) and "written" in str(e)
        errno_ = errno.ENOSPC if short else errno_
        reason = "No space left on device (the write stopped short)" if short else (str(e) or type(e).__name__)
    return type(e)(errno_, reason, os.fspath(target), None, target2)


def native_path_problem(p) -> str | None:
    """Why a local path cannot be handed to the C++ writers (orbax/tensorstore checkpoints, array_record), or
    None. They take paths as UTF-8; Python takes them in the locale's encoding. Under a C locale without UTF-8
    (PYTHONCOERCECLOCALE=0 PYTHONUTF8=0 LC_ALL=C) a non-ASCII name decodes to lone surrogates that pybind11
    cannot cast: a run trained every step, then failed at its first save; a Latin-1 locale would have written
    the checkpoints under another directory's name."""
    if is_remote(p):
        return None
    try:
        same = os.fsencode(os.fspath(p)) == os.fspath(p).encode("utf-8")
    except UnicodeEncodeError:
        same = False
    if same:
        return None
    import locale

    return (f"{os.fspath(p)!r} is not the same name in UTF-8 as in this locale's file-name encoding "
            f"({sys.getfilesystemencoding()}, LC_CTYPE={locale.setlocale(locale.LC_CTYPE)}), and the C++ "
            "writers (checkpoints, built datasets) take UTF-8")


NATIVE_PATH_FIX = "run under a UTF-8 locale (export LC_ALL=C.UTF-8) or use an ASCII path"


def through_links(p: str) -> str:
    """The file a write to `p` lands in: `p`, or when `p` is a symbolic link the file it points to (resolved
    through every link; created when absent, as the shell's `>` does). Replacing the link itself left it a
    regular file and its target unchanged: `-o results.csv` linked into a shared directory silently stopped
    updating the shared copy. The write stays atomic: its temp file is a sibling of the target."""
    return os.path.realpath(p) if os.path.islink(p) else p


_STAGED: contextvars.ContextVar[list | None] = contextvars.ContextVar("ladder_staged_writes", default=None)


@contextlib.contextmanager
def all_or_nothing(*dirs):
    """The local files written inside this block (by write_bytes) land together at its end, or none does.

    For verbs whose output is several files (predict: JSON and plots; fit: JSON, CSV, plots; data tasks): a
    failure part way (a full disk at the third plot, an error in the holdout report) leaves the previous
    outputs as they were and no new file behind, instead of a new JSON beside old plots. Each file is
    written whole to its temp sibling first; only the renames wait for the end (a kill -9 during those few
    renames can still leave some new and some old files, each of them whole). `dirs`: output directories
    that, if this block creates them, are removed again on failure (when left empty)."""
    staged: list = []
    new_dirs = []  # every directory on the way to each of `dirs` that does not exist yet, deepest last
    for d in dirs:
        d = os.path.abspath(os.fspath(d))
        while not os.path.lexists(d) and d not in new_dirs:
            new_dirs.append(d)
            d = os.path.dirname(d)
    new_dirs.sort(key=len)
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for d in reversed(new_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(d)  # only when empty: what this block made and nothing put there
        raise
    finally:
        _STAGED.reset(token)
    for i, (tmp, target) in enumerate(staged):
        try:
            os.replace(tmp, target)
        except OSError as e:
            for left, _ in staged[i:]:
                with contextlib.suppress(OSError):
                    os.unlink(left)
            raise named_error(e, target) from None


@contextlib.contextmanager
def editing(p):
    """Hold an exclusive lock on `p`'s directory while a file there is read, changed and written back
    (results.csv gaining an evaluation's rows), so two processes editing one file at once never lose each
    other's rows: the file itself cannot carry the lock, since each write replaces it. A no-op on gs:// and
    where the filesystem has no flock (the edit is then as safe as the caller's own exclusivity)."""
    if is_remote(p):
        yield
        return
    import fcntl

    fd = os.open(os.path.dirname(os.path.abspath(through_links(os.fspath(p)))), os.O_RDONLY)  # where it lands
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask can only set it, and setting
    it briefly could give a file another thread creates meanwhile the wrong mode)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


_UMASK = _umask()


def json_text(obj, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Standard JSON text of `obj` (numpy scalars and arrays as numbers and lists), every NaN or infinity
    written as null: Python's `NaN`/`Infinity` tokens are not JSON (JSON.parse and strict parsers refuse
    them, jq reads null), so a missing number is null, the one spelling every reader knows. The one
    encoder of every JSON file ladder writes (write_json) and of `ladder predict -o`."""
    return json.dumps(_finite_or_null(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def _finite_or_null(v):
    if isinstance(v, dict):
        return {k: _finite_or_null(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_null(x) for x in v]
    if isinstance(v, (bool, str, type(None))):
        return v
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _finite_or_null(v.tolist())
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, int):
        return v
    return _finite_or_null(float(v))  # what default=float accepted before


def write_json(p, obj, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Standard JSON (json_text: NaN and infinities as null) written atomically by write_text."""
    write_text(p, json_text(obj, indent=indent, sort_keys=sort_keys) + "\n")
