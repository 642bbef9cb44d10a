"""Every file ladder writes that something reads back, and every cache it reads back (issue #18's class
"lose nothing, mix nothing" for outputs and LADDER_CACHE):

- one atomic writer (storage.write_bytes): a kill -9 mid-write leaves the old file; a failed write (full disk)
  leaves no temp file, names the target and keeps the old file; two writers never share a temp file;
- multi-file outputs (storage.all_or_nothing) land together or not at all;
- no module writes a read-back file any other way (a scan of ladder/, with the exceptions named);
- token caches and built datasets under LADDER_CACHE are verified on every read: a damaged entry is rebuilt
  with one line, never read as wrong tokens or a traceback; two processes building one entry both get it.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from ladder import cli, storage
from ladder.errors import LadderError

ROOT = Path(__file__).resolve().parents[1]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", OPENBLAS_NUM_THREADS="1")


# ------------------------------------------------------------------------------------------ the writer

KILLED_MID_WRITE = textwrap.dedent("""
    import os, sys, time
    from ladder import storage
    target = sys.argv[1]
    real_fsync = os.fsync
    def stalled_fsync(fd):  # the new bytes are in the temp file, not yet renamed: the moment to be killed
        real_fsync(fd)
        print("WRITING", flush=True)
        time.sleep(60)
    os.fsync = stalled_fsync
    storage.write_text(target, "new " * 100000)
