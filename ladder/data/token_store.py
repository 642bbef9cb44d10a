"""The token store: what `ladder data tokenize` writes and `data.source=tokens` reads (local or gs://).

Layout of a store directory (docs/data.md says why flat token files and not array_record):

    manifest.json          written last, atomically: the store is complete iff it exists
    tokenize.json          the job's plan (source, tokenizer, units): a rerun resumes only the same plan
    shard-00000.tokens     raw little-endian token ids (uint16, or uint32 for vocabularies > 65,536); each
                           document's ids followed by EOS, documents back to back
    shard-00000.index      raw int64 document start offsets into the shard, [documents + 1]
    shard-00000.json       the shard's done marker (documents, tokens, bytes, sha256 of both files), written
                           after both files are in place

Every file is written by `storage.write_bytes` (a `.tmp-*` sibling renamed into place), so a killed job leaves
either a whole shard with its marker or something the next run deletes and redoes. Readers touch only
manifest.json and the byte ranges of .tokens files they need (`ShardReader.read`: os.pread locally, ranged
reads on gs://), never a whole shard, and map nothing: a memmap would count every page it ever touched in the
process's RSS.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from etils import epath

from ladder import gcs
from ladder.errors import LadderError

FORMAT = "ladder-tokens-v1"
MANIFEST = "manifest.json"
PLAN = "tokenize.json"


def store_path(path) -> epath.Path:
    return epath.Path(os.path.expanduser(str(path)))


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def read_json(path: epath.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise LadderError(f"{path}: not valid JSON (a damaged store?); remove the store and tokenize again") from None


def read_manifest(path) -> dict:
    """The manifest of a complete store; a missing one (an unfinished tokenize) is an error naming the fix."""
    root = store_path(path)
    gcs.require_access(root, "data.path")
    try:
        manifest = read_json(root / MANIFEST)
    except LadderError:
        raise
    except Exception as e:  # remote: auth, permissions, network, after the client's own retries
        if is_local(root):
            raise
        why = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise LadderError(f"data.path: cannot read {root / MANIFEST} ({type(e).__name__}: {why}); check the path "
                          "and that these credentials may read it") from None
    if manifest is None:
        hint = ("its tokenize did not finish: rerun the same `ladder data tokenize ... --out DIR` to complete it"
                if (root / PLAN).exists() else "make one with `ladder data tokenize SOURCE --tokenizer SPEC --out DIR`")
        raise LadderError(f"data.path: {root} holds no complete token store (no {MANIFEST}); {hint}")
    if manifest.get("format") != FORMAT:
        raise LadderError(f"data.path: {root / MANIFEST} has format {manifest.get('format')!r}, not {FORMAT!r}")
    return manifest


def check_shards(path, manifest: dict, fs=None) -> None:
    """Every shard's token file exists with the size the manifest says (a missing or truncated one is named).

    Sizes only (a stat per shard): hashing terabytes before step 1 would cost more than it protects;
    `verify` (`ladder data verify DIR`) checks every byte against the manifest's sha256."""
    root = store_path(path)
    itemsize = np.dtype(manifest["dtype"]).itemsize
    if fs is None and not is_local(root):  # fs: a remote filesystem (from the scheme; tests pass fsspec's local one)
        fs = fsspec_for(str(root))
    sizes = _listed_sizes(root, fs) if fs is not None else None
    for shard in manifest["shards"]:
        f = root / shard["tokens_file"]
        want = shard["tokens"] * itemsize
        try:
            size = sizes[shard["tokens_file"]] if sizes is not None else os.stat(os.fspath(f)).st_size
        except (FileNotFoundError, KeyError):
            raise LadderError(f"data.path: shard {f} is missing; the store is damaged: tokenize it again") from None
        if size != want:
            raise LadderError(f"data.path: shard {f} has {size} bytes, the manifest says {want} (truncated?); "
                              "the store is damaged: tokenize it again")


def is_local(root) -> bool:
    return "://" not in str(root)


def _listed_sizes(root, fs) -> dict[str, int]:
    """{file name: bytes} of a remote store from one paginated listing (a stat per shard is a request each:
    thousands of shards would be minutes per host)."""
    return {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: int(e["size"]) for e in fs.ls(str(root), detail=True)}


class ShardReader:
    """Token ranges of the whole store as one stream, read by byte range (memmap locally, ranged reads on gs://)."""

    def __init__(self, path, manifest: dict):
        self.root = store_path(path)
        self.dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
        self.files = [self.root / s["tokens_file"] for s in manifest["shards"]]
        counts = np.array([s["tokens"] for s in manifest["shards"]], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.total = int(self.starts[-1])
        self.local = is_local(self.root)
        self._open: dict[int, int] = {}  # shard -> fd (local)
        # Remote: exact ranged reads through fsspec (the filesystem etils.epath itself uses for gs://): an
        # epath file object reads ahead in 5 MB blocks, 300x the 16 KB a row needs.
        self.fs = None if self.local else fsspec_for(str(self.root))
        self.bytes_read = 0

    def _shard(self, i: int):
        if not self.local:
            return str(self.files[i])
        if i not in self._open:
            self._open[i] = os.open(os.fspath(self.files[i]), os.O_RDONLY)
        return self._open[i]

    def __del__(self):
        for f in getattr(self, "_open", {}).values():
            try:
                os.close(f)
            except Exception:  # at interpreter exit the os module may be gone already
                pass

    def read(self, start: int, stop: int) -> np.ndarray:
        """Stream tokens [start, stop) (0 <= start <= stop <= total) as a fresh array."""
        out = np.empty(stop - start, self.dtype)
        self.read_into(out, start, stop)
        return out

    def read_into(self, out: np.ndarray, start: int, stop: int) -> None:
        """Stream tokens [start, stop) into out[: stop - start] (any integer dtype wide enough)."""
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        pos = start
        while pos < stop:
            lo, hi = pos - self.starts[i], min(stop, self.starts[i + 1]) - self.starts[i]
            shard, size, offset = self._shard(i), int(hi - lo) * self.dtype.itemsize, int(lo) * self.dtype.itemsize
            if self.local:
                data = os.pread(shard, size, offset)
            else:
                data = self.fs.cat_file(shard, start=offset, end=offset + size)
            if len(data) != size:
                raise LadderError(f"data.path: {self.files[i]} ended at byte {offset + len(data)}, the manifest says "
                                  f"{self.starts[i + 1] - self.starts[i]} tokens (truncated?); tokenize it again")
            out[pos - start : pos - start + hi - lo] = np.frombuffer(data, self.dtype)
            self.bytes_read += size
            pos += hi - lo
            i += 1


def verify(path, log=None) -> dict:
    """Hash every shard's two files and compare with the manifest; the first mismatch is an error naming it."""
    root = store_path(path)
    manifest = read_manifest(path)
    check_shards(path, manifest)
    for n, shard in enumerate(manifest["shards"], 1):
        for file_key, sha_key in (("tokens_file", "sha256"), ("index_file", "index_sha256")):
            f = root / shard[file_key]
            if sha256_bytes(f.read_bytes()) != shard[sha_key]:
                raise LadderError(f"{f}: its sha256 differs from the manifest's; the store is damaged: tokenize it again")
        if log:
            log(f"verified {n}/{len(manifest['shards'])} shards")
    return manifest


def fsspec_for(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)[0]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
