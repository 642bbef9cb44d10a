"""Issue 18, session 9's probe round on the training side: classes no earlier round tried. Corpora that are
not text (binary, Latin-1, a FIFO, a link to nothing, a directory a glob matched, pretty-printed JSON), corpora
too small to fill a sequence or a held-out split, the packer's padded positions, a backend JAX_PLATFORMS asks
for that the machine lacks, checkpoint steps past the run's total_steps or renamed by hand
(docs/training.md "Reliability"; the probe table is in the session's closing note)."""

import json
import os
import shutil

import numpy as np
import pytest

from ladder.errors import LadderError


# ------------------------------------------------------------------ packing
@pytest.mark.parametrize("lengths, seq_len, batches", [((25,), 16, 4), ((10, 27), 16, 50),
                                                      ((500, 700, 1800), 128, 300)])
def test_padded_rows_never_read_past_the_tokens(lengths, seq_len, batches):
    """Past an epoch's last unit both np.where branches were read: an epoch ending on the physically last
    document indexed past the token array (IndexError mid-run; 29 of 50 batches of the 2-document corpus)."""
    from ladder.data.packing import PackedSource

    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = (np.arange(offsets[-1]) % 250 + 3).astype(np.uint16)
    source = PackedSource(tokens, offsets, seq_len, 4, seed=0, eos_id=1, pad_id=0)
    seen = []
    for k in range(batches):
        b = source.batch(k)
        pad = b["segment_ids"] == 0
        assert (b["inputs"][pad] == 0).all() and (b["targets"][pad] == 0).all()
        seen.append(b["targets"][~pad])
    # every epoch holds each token once plus one EOS per document: the padded tail added nothing
    epoch_rows = source.rows(np.arange(source.rows_per_epoch))
    real = epoch_rows["targets"][epoch_rows["segment_ids"] > 0]
    assert len(real) == offsets[-1] + len(lengths)
    assert sorted(real[real != 1]) == sorted(tokens.tolist())


def test_a_one_document_corpus_shorter_than_a_row_trains(tmp_path):
    from ladder.data.packing import PackedSource

    source = PackedSource(np.arange(3, 8, dtype=np.uint16), np.array([0, 5]), 16, 2, seed=0, eos_id=1, pad_id=0)
    b = source.batch(7)
    assert b["inputs"][0, :6].tolist() == [1, 3, 4, 5, 6, 7] and b["targets"][0, :6].tolist() == [3, 4, 5, 6, 7, 1]
    assert (b["segment_ids"][0, 6:] == 0).all()


# ------------------------------------------------------------------ corpus files
def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name, data, message", [
    ("b.txt", bytes(range(256)) * 4, r"data.files: .*b.txt is not UTF-8 text \(byte 0x80 at offset 128\)"),
    ("l.txt", "café".encode("latin-1"), r"l.txt is not UTF-8 text \(byte 0xe9 at offset 3\)"),
    ("n.md", b"text\x00more", r"n.md has a NUL byte at offset 4, so it is binary"),
    ("a.jsonl", '{"text": "café"}\n'.encode("latin-1"), r"a.jsonl:1: not UTF-8 \(byte 0xe9 at column 14\)"),
    ("p.json", b'{\n "text": "x"\n}\n', r"p.json:1: malformed JSON .*one JSON object per line"),
    ("j.json", b'[{"text": "x"}]\n', r"j.json:1: a JSON list, not an object .*one JSON object per line"),
    ("d.jsonl", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", r"d.jsonl:1: malformed JSON \(nested too "
     r"deeply to read\)"),
])
def test_corpus_files_that_are_not_utf8_jsonl_text_name_the_file(tmp_path, name, data, message):
    """They were read with errors="replace" (a binary .txt trained as U+FFFD tokens, without a word) or
    raised a UnicodeDecodeError traceback (JSONL); a JSON array said "no 'text' field"."""
    from ladder.data import tfds_builder as tb

    path = _write(tmp_path / name, data)
    builder = tb.LadderFiles.__new__(tb.LadderFiles)  # only _documents is exercised: no tfds directory made
    builder.__dict__["_builder_config"] = tb.FilesConfig(name="x", paths=(path,))
    with pytest.raises(LadderError, match=message):
        list(tb.LadderFiles._documents(builder))


