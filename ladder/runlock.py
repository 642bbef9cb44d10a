"""One writer per run directory: `ladder train`, `ladder run` and the local launcher hold `<dir>/lock.json`.

The exclusion itself is an OS lock (fcntl.flock on the lock file), which the kernel drops the moment its
holder dies, however it dies: a lock file left by a dead process is therefore stale by construction and is
taken over (with a note naming the old holder). The file's content (host, pid, process start time, command)
only tells a second process who holds it, so it can exit at once with one line saying so. No JAX here.

gs:// directories are not locked: object stores have no locks, and the cloud backends start one job per
rung themselves (docs/training.md, "Run-directory lock").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ladder.errors import LadderError

LOCK_NAME = "lock.json"

# Locks this process holds: path -> (open file, depth). A process may re-enter its own lock (the launcher
# inside `ladder run` locking a run root twice, self-check after train), never another process's.
_HELD: dict[str, list] = {}


def _process_start(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (Linux); None elsewhere. pid + start time names a
    process uniquely, where a pid alone may have been reused."""
    try:
        return float(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid()),
            "started": time.time(), "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "command": " ".join(sys.argv)[:300]}


def read_holder(directory) -> dict | None:
    """The lock file's content (who holds or last held it), None when absent or unreadable."""
    try:
        holder = json.loads((Path(directory) / LOCK_NAME).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return holder if isinstance(holder, dict) else None  # garbage or another program's file: no holder known


def live_holder(directory) -> dict | None:
    """Who holds `directory`'s lock now ({} when its file says nothing readable), or None when no process does.
    Asks the kernel (a non-blocking flock on a descriptor of our own, released at once), so a lock file left by a
    dead process reads as free."""
    lock = Path(directory) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None  # absent (never locked), a directory or a planted symlink: `hold` names those
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return read_holder(directory) or {}
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe(h: dict | None) -> str:
    """'pid P on HOST (since ... UTC: COMMAND)' for messages."""
    return _describe(h)


def _describe(h: dict | None) -> str:
    if not h:
        return "another process (its lock file is being written)"
    return (f"pid {h.get('pid')} on {h.get('host')} (since {h.get('started_utc', '?')} UTC: "
            f"{h.get('command', '?')})")


def _why_stale(h: dict) -> str:
    """Why a lock file that names a holder is free. The kernel's lock is the truth (we got it); the pid only
    explains: on this host the process ended (its pid may since belong to another program), on another host we
    cannot look, and a filesystem without shared locks would not have stopped it."""
    if h.get("host") != socket.gethostname():
        return ("no process holds it now; it was taken on another host, so if a run there may still be writing "
                "here (a shared filesystem without locks), stop it")
    return "that process no longer holds it (it ended; its pid may since belong to another program)"


def _open_lock(path: Path):
    """The lock file, opened without following a symlink (a link planted there would make us create or write
    a file elsewhere)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "a+")


@contextlib.contextmanager
def hold(directory, what: str):
    """Hold the run directory's lock for the block, or raise LadderError at once naming the holder.

    `what` names the directory in messages (e.g. "--run-dir"). The directory is created if needed.
    """
    if "://" in str(directory):
        yield
        return
    directory = Path(directory)
    key = os.path.realpath(directory)  # never raises: Path.resolve raised RuntimeError on a loop of links
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    f, created = _acquire(directory, what)
    _HELD[key] = [f, 1]
    try:
        yield
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            del _HELD[key]
            _release(f, directory, created)


def _acquire(directory: Path, what: str):
    """(the lock file, held; whether the directory was created for it): the directory made if needed, the lock
    taken without waiting (held elsewhere: a LadderError naming the holder), a stale holder's take-over noted,
    and this process written in as the holder."""
    if directory.exists() and not directory.is_dir():
        raise LadderError(f"{what}: {directory} exists and is not a directory; choose a directory path")
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        f = _open_lock(directory / LOCK_NAME)
    except OSError as e:
        lock = directory / LOCK_NAME
        fix = ("remove it (ladder writes a plain file there)" if lock.is_dir() or lock.is_symlink() else
               "make the directory writable or choose another")
        raise LadderError(f"{what}: cannot create the lock file {lock} ({e.strerror}); {fix}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise LadderError(f"{what}: {directory} is in use by {_describe(read_holder(directory))}; wait for it to "
                          "finish or stop it (a lock left by a dead process is taken over automatically)") from None
    previous = read_holder(directory)
    if previous and "released" not in previous and previous.get("pid") != os.getpid():
        print(f"ladder: taking over the lock of {directory} from {_describe(previous)}: {_why_stale(previous)}",
              file=sys.stderr)
    _sweep_dead_writes(directory)
    try:
        f.seek(0)
        f.truncate()
        f.write(json.dumps(_holder(), indent=1))
        f.flush()
    except OSError as e:
        f.close()
        raise LadderError(f"{what}: cannot write the lock file {directory / LOCK_NAME} ({e.strerror}); "
                          "free space or make the directory writable") from None
    return f, created


DEAD_WRITE_AGE_S = 600.0


def _sweep_dead_writes(directory: Path) -> None:
    """Delete the temp files of atomic writes (storage.write_bytes: `.tmp-<name>-*`) that a holder killed mid-write
    left at the top of the directory: never read, but each a partial copy of a run file (metrics.jsonl,
    results.csv, status.json), one more per kill. Only those DEAD_WRITE_AGE_S old: a write takes seconds,
    so a younger one may still be under way (`ladder eval -o` into a run directory does not take its lock)."""
    cutoff = time.time() - DEAD_WRITE_AGE_S
    for p in directory.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink() and p.stat().st_mtime < cutoff:
                p.unlink()


def _release(f, directory: Path, created: bool) -> None:
    """Mark the lock released and close it (the kernel drops the flock), and remove a directory this hold
    created when the lock file is all it holds."""
    # The file stays (unlinking races with a new holder opening it); the content says it was released.
    with contextlib.suppress(OSError):
        f.seek(0)
        f.truncate()
        f.write(json.dumps(dict(_holder(), released=time.time()), indent=1))
        f.flush()
    f.close()
    # A run that failed its checks before writing anything leaves no directory behind.
    with contextlib.suppress(OSError):
        if created and [p.name for p in directory.iterdir()] == [LOCK_NAME]:
            (directory / LOCK_NAME).unlink()
            directory.rmdir()
