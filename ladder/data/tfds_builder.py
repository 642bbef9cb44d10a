"""Every text source is a tfds dataset read as an array_record data source: no TensorFlow, no network.

- `LadderCorpus` ("ladder_corpus/<domain>"): the embedded corpus of `ladder.data.corpus`, built offline.
- `LadderFiles` ("ladder_files/<name>"): text or JSONL files (a directory, a glob, or a comma-separated list).
- catalog datasets by name (e.g. "c4/en" with a gs:// data_dir) for cloud runs: `catalog_source` only opens
  a dataset that is already prepared under data_dir (or on GCS when try_gcs is asked for); it never
  downloads unless `download=True` is explicit, because an unbuilt dataset makes tfds hang for minutes.

Splits are train/validation/test by document hash (`ladder.data.corpus.split_of`) for local builders.
Each built dataset records in its metadata the document count and bytes per split and a sha256 of its
content, so two machines can tell whether they trained on the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import tensorflow_datasets as tfds

from ladder.data import corpus
from ladder.data.local_files import expand_paths, read_jsonl_texts, read_text_file
from ladder.errors import LadderError

_FEATURES = lambda: tfds.features.FeaturesDict({"text": tfds.features.Text(), "id": tfds.features.Text()})  # noqa: E731


def default_cache_dir() -> Path:
    """$LADDER_CACHE, else ~/.cache/ladder. Built datasets and token caches live under it."""
    return Path(os.environ.get("LADDER_CACHE") or Path.home() / ".cache" / "ladder").expanduser()


def cache_dir(data_cfg=None) -> Path:
    value = data_cfg.get("cache_dir", "") if data_cfg is not None else ""
    return Path(value).expanduser() if value else default_cache_dir()


class _SplitByHash(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery: gather (id, text) documents once, split them by hash, record counts and a hash."""

    VERSION = tfds.core.Version("1.0.0")

    def _documents(self):  # -> iterable of (id, text)
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly (not dataset_info_from_configs): that path needs package-level metadata files.
        return tfds.core.DatasetInfo(builder=self, features=_FEATURES(), metadata=tfds.core.MetadataDict(),
                                     description=self.__doc__)

    PROGRESS_S = 10.0  # seconds between progress lines while documents are gathered

    def _split_generators(self, dl_manager):
        start = last = time.perf_counter()
        by_split: dict[str, list[tuple[str, str]]] = {s: [] for s in corpus.SPLITS}
        digest = hashlib.sha256()
        n_docs = n_bytes = 0
        for doc_id, text in self._documents():
            by_split[corpus.split_of(text)].append((doc_id, text))
            encoded = text.encode("utf-8")
            digest.update(hashlib.sha256(encoded).digest())
            n_docs, n_bytes = n_docs + 1, n_bytes + len(encoded)
            if time.perf_counter() - last >= self.PROGRESS_S:  # a large corpus: minutes without a word before
                last = time.perf_counter()
                print(f"{self.name}/{self.builder_config.name}: gathered {n_docs:,} documents, {n_bytes / 1e6:,.1f} MB "
                      f"in {last - start:.0f}s", file=sys.stderr, flush=True)
        total = sum(len(v) for v in by_split.values())
        if total == 0:
            raise LadderError(f"{self.name}/{self.builder_config.name}: no documents found; {self._empty_hint()}")
        counts = {s: {"documents": len(v), "bytes": sum(len(t.encode("utf-8")) for _, t in v)}
                  for s, v in by_split.items()}
        self.info.metadata.update({"counts": counts, "content_sha256": digest.hexdigest(),
                                   "python": sys.version.split()[0], "gathered_s": round(time.perf_counter() - start, 2)})
        print(f"{self.name}/{self.builder_config.name}: " + ", ".join(
            f"{s} {c['documents']} docs {c['bytes'] / 1e6:.2f} MB" for s, c in counts.items()), flush=True)
        return {s: self._generate(v) for s, v in by_split.items() if v}

    def _generate(self, docs):
        for i, (doc_id, text) in enumerate(docs):
            yield i, {"text": text, "id": _text_id(doc_id)}

    def _generate_examples(self, *args):  # required abstract method; _split_generators returns generators
        raise NotImplementedError

    def _empty_hint(self) -> str:
        return "check the inputs"

    # tfds prints (to stdout, not a logger) "Downloading and preparing dataset Unknown size (download: Unknown
    # size, ...)" before a build and "Dataset ... downloaded and prepared to ... Subsequent calls will reuse this
    # data." after it. These builders download nothing and report their own counts (the line above), so both
    # were noise on every fresh `ladder data build`; catalog datasets, which do download, keep them.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass


def _text_id(doc_id: str) -> str:
    """A document id tfds can store: a file name that is not UTF-8 (Python holds its bytes as lone surrogates)
    ended the build in tfds's RuntimeError "UnicodeEncodeError: Error while serializing feature `id`"; its
    bytes are kept as \\xNN escapes. Ids are labels only: the content hash covers the texts."""
    return doc_id.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class LadderCorpus(_SplitByHash):
    """The embedded corpus: prose and code from the standard library, legal from the pinned licence corpus;
    see ladder/data/corpus.py."""

    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=d, description=f"embedded {d} documents") for d in corpus.DOMAINS]

    def _documents(self):
        return corpus.documents(self.builder_config.name)

    def _empty_hint(self) -> str:
        return "this Python installation ships none of this domain's files; pick another data.domains"


@dataclasses.dataclass(eq=False)
class FilesConfig(tfds.core.BuilderConfig):
    paths: tuple[str, ...] = ()
    text_field: str = "text"


class LadderFiles(_SplitByHash):
    """Local text (.txt/.md: one document per file) or JSONL (.jsonl: one document per line) files."""

    BUILDER_CONFIGS = []  # configs are made per call by `files_builder`

    def _documents(self):
        cfg = self.builder_config
        for path in cfg.paths:
            if path.endswith((".jsonl", ".json")):
                yield from read_jsonl_texts(path, cfg.text_field)
            else:
                text = read_text_file(path)
                if text.strip():
                    yield path, text

    def _empty_hint(self) -> str:
        return "the files are empty or hold no non-blank text field"


@contextlib.contextmanager
def _tfds_scratch():
    """tfds (4.9) leaves an empty tempfile.mkdtemp("tfds") directory behind each time it looks for a
    dataset's metadata that is not prepared yet; inside this block such directories go to one of ours,
    removed on exit. (tempfile.tempdir is process-global: builders are opened from one thread.)"""
    with tempfile.TemporaryDirectory(prefix="ladder-tfds-") as scratch:
        saved, tempfile.tempdir = tempfile.tempdir, scratch
        try:
            yield
        finally:
            tempfile.tempdir = saved


def embedded_builder(domain: str, data_dir: Path) -> LadderCorpus:
    """The domain's builder under data_dir/embedded-<inputs key>: keyed by what the corpus is gathered from,
    so a cache shared by checkouts, venvs and Pythons never serves a corpus built from other inputs."""
    if domain not in corpus.DOMAINS:
        raise LadderError(f"data.domains: unknown embedded domain {domain!r}; choose from {', '.join(corpus.DOMAINS)}")
    keyed = Path(data_dir) / f"embedded-{corpus.inputs_key(domain)[:16]}"
    set_aside_if_damaged(keyed, LadderCorpus.name, domain, str(LadderCorpus.VERSION))
    with _tfds_scratch():
        return LadderCorpus(config=domain, data_dir=str(keyed), file_format="array_record")


def files_builder(spec: str, data_dir: Path, text_field: str = "text", name: str = "") -> LadderFiles:
    paths = tuple(expand_paths(spec))
    # The config name identifies the inputs (paths, sizes, mtimes): changed files build a new dataset.
    key = hashlib.sha256(json.dumps([text_field] + [(p, os.path.getsize(p), os.path.getmtime(p)) for p in paths]).encode())
    cfg = FilesConfig(name=name or f"files-{key.hexdigest()[:12]}", paths=paths, text_field=text_field,
                      description=f"{len(paths)} local files")
    set_aside_if_damaged(Path(data_dir), LadderFiles.name, cfg.name, str(LadderFiles.VERSION))
    with _tfds_scratch(), _absl_quiet():  # "Using custom data configuration: FilesConfig(...)": every config is
        return LadderFiles(config=cfg, data_dir=str(data_dir), file_format="array_record")  # custom, by design