def test_a_byte_order_mark_in_jsonl_is_dropped(tmp_path):
    from ladder.data import local_files as lf

    path = _write(tmp_path / "a.jsonl", b'\xef\xbb\xbf{"text": "hi"}\n')
    assert list(lf.read_jsonl_texts(path, "text")) == [(f"{path}:1", "hi")]


def test_paths_that_are_not_regular_files(tmp_path):
    """A FIFO named .txt was opened and read: the build blocked forever; a link to nothing failed in
    os.path.getsize; a directory a glob matched was opened as a file (IsADirectoryError)."""
    from ladder.data import local_files as lf

    os.mkfifo(tmp_path / "fifo.txt")
    with pytest.raises(LadderError, match=r"fifo.txt is not a regular file \(a FIFO"):
        lf.expand_paths(str(tmp_path / "fifo.txt"))
    (tmp_path / "gone.txt").symlink_to(tmp_path / "missing" / "x.txt")
    with pytest.raises(LadderError, match=r"gone.txt is a link to nothing"):
        lf.expand_paths(str(tmp_path / "gone.txt"))
    _write(tmp_path / "d" / "sub.txt" / "in.md", b"inside")
    _write(tmp_path / "d" / "top.txt", b"top")
    assert lf.expand_paths(str(tmp_path / "d" / "*.txt")) == [str(tmp_path / "d" / "sub.txt" / "in.md"),
                                                            str(tmp_path / "d" / "top.txt")]
    assert lf.expand_paths(str(tmp_path / "d")) == lf.expand_paths(str(tmp_path / "d" / "*.txt"))  # the FIFO: skipped


def test_tokenize_reads_text_files_as_source_files_does(tmp_path):
    from ladder.data.tokenize import _texts

    path = _write(tmp_path / "l.txt", "café".encode("latin-1"))
    with pytest.raises(LadderError, match=r"l.txt is not UTF-8 text \(byte 0xe9 at offset 3\)"):
        list(_texts({"split": "all"}, {"kind": "text", "paths": [path]}))
    data = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    path = _write(tmp_path / "d.jsonl", data)
    with pytest.raises(LadderError, match=r"d.jsonl \(byte 0\): malformed JSON \(nested too deeply to read\)"):
        list(_texts({"split": "all", "text_field": "text"}, {"kind": "jsonl", "path": path, "start": 0,
                                                            "stop": len(data)}))


def test_a_corpus_too_small_for_a_held_out_split(tmp_path, capsys):
    """`ladder data files` on a one-document corpus failed on its validation split as "data.split: ... has no
    split 'validation'" (the user set no data.split); a run's held-out loss said the same before training.
    Now the build notes the empty splits, and reading one says why it is empty and what to do."""
    from ladder.cli import main

    corpus = tmp_path / "one"
    _write(corpus / "a.txt", b"hello world this is text\n")  # drawn into train by its hash
    cache = tmp_path / "cache"
    assert main(["data", "files", str(corpus), "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "files[train]: 1 documents, 25 tokens" in out
    assert "files[validation]: no documents (each document's split is drawn from a hash of its text: 10% " \
           "validation, 10% test, the rest train)" in out
    import ml_collections

    from ladder.data import pipeline
    from ladder.data.tokenizer import ByteTokenizer

    cfg = ml_collections.ConfigDict(dict(cache_dir=str(cache), source="files", files=str(corpus)))
    with pytest.raises(LadderError, match=r"no document fell in the 'validation' split .* this dataset has 1 in "
                       r"train\); add documents .* eval.lm_loss_batches=0"):
        pipeline.token_cache(cfg, "validation", ByteTokenizer())


def test_the_custom_config_warning_of_a_files_build_is_not_logged(tmp_path, caplog):
    from ladder.data import tfds_builder as tb

    _write(tmp_path / "docs" / "a.txt", b"some text")
    with caplog.at_level("WARNING"):
        tb.files_builder(str(tmp_path / "docs"), tmp_path / "tfds")
    assert not [r for r in caplog.records if "custom data configuration" in r.getMessage()]


# ------------------------------------------------------------------ environment
def test_a_backend_jax_platforms_asks_for_that_is_absent_is_one_line(monkeypatch):
    import jax

    from ladder import sharding

    def absent():
        raise RuntimeError("Unable to initialize backend 'cuda': no GPU here. (set JAX_PLATFORMS='' to "
                           "automatically choose an available backend)")

    monkeypatch.setattr(jax, "devices", absent)
    monkeypatch.setenv("JAX_PLATFORMS", "gpu")
    with pytest.raises(LadderError, match=r"^JAX_PLATFORMS=gpu: Unable to initialize backend 'cuda': no GPU "
                       r"here; unset JAX_PLATFORMS \(or set it to cpu"):
        sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1, "dcn_data": 1})


