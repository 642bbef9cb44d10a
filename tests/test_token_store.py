"""`ladder data tokenize` writes a resumable sharded token store; `data.source=tokens` reads it per host."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from ladder.cpt import compilation_cache
from ladder.data import make_source
from ladder.data.token_source import TokenStoreSource, feistel_permute
from ladder.data.tokenize import tokenize
from ladder.data.tokenizer import ByteTokenizer, train_bpe
from ladder.errors import LadderError

ROOT = Path(__file__).resolve().parents[1]
WORDS = "alpha beta gamma delta licence code prose model ladder token Ünïcode".split()


def write_jsonl(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    docs = [" ".join(rng.choice(WORDS, rng.integers(1, 40))) for _ in range(n)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return docs


def quiet(line):
    pass


def store_bytes(root):
    return {p.name: p.read_bytes() for p in sorted(Path(root).iterdir()) if p.suffix in (".tokens", ".index")}


def test_store_holds_every_document_once_in_order(tmp_path):
    docs = write_jsonl(tmp_path / "a.jsonl")
    m = tokenize(str(tmp_path / "a.jsonl"), "byte", str(tmp_path / "s"), split="all", shard_mb=0.002, log=quiet)
    assert len(m["shards"]) > 3 and m["documents"] == len(docs)
    stream = np.concatenate([np.fromfile(tmp_path / "s" / s["tokens_file"], "<u2") for s in m["shards"]])
    expect = np.concatenate([np.append(np.frombuffer(d.encode(), np.uint8).astype(np.uint16), 257) for d in docs])
    assert np.array_equal(stream, expect)  # no document lost, none duplicated, source order kept
    assert m["tokens"] == expect.size and m["max_id"] == 257 and m["tokenizer"]["vocab_size"] == 259
    two = tokenize(str(tmp_path / "a.jsonl"), "byte", str(tmp_path / "s2"), split="all", shard_mb=0.002, workers=2,
                   log=quiet)
    assert two["content_sha256"] == m["content_sha256"] and store_bytes(tmp_path / "s2") == store_bytes(tmp_path / "s")


@pytest.mark.slow
def test_killed_tokenize_resumes_to_the_uninterrupted_store(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", n=3000)
    tok = train_bpe(WORDS * 50, tmp_path / "tok" / "tokenizer.json", vocab_size=290).path
    args = dict(split="all", shard_mb=0.001, log=quiet)
    whole = tokenize(str(tmp_path / "a.jsonl"), tok, str(tmp_path / "whole"), **args)
    cmd = [sys.executable, "-m", "ladder", "data", "tokenize", str(tmp_path / "a.jsonl"), "--tokenizer", tok,
           "-o", str(tmp_path / "cut"), "--split", "all", "--shard-mb", "0.001", "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not list((tmp_path / "cut").glob("shard-*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers, mid-run
    proc.wait(timeout=30)
    cut = tmp_path / "cut"
    killed_early = not (cut / "manifest.json").exists()
    n_done = len(list(cut.glob("shard-*.json")))
    # what a kill inside a shard leaves: a half-written tmp file and a tokens file without its marker
    (cut / ".tmp-shard-00007.tokens").write_bytes(b"\x01\x02")
    (cut / "shard-00008.json").unlink(missing_ok=True)
    (cut / "shard-00008.tokens").write_bytes(b"\x05")
    with pytest.raises(LadderError, match="did not finish"):
        TokenStoreSource(cut, 16, 4, seed=0, vocab_size=512)
    resumed = tokenize(str(tmp_path / "a.jsonl"), tok, str(cut), workers=2, **args)
    assert resumed["content_sha256"] == whole["content_sha256"] and resumed["documents"] == 3000
    assert store_bytes(cut) == store_bytes(tmp_path / "whole")
    assert not list(cut.glob(".tmp-*"))
    assert killed_early and 0 < n_done < len(whole["shards"]), (killed_early, n_done)
    # the store trains with the tokenizer it was made with; its vocabulary flows from the manifest
    from ladder.data import pipeline

    cfg = ml_collections.ConfigDict(dict(source="tokens", path=str(cut), tokenizer=tok, seed=0))
    assert pipeline.vocab_size(cfg) == 290
    batch = make_source(cfg, 16, 4).batch(0)
    assert batch["targets"].max() < 290 and (batch["segment_ids"] > 0).all()


def test_rerun_refuses_another_job_unless_overwrite(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", n=50)
    tokenize(str(tmp_path / "a.jsonl"), "byte", str(tmp_path / "s"), split="all", log=quiet)
    again = tokenize(str(tmp_path / "a.jsonl"), "byte", str(tmp_path / "s"), split="all", log=quiet)  # complete: a no-op
    assert again["documents"] == 50
    with pytest.raises(LadderError, match="another source, tokenizer"):
        tokenize(str(tmp_path / "a.jsonl"), "byte", str(tmp_path / "s"), split="train", log=quiet)
    assert tokenize(str(tmp_path / "a.jsonl"), "byte", str(tmp_path / "s"), split="train", overwrite=True,
                    log=quiet)["documents"] < 50
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(LadderError, match="not empty"):
        tokenize(str(tmp_path / "a.jsonl"), "byte", str(tmp_path / "other"), log=quiet)


def test_feistel_is_a_permutation():
    for n in (1, 2, 7, 1000, 4097):
        keys = np.array([1, 2, 3, 4], np.uint64)
        p = feistel_permute(np.arange(n), n, keys)
        assert sorted(p.tolist()) == list(range(n))
    assert not np.array_equal(feistel_permute(np.arange(1000), 1000, keys), np.arange(1000))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    docs = write_jsonl(root / "a.jsonl", n=300)
    tokenize(str(root / "a.jsonl"), "byte", str(root / "s"), split="all", shard_mb=0.003, log=quiet)
    return root / "s", docs


def cfg_for(path, **extra):
    return ml_collections.ConfigDict(dict(source="tokens", path=str(path), tokenizer="byte", seed=3, vocab_size=259,
                                          segment_ids=True, **extra))


def test_loader_is_pure_sharded_and_covers_every_token_once(store):
    path, docs = store
    L, B = 32, 8
    src = make_source(cfg_for(path), L, B)
    again = make_source(cfg_for(path), L, B)  # a restarted job: no iterator state
    for k in (0, 5, 37):
        assert all(np.array_equal(src.batch(k)[f], again.batch(k)[f]) for f in src.batch(k))
    hosts = [make_source(cfg_for(path), L, B, process_index=i, process_count=4) for i in range(4)]
    rows = [h.local_rows(9) for h in hosts]
    assert len(set(np.concatenate(rows).tolist())) == B  # disjoint, together the global batch
    for f in ("inputs", "targets", "segment_ids", "positions"):
        assert np.array_equal(np.concatenate([h.batch(9)[f] for h in hosts]), src.batch(9)[f])
    # one epoch of rows: every target token appears exactly once, documents intact, segments restart at EOS
    R = src.rows_per_epoch
    epoch = src.rows(np.arange(R))
    order = src.stream_rows(np.arange(R))
    targets = epoch["targets"][np.argsort(order)].reshape(-1)[: src.tokens_per_epoch]
    text = bytes(t for t in targets if t < 256).decode()
    assert text == "".join(docs) and int((targets == 257).sum()) == len(docs)
    second = src.rows(np.arange(R, 2 * R))  # the next epoch reshuffles rows
    assert not np.array_equal(second["targets"], epoch["targets"])
    b = src.rows(np.arange(R))
    seg, pos, inp = b["segment_ids"], b["positions"], b["inputs"]
    starts = (inp == 257) | (np.arange(L) == 0)
    both = (seg[:, 1:] > 0) & (seg[:, :-1] > 0)
    assert np.all(pos[starts & (seg > 0)] == 0) and np.all(pos[~starts & (seg > 0)] > 0)
    assert np.array_equal(np.diff(seg, axis=1)[both], starts[:, 1:][both].astype(seg.dtype))
    # each host reads only its rows: L + 1 tokens a row, 2 bytes a token
    reader = hosts[1].reader
    reader.bytes_read = 0
    hosts[1].batch(11)
    assert reader.bytes_read <= (B // 4) * (L + 1) * 2


def test_remote_reads_are_exact_byte_ranges(store):
    """gs:// stores are read with one ranged request a row (fsspec cat_file; here its local filesystem)."""
    import fsspec

    path, _ = store
    local = make_source(cfg_for(path), 32, 8, process_index=1, process_count=4)
    remote = make_source(cfg_for(path), 32, 8, process_index=1, process_count=4)
    remote.reader.local, remote.reader.fs = False, fsspec.filesystem("file")
    for k in (0, 3):
        a, b = local.batch(k), remote.batch(k)
        assert all(np.array_equal(a[f], b[f]) for f in a)
    assert remote.reader.bytes_read == local.reader.bytes_read <= 2 * 2 * (32 + 1) * 2  # 2 batches x 2 rows