""")


def test_a_kill_mid_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "predictions.json"
    target.write_text("old")
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(target)], stdout=subprocess.PIPE,
                             text=True, env=_env())
    try:
        assert child.stdout.readline().strip() == "WRITING"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert target.read_text() == "old"
    left = [p.name for p in tmp_path.iterdir() if p.name != target.name]
    assert len(left) == 1 and left[0].startswith(".tmp-predictions.json-")  # the whole new copy, hidden
    storage.write_text(target, "new")  # the next write is not disturbed by the leftover
    assert target.read_text() == "new"


def _enospc(fd):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_keeps_the_old_file_leaves_no_temp_and_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    target.write_text("old")
    monkeypatch.setattr(storage.os, "fsync", _enospc)
    with pytest.raises(OSError) as e:
        storage.write_text(target, "new")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    with pytest.raises(IsADirectoryError, match="is a directory"):
        storage.write_text(tmp_path, "x")
    with pytest.raises(FileNotFoundError) as e:  # no parent: the parent is named, not a temp file
        storage.write_text(tmp_path / "missing" / "x.json", "x")
    assert e.value.filename == str(tmp_path / "missing")


def test_written_files_have_the_usual_mode_and_concurrent_writers_never_tear(tmp_path):
    target = tmp_path / "status.json"
    storage.write_json(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o666 & ~storage._UMASK
    texts = [json.dumps({"writer": i, "pad": "x" * 20000}) for i in range(4)]

    def write(text):
        for _ in range(25):
            storage.write_text(target, text)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts and [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_all_or_nothing_lands_every_file_or_none(tmp_path):
    old = tmp_path / "fit.json"
    old.write_text("old")
    new_dir = tmp_path / "made" / "plots"
    with pytest.raises(RuntimeError):
        with storage.all_or_nothing(new_dir):
            storage.write_text(old, "new")
            new_dir.mkdir(parents=True)
            storage.write_bytes(new_dir / "a.png", b"png")
            assert old.read_text() == "old"  # nothing lands before the block ends
            raise RuntimeError("the third plot failed")
    assert old.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["fit.json"]
    with storage.all_or_nothing(new_dir):
        storage.write_text(old, "new")
        new_dir.mkdir(parents=True)
        storage.write_bytes(new_dir / "a.png", b"png")
    assert old.read_text() == "new" and (new_dir / "a.png").read_bytes() == b"png"
    storage.write_text(old, "after")  # outside a block, writes land at once again
    assert old.read_text() == "after"


# Every raw write in ladder/ that is not through storage.write_bytes, with why it may stay raw. A new one fails
# this test: route it through storage.write_text/write_bytes (or add it here with its reason).
RAW_WRITES_ALLOWED = {
    "ladder/storage.py": "the writer itself; gs:// objects are written whole",
    "ladder/metrics.py": "metrics.jsonl is an append log (a torn last line is dropped by read_metrics)",
    "ladder/data/packing.py": "files inside a private temp directory renamed into place whole",
    "ladder/data/tfds_builder.py": "the build lock file (flock), never read",
    "ladder/launch/emulator.py": "the emulator's log, appended",
    "ladder/launch/standin.py": "rehearsal stand-in scripts and the fake bucket's objects",
    "ladder/train.py": "a probe file that checks the run directory is writable",
    "ladder/runlock.py": "the run lock: the kernel's flock is the lock; its holder note is read tolerantly",
}
RAW_WRITE = re.compile(r"\.write_text\(|\.write_bytes\(|open\([^)]*[\"'][wax]b?\+?[\"']|\.savefig\((?!buf)|np\.save\("
                       r"(?!buf)|json\.dump\(|\.save\(str\(")


def test_every_read_back_file_goes_through_the_one_atomic_writer():
    offenders = []
    for path in sorted((ROOT / "ladder").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in RAW_WRITES_ALLOWED:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if RAW_WRITE.search(code) and not re.search(r"\b(storage|rundir)\.write_", code):  # rundir's go through storage
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert not offenders, "write these through storage.write_text/write_bytes:\n" + "\n".join(offenders)


# ------------------------------------------------------------------------------------------ verbs that write

RESULTS = "run,n,d,step,task,loss,acc\n" + "".join(
    f"r{i},{n},{n * 20 * s / 4},{s},t,{1 + 1e3 / n ** 0.3},{0.3 + 0.1 * s / 4}\n"
    for i, n in enumerate((1e6, 2e6, 4e6, 8e6, 16e6, 32e6)) for s in (1, 2, 3, 4))


@pytest.mark.parametrize("argv, target", [
    (["plan", "--preset", "smoke", "--overwrite", "-o", "{out}/old.json"], "old.json"),
    (["import", "csv", "{results}", "--map", "run=run,n=n,d=d,step=step,task=task,loss=loss,acc=acc", "--overwrite",
      "-o", "{out}/old.json"], "old.json"),
    (["predict", "{results}", "--target", "t=1e9:2e10", "--method", "paper", "--bootstrap", "0", "-o",
      "{out}/p.json", "--plots", "{out}/new/plots"], "step1.png"),
])
def test_a_full_disk_is_one_line_leaves_nothing_and_destroys_nothing(capsys, tmp_path, monkeypatch, argv, target):
    """ENOSPC at the first write (simulated: the same error a full tmpfs gives, probed in docs/run.md)."""
    results, out = tmp_path / "results.csv", tmp_path / "out"
    results.write_text(RESULTS)
    out.mkdir()
    (out / "old.json").write_text("earlier output")
    monkeypatch.setattr(storage.os, "fsync", _enospc)
    rc = cli.main([a.format(out=out, results=results) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "No space left on device" in err[0] and target in err[0], err
    assert "Traceback" not in err[0] and ".tmp" not in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["old.json"] and (out / "old.json").read_text() == "earlier output"


# ------------------------------------------------------------------------------------------ caches


class _Bytes:  # the byte tokenizer's interface, without its import cost
    name, vocab_size, eos_id, pad_id = "byte", 259, 0, 1

    def encode_array(self, text):
        return np.frombuffer(text.encode(), np.uint8).astype(np.int32) + 3

    def fingerprint(self):
        return "byte-test"


TEXTS = [f"document {i} " + "word " * (i + 3) for i in range(20)]


def _flip(p: Path, at: int = -5):
    b = bytearray(p.read_bytes())
    b[at] ^= 0x41
    p.write_bytes(bytes(b))


def _replace_with_file(d: Path):
    for name in os.listdir(d):
        os.unlink(d / name)
    d.rmdir()
    d.write_text("x")


DAMAGE = {
    "truncated tokens": (lambda d: (d / "tokens.npy").write_bytes((d / "tokens.npy").read_bytes()[:100]),
                         "tokens.npy is 100 bytes"),
    "zero-byte offsets": (lambda d: (d / "offsets.npy").write_bytes(b""), "offsets.npy is 0 bytes"),
    "a flipped byte": (lambda d: _flip(d / "tokens.npy"), "tokens.npy's sha256 differs"),
    "garbage meta": (lambda d: (d / "meta.json").write_bytes(b"\xff{"), "meta.json is unreadable"),
    "meta missing": (lambda d: (d / "meta.json").unlink(), "meta.json is missing"),
    "an older format": (lambda d: (d / "meta.json").write_text('{"documents": 20}'), "format 'none', not"),
    "a file, not an entry": (lambda d: _replace_with_file(d), "not a directory"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_token_cache_entry_is_rebuilt_with_one_line(tmp_path, kind):
    from ladder.data import packing

    entry = tmp_path / "tokens" / "entry"
    packing.build_token_cache(TEXTS, _Bytes(), entry)
    tokens, offsets = (np.array(a) for a in packing.load_token_cache(entry))
    damage, problem = DAMAGE[kind]
    damage(entry)
    with pytest.raises(LadderError, match=re.escape(problem) + ".*delete it and run again"):
        packing.load_token_cache(entry)
    lines = []
    packing.build_token_cache(TEXTS, _Bytes(), entry, log=lines.append)
    assert len(lines) == 1 and f"token cache {entry} cannot be used ({problem}" in lines[0]
    assert lines[0].endswith("rebuilding it")
    again = packing.load_token_cache(entry)
    assert np.array_equal(again[0], tokens) and np.array_equal(again[1], offsets)
    assert sorted(p.name for p in entry.parent.iterdir()) == ["entry"]  # the damaged copy is gone


RACE = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from ladder.data import packing

    entry, me, other = sys.argv[1:4]
    class Slow:
        name, vocab_size = "byte", 259
        def encode_array(self, text):
            time.sleep(0.02)  # 20 documents: both processes are tokenizing at once
            return np.frombuffer(text.encode(), np.uint8).astype(np.int32) + 3
        def fingerprint(self):
            return "byte-test"
    Path(me).touch()
    while not Path(other).exists():
        time.sleep(0.01)
    packing.build_token_cache([f"document {i} " + "word " * (i + 3) for i in range(20)], Slow(), Path(entry))
    t, o = packing.load_token_cache(Path(entry))
    print(json.dumps([int(t.sum()), o.tolist()]))
""")