# ------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run of 4 steps with checkpoints at 2 and 4."""
    from ladder.train import train
    from tests.test_train import tiny_config

    run_dir = tmp_path_factory.mktemp("p9") / "run"
    assert train(tiny_config(total_steps=4, checkpoint_every=2, keep_checkpoints=2), str(run_dir))["state"] == "done"
    return run_dir


def _copy_run(finished, tmp_path, edit):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "lock.json").unlink(missing_ok=True)
    edit(run / "checkpoints")
    return run


def test_the_step_checks_name_the_directory_and_the_fix(tmp_path):
    from ladder.checkpoint import check_restored_step, check_step_in_run

    check_step_in_run(tmp_path, 4, 4)
    with pytest.raises(LadderError, match=r"checkpoints/10 is past train.total_steps=4 of this run's config, so "
                       r"this run did not save it \(copied in from a longer run\?\); move it out"):
        check_step_in_run(tmp_path / "checkpoints", 10, 4)
    check_restored_step(tmp_path, 3, {"step": np.int32(3)})
    with pytest.raises(LadderError, match=r"/3 holds the train state of step 2, not 3 .*rename it back to 2"):
        check_restored_step(tmp_path, 3, {"step": np.int32(2)})


@pytest.mark.slow
def test_a_step_past_total_steps_is_refused_by_eval_and_by_a_resume(finished, tmp_path):
    """A step copied in from a longer run: the resume "finished" at once with loss None and status step 10,
    and `ladder eval` wrote results rows at step 10 (D from it)."""
    from ladder.eval import restore_logits_fn
    from ladder.train import train
    from tests.test_train import tiny_config

    run = _copy_run(finished, tmp_path, lambda c: shutil.copytree(c / "4", c / "10"))
    with pytest.raises(LadderError, match=r"checkpoints/10 is past train.total_steps=4 of this run's config"):
        restore_logits_fn(run)
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(dict(status, state="running")))  # as a crash leaves it
    with pytest.raises(LadderError, match=r"checkpoints/10 is past train.total_steps=4"):
        train(tiny_config(total_steps=4, checkpoint_every=2, keep_checkpoints=2), str(run))


@pytest.mark.slow
def test_a_renamed_step_is_refused(finished, tmp_path):
    from ladder.eval import restore_logits_fn

    run = _copy_run(finished, tmp_path, lambda c: (c / "2").rename(c / "3"))
    with pytest.raises(LadderError, match=r"checkpoints/3 holds the train state of step 2, not 3 .*rename it back"):
        restore_logits_fn(run, 3)
    config, step, _ = restore_logits_fn(run)  # the untouched latest step still restores
    assert step == 4


# ------------------------------------------------------------------ configs a run reads
@pytest.mark.parametrize("mixture, message", [
    ({"a": {"weight": "abc", "source": "files"}}, r"data.mixture.a.weight: 'abc' is not a finite number >= 0"),
    ({"a": {"weight": -1.0}, "b": {"weight": 1.0}}, r"data.mixture.a.weight: -1.0 is not a finite number >= 0"),
    ({"a": {"weight": 0.0}, "b": {"weight": 0}}, r"data.mixture: every weight is 0"),
    ({"a": {"weight": 1.0, "file": "/x/*.txt"}}, r"data.mixture.a.file: unknown data key; known keys: weight, "),
    ({"a": {"weight": 1.0, "source": "mixture"}}, r"data.mixture.a.source: a component cannot itself be a mixture"),
    ({"a": 0.5}, r"data.mixture.a: is 0.5, not a section"),
    ({}, r"data.mixture: is "),
])
def test_mixture_components_are_checked_before_any_is_built(mixture, message):
    """A weight "abc" was a ValueError traceback; -1 was refused only after every component was tokenized;
    a misspelt key was dropped, so the component silently read the parent's value."""
    from ladder.train_config import validate
    from tests.test_train import tiny_config

    cfg = tiny_config()
    cfg.data.source = "mixture"
    cfg.data.mixture = mixture
    with pytest.raises(LadderError, match=message):
        validate(cfg)