def prepared(builder) -> object:
    """Build the dataset if needed (offline) and return it; datasets are built once per cache dir.

    Rungs started together on one machine ask for the same unbuilt dataset at once. tfds builds into a
    private temporary directory and renames it into place, so the second builder's rename fails
    (FileExistsError) after doing all the work again. A lock file held while building makes the others
    wait; they then read the winner's dataset (its split metadata, which their builder, opened before it
    existed, lacks)."""
    if is_prepared(builder):
        return builder
    with _build_lock(builder):
        if is_prepared(builder):
            builder.info.read_from_directory(builder.data_dir)
        else:
            tfds.disable_progress_bar()
            _remove_dead_builds(Path(builder.data_dir))
            with _tfds_scratch():
                builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
            _write_sums(Path(builder.data_dir))  # still under the lock: no reader sees the build without them
    return builder


def _remove_dead_builds(version_dir: Path) -> None:
    """tfds builds into <config>/incomplete.<random>_<version> and renames that into place; a build killed part
    way (SIGKILL, a lost machine) left the directory behind for good, a dataset's worth of disk per kill.
    Called under the build lock, where no other build of this version can be running: each one is dead."""
    import shutil

    for leftover in version_dir.parent.glob(f"incomplete.*_{version_dir.name}"):
        shutil.rmtree(leftover, ignore_errors=True)


def is_prepared(builder) -> bool:
    """builder.is_prepared() without the absl WARNING tfds (4.9) logs whenever the answer is no ("Variant
    folder ... has no dataset_info.json", twice on every fresh cache): that is the question being asked, not a
    problem. The "absl" logger is raised to ERROR for the call only (builders are opened from one thread)."""
    with _absl_quiet():
        return builder.is_prepared()


@contextlib.contextmanager
def _absl_quiet():
    """The "absl" logger raised to ERROR for the block only (builders are opened from one thread): tfds's
    WARNINGs there answer questions ladder asks on purpose."""
    absl = logging.getLogger("absl")
    saved = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(saved)


BUILD_SUMS = "ladder-build.json"  # in a built dataset's version directory: each file's size and sha256
BUILD_FORMAT = "ladder-build-v1"


def _write_sums(version_dir: Path) -> None:
    from ladder import storage
    from ladder.data.packing import _file_sum

    files = {p.name: _file_sum(p) for p in sorted(version_dir.iterdir()) if p.is_file() and p.name != BUILD_SUMS}
    storage.write_text(version_dir / BUILD_SUMS, json.dumps({"format": BUILD_FORMAT, "files": files}, indent=1))