def test_bad_stores_are_named_before_training(store, tmp_path):
    path, _ = store
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    with pytest.raises(LadderError, match="data.tokenizer: .* is not the tokenizer"):
        tok = train_bpe(WORDS * 20, tmp_path / "t" / "tokenizer.json", vocab_size=280)
        make_source(ml_collections.ConfigDict(dict(cfg_for(bad).to_dict(), tokenizer=tok.path)), 16, 4)
    with pytest.raises(LadderError, match="model.vocab_size: .* token id 257 >= the model's vocabulary 200"):
        make_source(ml_collections.ConfigDict(dict(cfg_for(bad).to_dict(), vocab_size=200)), 16, 4)
    shard = bad / manifest["shards"][1]["tokens_file"]
    from ladder.data.token_store import verify

    assert verify(bad)["tokens"] == manifest["tokens"]
    flipped = bytearray(shard.read_bytes())
    flipped[3] ^= 1
    shard.write_bytes(bytes(flipped))  # same size: only the hash sees it
    with pytest.raises(LadderError, match=f"{shard}: its sha256 differs"):
        verify(bad)
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(LadderError, match=f"shard {shard} has .* bytes.*truncated"):
        make_source(cfg_for(bad), 16, 4)
    import fsspec

    from ladder.data.token_store import check_shards

    with pytest.raises(LadderError, match=f"shard {shard} has .* bytes.*truncated"):  # remote: one listing
        check_shards(bad, manifest, fs=fsspec.filesystem("file"))
    shard.unlink()
    with pytest.raises(LadderError, match=f"shard {shard} is missing"):
        make_source(cfg_for(bad), 16, 4)
    with pytest.raises(LadderError, match=f"shard {shard} is missing"):
        check_shards(bad, manifest, fs=fsspec.filesystem("file"))
    # a damaged shard with an impossible id is named when its row is read
    shutil.copy(path / shard.name, shard)
    ids = np.fromfile(shard, "<u2")
    ids[:] = 300
    ids.tofile(shard)
    src = make_source(cfg_for(bad), 16, 4)
    with pytest.raises(LadderError, match=f"{shard} holds token id 300"):
        for k in range(src.rows_per_epoch // 4 + 1):
            src.batch(k)
    with pytest.raises(LadderError, match="is one store but split 'validation'"):
        make_source(cfg_for(path, split="validation"), 16, 4)
    assert make_source(cfg_for(path.parent / "{split}", split="s"), 16, 4).tokens_per_epoch > 0
    with pytest.raises(LadderError, match="no complete token store"):
        make_source(cfg_for(tmp_path / "nothing"), 16, 4)
    half = tmp_path / "half"  # a tokenize killed before its manifest: whole shards and markers, never read
    shutil.copytree(path, half)
    (half / "manifest.json").unlink()
    with pytest.raises(LadderError, match=f"{half} holds no complete token store .* its tokenize did not finish"):
        make_source(cfg_for(half), 16, 4)
    (half / "manifest.json").write_text(json.dumps(dict(manifest, format="ladder-tokens-v0")))
    with pytest.raises(LadderError, match=f"{half / 'manifest.json'} has format 'ladder-tokens-v0', not"):
        make_source(cfg_for(half), 16, 4)
    (half / "manifest.json").write_text(json.dumps(dict(manifest, tokens=0, shards=[])))  # made by hand
    with pytest.raises(LadderError, match=f"{half / 'manifest.json'} holds no tokens"):
        make_source(cfg_for(half), 16, 4)
    (half / "manifest.json").write_text('{"format": "ladder-tok')  # torn by hand: writes are atomic
    with pytest.raises(LadderError, match=f"{half / 'manifest.json'}: not valid JSON"):
        make_source(cfg_for(half), 16, 4)
    (tmp_path / "empty.jsonl").write_text("\n" + json.dumps({"text": "  "}) + "\n")
    with pytest.raises(LadderError, match="empty"):
        tokenize(str(tmp_path / "empty.jsonl"), "byte", str(tmp_path / "e"), split="all", log=quiet)
    # the trainer opens its data before it writes or compiles anything: no step, nothing in the run dir
    from ladder.config import load_config
    from ladder.train import train

    shard.write_bytes(shard.read_bytes()[:-2])
    cfg = load_config(str(ROOT / "configs/tiny.py"), ["data.source=tokens", f"data.path={bad}", "model.vocab_size=0",
                                                      "model.seq_len=16", "train.global_batch=4"])
    with pytest.raises(LadderError, match=f"shard {shard} has .* bytes.*truncated"):
        train(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_gcs_without_credentials_or_emulator_fails_at_once_in_one_line(tmp_path):
    """No credentials, no emulator, the GCE metadata server unreachable: every gs:// data entry point is one
    line naming its field, not minutes of retried anonymous requests and a traceback (the timeout guards
    against a hang: before, one manifest read took 53 s)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "NO_GCE_CHECK")}
    closed = "127.0.0.1:9"  # discard port: nothing listens, as a laptop's metadata address answers nothing
    env.update(PYTHONPATH=str(ROOT), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), GCE_METADATA_HOST=closed,
               GCE_METADATA_IP=closed, GCE_METADATA_DETECT_RETRIES="1")  # google-auth's 3 tries with backoff: 4 s more
    code = """if True:
        import ml_collections
        from ladder import cli
        from ladder.data import make_source
        from ladder.data.tokenize import tokenize
        from ladder.data.tokenizer import tokenizer_from_spec
        from ladder.errors import LadderError
        from ladder.rundir import check_run_dir
        cfg = ml_collections.ConfigDict(dict(source="tokens", path="gs://nowhere/store", tokenizer="byte", seed=0,
                                             vocab_size=259, segment_ids=True))
        for call in (lambda: make_source(cfg, 16, 4), lambda: tokenizer_from_spec("gs://nowhere/tokenizer.json"),
                     lambda: tokenize("embedded", "byte", "gs://nowhere/out"),
                     lambda: check_run_dir("gs://nowhere/run")):
            try:
                call()
            except LadderError as e:
                print(e)
        cli.main(["data", "verify", "gs://nowhere/store"])
    """
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=45)
    said = done.stdout.splitlines() + done.stderr.splitlines()
    fix = " is on Cloud Storage, but no credentials were found; run `gcloud auth application-default login`"
    assert [line.partition(fix)[0] for line in said] == [
        "data.path: gs://nowhere/store", "data.tokenizer: gs://nowhere/tokenizer.json", "--out: gs://nowhere/out",
        "--run-dir: gs://nowhere/run",
        "ladder data: error: data.path: gs://nowhere/store"], said  # the CLI: that one line on stderr, nothing else
    assert all(fix in line for line in said)


TINY = ["model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.seq_len=16", "model.vocab_size=0",
        "train.global_batch=4", "train.total_steps=3", "train.log_every=1", "train.checkpoint_every=0",
        "optim.warmup_steps=1", "data.source=tokens", "data.tokenizer=byte"]


@pytest.mark.slow
def test_tiny_rung_trains_from_a_token_store_on_the_emulator(gcs_emulator, tmp_path, monkeypatch):
    """`ladder data tokenize` onto gs://, then `ladder train` with data.path and the run dir on gs:// (the
    emulator; vocabulary 0 = the manifest's): the same losses, bit for bit, as training from a local copy of
    the store, because batch k is a pure function of (seed, k) wherever the bytes live."""
    from etils import epath

    from ladder import cli, metrics, rundir
    from ladder.config import load_config
    from ladder.train import train

    write_jsonl(tmp_path / "a.jsonl", n=200)
    store, run = "gs://test/store", "gs://test/run"
    assert cli.main(["data", "tokenize", str(tmp_path / "a.jsonl"), "-o", store, "--split", "all",
                     "--shard-mb", "0.002", "--workers", "1"]) == 0
    local = tmp_path / "store"
    local.mkdir()
    for f in epath.Path(store).iterdir():
        (local / f.name).write_bytes(f.read_bytes())
    assert json.loads((local / "manifest.json").read_text())["shards"][3]["tokens_file"] == "shard-00003.tokens"
    # gs:// training in its own process: tensorboardX's gs:// writer uploads once more when collected at exit,
    # which must happen while the emulator still serves. It fills a compilation cache the reference then reads.
    cache = tmp_path / "jax-cache"
    env = dict(os.environ, **gcs_emulator, PYTHONPATH=str(ROOT), JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    cmd = [sys.executable, "-m", "ladder", "train", str(ROOT / "configs/tiny.py"), "--run-dir", run,
           *(f"--config.{o}" for o in TINY), f"--config.data.path={store}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.setattr(metrics, "peak_flops", lambda devices: (1e12, "test"))  # MFU is not compared
    cfg = load_config(str(ROOT / "configs/tiny.py"), [*TINY, f"data.path={local}"])
    with compilation_cache(cache):
        summary = train(cfg, str(tmp_path / "run"))
    assert cfg.model.vocab_size == 259 and summary["state"] == "done" and summary["step"] == 3
    remote_losses = [r["loss"] for r in rundir.read_metrics(run)]
    local_losses = [r["loss"] for r in rundir.read_metrics(tmp_path / "run")]
    assert len(local_losses) == 3 and np.all(np.isfinite(local_losses)) and remote_losses == local_losses
    assert rundir.read_status(run)["state"] == "done"


def test_embedded_source_tokenizes_like_the_token_cache(tmp_path):
    """SOURCE=embedded holds exactly the documents (and byte ids) the embedded pipeline trains on."""
    from ladder.data import pipeline

    cache = str(tmp_path / "cache")
    m = tokenize("embedded", "byte", str(tmp_path / "s"), domains="legal", split="test", cache_dir=cache,
                 shard_docs=100, log=quiet)
    cfg = ml_collections.ConfigDict(dict(source="embedded", cache_dir=cache))
    tokens, offsets = pipeline.token_cache(cfg, "test", ByteTokenizer(), domain="legal")
    assert m["documents"] == len(offsets) - 1 == 234 and len(m["shards"]) == 3
    assert m["tokens"] == len(tokens) + m["documents"]  # + one EOS a document
    with pytest.raises(LadderError, match="--data-dir: 'c4/en' .* tfds catalog name"):
        tokenize("c4/en", "byte", str(tmp_path / "c4"), log=quiet)
    with pytest.raises(LadderError, match="SOURCE: empty"):
        tokenize("", "byte", str(tmp_path / "x"), log=quiet)


def test_cli_tokenize_writes_and_names_the_training_flags(tmp_path, capsys):
    from ladder import cli

    write_jsonl(tmp_path / "a.jsonl", n=30)
    out = tmp_path / "s"
    assert cli.main(["data", "tokenize", str(tmp_path / "a.jsonl"), "-o", str(out), "--split", "all",
                     "--workers", "1"]) == 0
    said = capsys.readouterr()
    assert "30 documents" in said.out and f"--config.data.source=tokens --config.data.path={out}" in said.out
    assert "tokens/s" in said.err and "ETA" in said.err
    assert cli.main(["data", "tokenize", str(tmp_path / "a.jsonl"), "--split", "all"]) == 2
    assert "--out DIR" in capsys.readouterr().err


def test_vocabulary_over_65536_is_stored_as_uint32(tmp_path):
    """A dolma2-sized vocabulary (here a 70,000-word WordLevel tokenizer.json) round-trips through uint32 shards."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(70_000)}
    vocab["<unk>"] = 70_000
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(tmp_path / "tokenizer.json"))
    docs = ["w1 w69999 w65536", "w65535 w0", "w123 w70001"]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    m = tokenize(str(tmp_path / "a.jsonl"), str(tmp_path / "tokenizer.json"), str(tmp_path / "s"), split="all",
                 log=quiet)
    assert m["dtype"] == "uint32" and m["tokenizer"]["vocab_size"] == 70_002 and m["tokenizer"]["eos_id"] == 70_001
    cfg = ml_collections.ConfigDict(dict(source="tokens", path=str(tmp_path / "s"), tokenizer=str(tmp_path / "tokenizer.json"),
                                         seed=0, segment_ids=True))
    src = make_source(cfg, 16, 1)
    row = src.rows(np.arange(1))
    assert row["targets"][0, :9].tolist() == [1, 69999, 65536, 70001, 65535, 0, 70001, 123, 70000]
    assert row["segment_ids"][0, :9].tolist() == [1, 1, 1, 1, 2, 2, 2, 3, 3]
    assert row["positions"][0, :9].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1]


def test_tfds_catalog_source_tokenizes_its_split(tmp_path):
    """A catalog name (here a tiny builder prepared in array_record under a local data_dir) is read by record
    ranges, its text field by --text-field, nothing downloaded."""
    import tensorflow_datasets as tfds

    class TinyCatalogForLadder(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"body": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(40)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"body": f"document {i}. " * (i % 5 + 1)}

    data_dir = tmp_path / "tfds"
    TinyCatalogForLadder(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    m = tokenize("tiny_catalog_for_ladder", "byte", str(tmp_path / "s"), data_dir=str(data_dir), text_field="body",
                 shard_docs=16, log=quiet)
    assert m["documents"] == 40 and len(m["shards"]) == 3
    expect = sum(len(f"document {i}. ".encode()) * (i % 5 + 1) + 1 for i in range(40))
    assert m["tokens"] == expect