def test_a_resume_with_another_config_names_what_changed():
    """"holds a run with another config (config_hash differs)" left the user to diff two JSON files."""
    from ladder.train_config import config_changes, to_json
    from tests.test_train import tiny_config

    saved = json.loads(to_json(tiny_config(total_steps=6)))
    assert config_changes(saved, tiny_config(total_steps=6)) == ""
    now = tiny_config(total_steps=8)
    now.optim.peak_lr = 0.01
    assert config_changes(saved, now) == "optim.peak_lr 0.003 -> 0.01, train.total_steps 6 -> 8"
    now.name, now.model.seq_len = "zz", 32
    assert config_changes(saved, now) == "model.seq_len 16 -> 32, name 'run' -> 'zz', optim.peak_lr 0.003 -> 0.01 " \
                                         "and 1 more"
    now.distributed.process_id = 3  # per process: not part of the config hash, not a change
    assert config_changes(saved, now).endswith("and 1 more")


@pytest.mark.parametrize("content, message", [
    (b"", r"data.spm_model: .*m.model is empty, not a SentencePiece model"),
    (b"garbage\n", r"data.spm_model: .*m.model is not a SentencePiece model \(sentencepiece cannot parse it"),
])
def test_a_sentencepiece_file_that_is_not_a_model(tmp_path, content, message):
    """A text file given as the .model was a RuntimeError traceback from sentencepiece's C++; an empty one
    "loaded", logging "Model is not initialized" before failing on its EOS id."""
    from ladder.data.tokenizer import SentencePieceTokenizer

    path = _write(tmp_path / "m.model", content)
    with pytest.raises(LadderError, match=message):
        SentencePieceTokenizer(path)


def test_a_resume_on_other_data_is_noted(tmp_path, capsys):
    """A corpus file added under a preempted run: the resume trained on the new data without a word
    (config_hash holds the corpus's path, not its content). Checked on batch 0's rows, with a note."""
    from ladder.data.packing import PackedSource
    from ladder.train_log import first_batch_sha256, same_data

    def source(lengths):
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tokens = (np.arange(offsets[-1]) % 250 + 3).astype(np.uint16)
        return PackedSource(tokens, offsets, 16, 4, seed=0, eos_id=1, pad_id=0)

    before, same, grown = (first_batch_sha256(source(n)) for n in ((30, 40), (30, 40), (30, 40, 5)))
    assert before == same != grown and len(before) == 64
    status = {"first_batch_sha256": before, "processes": 1}
    assert same_data(status, same, 1, tmp_path) and capsys.readouterr().err == ""
    assert same_data(status, grown, 2, tmp_path)  # another process count reads other rows: not compared
    assert same_data({}, grown, 1, tmp_path)  # a run started before the check: nothing to compare
    assert not same_data(status, grown, 1, tmp_path)
    err = capsys.readouterr().err
    assert f"was started on other training data (the first batch's sha256 {grown[:12]} is not status.json's " \
           f"{before[:12]})" in err and "resuming on the data as they are now" in err


def test_a_base_run_that_is_a_file_is_named_not_a_failed_write(tmp_path):
    """init.from_run naming a file ended "failed: storage: cannot write FILE/config.json", exit 1."""
    from ladder.rundir import read_run_config

    path = _write(tmp_path / "task.jsonl", b"{}\n")
    with pytest.raises(LadderError, match=r"^init.from_run: .*task.jsonl is a file, not a run directory"):
        read_run_config(path, "init.from_run")


# ------------------------------------------------------------------ signals before the steps
def test_sigterm_while_the_trainer_starts_is_one_line_and_143(monkeypatch, capsys):
    """A SIGTERM while `ladder train` built its data or compiled ended the process with 143 and no word (the
    CLI left SIGTERM to the trainer, whose handler is only installed for the steps)."""
    import signal

    from ladder import cli
    from ladder.commands import train

    def run(args):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(train, "run", run)
    assert cli.main(["train", "configs/tiny.py"]) == 143
    assert "ladder train: interrupted by SIGTERM; nothing half-written" in capsys.readouterr().err