def build_problem(version_dir: Path) -> str:
    """'' when a built dataset's files are exactly those ladder-build.json lists, with their sizes and sha256;
    else what is wrong. A dataset built by tfds alone (no list: an older ladder, or a build killed before
    the list was written) counts as unverified: tfds reads a truncated array_record file without a word."""
    try:
        sums = json.loads((version_dir / BUILD_SUMS).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return f"no {BUILD_SUMS} (built by an older ladder, or the build was cut short)"
    except (OSError, ValueError) as e:
        return f"{BUILD_SUMS} is unreadable ({type(e).__name__})"
    if not isinstance(sums, dict) or sums.get("format") != BUILD_FORMAT or not isinstance(sums.get("files"), dict):
        return f"{BUILD_SUMS} is not of format {BUILD_FORMAT!r}"
    from ladder.data.packing import _file_sum

    present = {p.name for p in version_dir.iterdir() if p.name != BUILD_SUMS}
    missing, extra = sorted(set(sums["files"]) - present), sorted(present - set(sums["files"]))
    if missing or extra:
        return "; ".join(([f"missing {', '.join(missing)}"] if missing else []) +
                         ([f"{', '.join(extra)} added after the build"] if extra else []))
    for name, want in sums["files"].items():
        got = _file_sum(version_dir / name) if (version_dir / name).is_file() else {}
        if got != want:
            return f"{name} is not the file that was built (size or sha256 differs)"
    return ""


def set_aside_if_damaged(data_dir: Path, name: str, config: str, version: str, log=None) -> None:
    """Before a builder opens a built dataset (tfds reads its dataset_info.json as the builder is made): a
    build that does not verify is moved aside and deleted with one line, so it is built again. Decided under
    the build lock, so a build another process has finished but not yet listed is waited for, not removed."""
    version_dir = Path(data_dir) / name / config / version
    if not version_dir.is_dir() or not build_problem(version_dir):
        return
    with _lock_file(Path(data_dir), f"{name}-{config}-{version}"):
        problem = build_problem(version_dir) if version_dir.is_dir() else ""
        if problem:
            from ladder.data.packing import set_aside

            set_aside(version_dir, problem, "built dataset", "data", log)


@contextlib.contextmanager
def _build_lock(builder):
    """An exclusive flock on <root>/.locks/<name>-<config>-<version>.lock (outside the tfds tree, which tfds
    scans for versions). Released when the holder exits or dies, so a crashed build never blocks the next."""
    version_dir = Path(builder.data_dir)
    root = version_dir.parents[2]  # <root>/<name>/<config>/<version>
    with _lock_file(root, f"{builder.name}-{builder.builder_config.name}-{version_dir.name}"):
        yield


@contextlib.contextmanager
def _lock_file(root: Path, key: str):
    import fcntl

    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{key}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_split(builder, split: str):
    """A random-access source of {"text": bytes, "id": bytes} records (tfds array_record, no TF)."""
    sources = builder.as_data_source()
    if split not in sources:
        name = f"{builder.name}/{builder.builder_config.name}"
        if isinstance(builder, _SplitByHash) and split in corpus.SPLITS:  # a small corpus: no document drew it
            have = ", ".join(f"{len(v)} in {k}" for k, v in sources.items())
            raise LadderError(f"{name}: no document fell in the {split!r} split (a document's split is drawn from "
                              f"a hash of its text: {_SHARES}; this dataset has {have}); add documents (a few dozen "
                              f"give every split some), or read another split (data.split; the held-out loss reads "
                              f"validation: eval.lm_loss_batches=0 turns it off)")
        raise LadderError(f"data.split: {name} has no split {split!r}; it has {', '.join(sources)}")
    return sources[split]


_SHARES = ", ".join(f"{v / 10:g}% {k}" for k, v in corpus.HELD_OUT_PER_MILLE.items()) + ", the rest train"


def has_split(builder, split: str) -> bool:
    """Whether a built dataset holds `split` (a small local corpus may have no validation or test document)."""
    return split in builder.info.splits


def catalog_source(name: str, split: str, data_dir: str, *, try_gcs: bool = False, download: bool = False):
    """A tfds catalog dataset (e.g. "c4/en") as an array_record data source, without network unless asked.

    The dataset must already be prepared under data_dir in array_record format (e.g. by
    `tfds build --file_format=array_record` on a machine with TensorFlow), or on GCS with try_gcs=True.
    """
    if not data_dir:
        raise LadderError(f"data.data_dir: empty for catalog dataset {name!r}; set it to the directory (or gs:// "
                          "bucket) where the dataset is prepared")
    try:
        with _tfds_scratch():
            builder = tfds.builder(name, data_dir=data_dir, try_gcs=try_gcs)
    except Exception as e:  # unknown name / missing module: tfds raises many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise LadderError(f"data.tfds_name: tfds cannot open {name!r} under {data_dir} ({type(e).__name__}: {first}); "
                          "check the name and that it is prepared there") from None
    if not is_prepared(builder):
        if not download:
            raise LadderError(f"data.tfds_name: {name!r} is not prepared under {data_dir}; prepare it there in "
                              "array_record format (tfds build --file_format=array_record) or set data.download=True")
        builder.download_and_prepare(file_format="array_record")
    return read_split(builder, split)