@pytest.mark.timeout(120)
def test_two_processes_building_one_token_cache_entry_both_read_it_whole(tmp_path):
    entry = tmp_path / "tokens" / "entry"
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(entry), str(ready[i]), str(ready[1 - i])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=100)
            assert p.returncode == 0, err[-2000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            p.kill()
    assert outs[0] == outs[1]
    assert sorted(p.name for p in entry.parent.iterdir()) == ["entry"]  # the loser's temp directory removed
    from ladder.data import packing

    assert packing.cache_problem(entry) == ""


def test_a_damaged_built_dataset_is_rebuilt_with_one_line(tmp_path, capsys):
    from ladder.data import tfds_builder as tb

    files = tmp_path / "files"
    files.mkdir()
    for i, text in enumerate(TEXTS):
        (files / f"d{i}.txt").write_text(text)
    builder = tb.prepared(tb.files_builder(str(files), tmp_path / "tfds", name="probe"))
    version_dir = Path(builder.data_dir)
    assert tb.build_problem(version_dir) == ""
    split = tb.read_split(builder, "train")
    docs = sorted(split[i]["text"] for i in range(len(split)))
    record = next(version_dir.glob("*-train.array_record*"))
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])  # tfds alone reads other documents
    capsys.readouterr()
    builder = tb.prepared(tb.files_builder(str(files), tmp_path / "tfds", name="probe"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ladder:")]
    assert len(err) == 1 and f"{record.name} is not the file that was built" in err[0], err
    split = tb.read_split(builder, "train")
    assert sorted(split[i]["text"] for i in range(len(split))) == docs
    (version_dir / tb.BUILD_SUMS).unlink()  # a build from before the list, or one killed before writing it
    assert "no ladder-build.json" in tb.build_problem(version_dir)


APPENDER = textwrap.dedent("""
    import sys
    from ladder import results
    path, me = sys.argv[1:3]
    for i in range(30):
        results.append_rows(path, [{"run": me, "n": 1e6, "d": 2e7, "step": i, "task": t, "loss": 1.0, "acc": 0.5}
                                   for t in ("a", "b")])
""")


@pytest.mark.timeout(120)
def test_two_evaluators_adding_to_one_table_keep_every_row(tmp_path):
    """results.csv is rewritten whole (never torn) under a lock on its directory, so concurrent `ladder eval -o
    T` runs lose nothing: a rewrite without the lock would drop the rows the other added in between."""
    from ladder.results import read_table

    table = tmp_path / "results.csv"
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(table), f"r{i}"], stderr=subprocess.PIPE,
                              text=True, env=_env()) for i in range(2)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=100)
            assert p.returncode == 0, err[-2000:]
    finally:
        for p in procs:
            p.kill()
    cols = read_table(table)
    assert sorted((r, int(s), t) for r, s, t in zip(cols["run"], cols["step"], cols["task"])) == sorted(
        (f"r{i}", s, t) for i in range(2) for s in range(30) for t in ("a", "b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_a_second_tokenize_into_one_store_is_refused_while_the_first_runs(tmp_path):
    """The second would delete the first's shard pieces in flight (its temp clean-up, or --overwrite)."""
    import fcntl

    from ladder.data.tokenize import tokenize

    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("some text " * 50)
    store = tmp_path / "store"
    store.mkdir()
    fd = os.open(store, os.O_RDONLY)  # what a running tokenize holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LadderError, match="is being written by another `ladder data tokenize` right now"):
            tokenize(str(files), "byte", str(store), overwrite=True, log=lambda m: None)
    finally:
        os.close(fd)
    m = tokenize(str(files), "byte", str(store), log=lambda m: None)
    assert m["tokens"] > 0 and not list(store.glob(".tmp-*"))


def test_leftovers_of_a_killed_cache_build_are_swept_once_old(tmp_path):
    from ladder.data import packing

    parent = tmp_path / "tokens"
    (parent / ".tmp-dead").mkdir(parents=True)
    (parent / ".tmp-dead" / "tokens.npy").write_bytes(b"x" * 1000)
    (parent / ".stale-entry-1-2").mkdir()
    (parent / ".tmp-live").mkdir()  # a build writing right now
    for name in (".tmp-dead", ".stale-entry-1-2"):
        os.utime(parent / name, (1e9, 1e9))
    packing.build_token_cache(TEXTS, _Bytes(), parent / "entry")
    assert sorted(p.name for p in parent.iterdir()) == [".tmp-live", "entry"]


def test_a_report_whose_plot_cannot_be_written_leaves_the_earlier_outputs_alone(tmp_path, capsys, monkeypatch):
    """`report specialization` (like `fit` and `allocate`) writes JSON, CSV and plots; a failure at a plot used
    to leave a new JSON and CSV beside the old plots. Now they land together or none does."""
    from test_specialize import write_study

    path = write_study(tmp_path / "r.csv")
    out = tmp_path / "report"
    out.mkdir()
    (out / "effectiveness.json").write_text("earlier report")
    real = storage.write_bytes

    def no_room_for_plots(p, data):
        if str(p).endswith(".png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(p))
        real(p, data)

    monkeypatch.setattr(storage, "write_bytes", no_room_for_plots)
    rc = cli.main(["report", "specialization", str(path), "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and ".png: No space left on device" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["effectiveness.json"]
    assert (out / "effectiveness.json").read_text() == "earlier report"


def test_a_damaged_stage_output_is_one_line_naming_its_stage(tmp_path):
    from ladder.report import write_report

    (tmp_path / "plan.json").write_bytes(b'{"targets": [')  # torn by something other than ladder
    with pytest.raises(LadderError, match=r"plan.json is damaged: not valid JSON .*the 'plan' entry of stages.json"):
        write_report(tmp_path, str(tmp_path / "runs"), {})