def test_an_interrupt_from_the_command_line_skips_the_teardown_once_jax_is_loaded(monkeypatch, capsys):
    """XLA's threads ran into the interpreter's teardown after a Ctrl-C or SIGTERM mid-compile: exit 139
    (segmentation fault) after the one line, 2 of 5 tries. From the command line the process now ends at once."""
    import jax  # noqa: F401 (loaded, as in any trainer)

    from ladder import cli
    from ladder.commands import train

    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    monkeypatch.setattr(train, "run", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli._run_verb("train", ["configs/tiny.py"], from_command_line=True) == 130 and exits == [130]
    assert cli._run_verb("train", ["configs/tiny.py"], from_command_line=False) == 130 and exits == [130]
    assert capsys.readouterr().err.count("ladder train: interrupted") == 2


def test_long_data_builds_say_how_far_they_are(tmp_path, monkeypatch, capsys):
    """Gathering a large local corpus and tokenizing it printed nothing until the end (minutes)."""
    from ladder.data import packing, tfds_builder as tb
    from ladder.data.tokenizer import ByteTokenizer

    for i in range(3):
        _write(tmp_path / "docs" / f"{i}.txt", f"document {i} ".encode() * 50)
    monkeypatch.setattr(tb._SplitByHash, "PROGRESS_S", 0.0)
    monkeypatch.setattr(packing, "PROGRESS_S", 0.0)
    builder = tb.prepared(tb.files_builder(str(tmp_path / "docs"), tmp_path / "tfds", name="p"))
    out, err = capsys.readouterr()
    assert "Downloading" not in out + err and "downloaded" not in out + err
    assert "ladder_files/p: gathered 1 documents, 0.0 MB in 0s" in err and "gathered 3 documents" in err
    texts = [r["text"].decode() for r in tb.read_split(builder, "train")]
    packing.build_token_cache(texts, ByteTokenizer(), tmp_path / "cache", describe="p[train]")
    assert f"tokenizing p[train]: {len(texts)} documents" in capsys.readouterr().err


def test_a_long_evaluation_says_how_far_it_is(monkeypatch, capsys):
    from ladder import eval as eval_lib
    from ladder.data.tokenizer import ByteTokenizer
    from ladder.tasks import Question, Task

    task = Task("big", [Question("context", ("a", "b"), 0)] * 6)
    rows = eval_lib.encode_rows(task, ByteTokenizer(), 16)
    fn = lambda inputs, segments, positions: np.zeros(inputs.shape + (259,), np.float32)  # noqa: E731
    monkeypatch.setattr(eval_lib, "PROGRESS_S", 0.0)
    eval_lib.score_rows(fn, rows, batch_size=4, seq_len=16, pad_id=0, describe="big")
    lines = [line.rsplit(" in ", 1)[0] for line in capsys.readouterr().err.splitlines()]
    assert lines == ["eval big: 4/12 choices scored (33%)", "eval big: 8/12 choices scored (67%)"]


def test_an_evaluation_batch_that_cannot_fit_is_refused_before_training():
    """eval.batch_size=100000000 passed every check and would have asked for 2,289 GiB per device at the
    first evaluation, after the training before it."""
    from ladder.device_checks import check_fits_memory
    from tests.test_train import tiny_config

    cfg = tiny_config()
    cfg.eval.tasks, cfg.eval.batch_size = "embedded", 100_000_000
    mesh = {"data": 1, "fsdp": 2, "tensor": 1}
    with pytest.raises(LadderError, match=r"^eval.batch_size: 100,000,000 rows per evaluation batch need 2,288.8 "
                       r"GiB per device .*\(50,000,000 rows x seq_len 16 x vocab 384 x float32, twice\) but a device "
                       r"here holds 16.0 GiB; use a smaller evaluation batch"):
        check_fits_memory(cfg, mesh, 16 * 2**30)
    cfg.eval.batch_size = 4096
    check_fits_memory(cfg, mesh, 16 * 2**30)
    cfg.eval.tasks, cfg.eval.batch_size = "", 100_000_000  # no evaluation: nothing to check
    check_fits_memory(cfg, mesh, 16 * 2**30)


def test_a_corpus_file_name_that_is_not_utf8_builds(tmp_path):
    """A file named with Latin-1 bytes ended the build in tfds's RuntimeError ("Error while serializing
    feature `id`: ... surrogates not allowed"); the id keeps its bytes as escapes."""
    from ladder.data import tfds_builder as tb

    directory = tmp_path / "docs"
    directory.mkdir()
    with open(os.path.join(os.fsencode(directory), b"caf\xe9.txt"), "w") as f:
        f.write("hello there\n" * 5)
    builder = tb.prepared(tb.files_builder(str(directory), tmp_path / "tfds", name="n"))
    split = next(iter(builder.info.splits))
    (record,) = list(tb.read_split(builder, split))
    assert record["id"].decode().endswith("caf\\xe9.txt") and record["text"].decode() == "hello there\n" * 5


def test_a_run_directory_inside_the_corpus_is_refused(tmp_path):
    """`--config.data.files=.` with the default run directory runs/<name>: the run's lock.json was read as a
    corpus document, and the run failed at once on "run/lock.json:1: malformed JSON"."""
    from ladder.rundir import check_run_dir_outside_data
    from tests.test_train import tiny_config

    _write(tmp_path / "corpus" / "a.txt", b"text")
    cfg = tiny_config()
    cfg.data.source, cfg.data.files = "files", str(tmp_path / "corpus")
    with pytest.raises(LadderError, match=r"^--run-dir: .*corpus/runs/x is where data.files .* reads, so the run's "
                       r"own lock.json, config.json and metrics.jsonl would be read as training documents"):
        check_run_dir_outside_data(cfg, tmp_path / "corpus" / "runs" / "x")
    check_run_dir_outside_data(cfg, tmp_path / "runs" / "x")
    cfg.data.files = str(tmp_path / "corpus" / "**" / "*.json*")
    with pytest.raises(LadderError, match=r"is where data.files"):
        check_run_dir_outside_data(cfg, tmp_path / "corpus" / "runs" / "x")
    cfg.data.files = str(tmp_path / "corpus" / "*.txt")  # cannot match what a run writes
    check_run_dir_outside_data(cfg, tmp_path / "corpus" / "runs" / "x")
    cfg.data.source, cfg.data.files = "mixture", ""
    cfg.data.mixture = {"web": {"weight": 1.0, "source": "files", "files": str(tmp_path / "corpus")}}
    with pytest.raises(LadderError, match=r"is where data.files"):
        check_run_dir_outside_data(cfg, tmp_path / "corpus" / "run")


def test_scoring_a_checkpoint_again_replaces_its_rows(tmp_path, capsys):
    """`ladder eval RUN` run twice appended a second row per task, and every reader then refused the table
    ("rows repeat a (run, step, task) already in the table")."""
    from ladder.results import append_rows, read_table

    row = dict(run="tiny", n=100, d=384, step=6, task="t", loss=1.0, acc=0.5, acc_raw=0.5, prob=0.5, chance=0.5)
    path = tmp_path / "results.csv"
    append_rows(path, [row, dict(row, task="u")])
    before = path.read_bytes()
    append_rows(path, [dict(row, step=4)])  # another step: appended, the old bytes kept as they were
    assert path.read_bytes().startswith(before) and capsys.readouterr().err == ""
    assert append_rows(path, [dict(row, loss=0.75)]) == 1  # main's fix (session 9, another helper) too
    cols = read_table(path, validate=True)  # refused the table with the repeat before
    assert list(zip(cols["step"], cols["task"], cols["loss"])) == [(6, "u", 1.0), (4, "t", 1.0), (6, "t", 0.75)]


def test_shard_sizes_that_would_make_a_store_of_crumbs_are_refused(tmp_path, monkeypatch):
    """--shard-mb 0.000001 cut a 32 KB JSONL file into 32,400 one-byte shards (76,514 files in 2 minutes,
    then killed); on a large corpus the plan alone would not have fit in memory."""
    from ladder.data.tokenize import plan_units

    path = _write(tmp_path / "a.jsonl", b'{"text": "' + b"x" * 200_000 + b'"}\n')
    spec = {"kind": "files", "paths": [[path, os.path.getsize(path)]], "split": "all", "text_field": "text"}
    with pytest.raises(LadderError, match=r"^--shard-mb: 1e-06 is 1 bytes of text per shard, below 1 KB"):
        plan_units(spec, 65536, 0.000001)
    assert len(plan_units(spec, 65536, 0.1)) == 2
    monkeypatch.setattr("ladder.data.tokenize.MAX_SHARDS", 100)  # 200,013 bytes / 1,048 per shard = 191
    with pytest.raises(LadderError, match=r"^--shard-mb: 0.001 cuts this source into 191 shards, more than 100"):
        plan_units(spec, 65536, 0.001)
