"""Tokenizers: byte-level by default (bits per byte are exact), SentencePiece or any Hugging Face
`tokenizer.json` (through the `tokenizers` package) when asked for. Files may be local or gs:// (etils.epath).

Byte-level ids are the byte values themselves, 0..255, followed by three specials:

    PAD_ID = 256   padding (never a training target: segment id 0 masks it)
    EOS_ID = 257   end of document; packing puts one after every document
    BOS_ID = 258   beginning of document (available, not inserted by the pipeline)

    BYTE_VOCAB_SIZE = 259

The model embeds `ladder.arch.pad_vocab(vocab_size)` rows, so 259 costs the same as 264 or 384; configs
should pass the tokenizer's `vocab_size` (see `ladder.data.pipeline.vocab_size`) rather than a constant.

SentencePiece models are trained with `train_sentencepiece` (the `sentencepiece` package, offline) or loaded
from a `.model` file; pad/eos/bos/unk ids are read from the model. A `tokenizer.json` takes its EOS/BOS/pad
ids from the file (`HFTokenizer`). `tokenizer_from_spec` maps one string to one of the three.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ladder.errors import LadderError

# Threads a tokenizer library may use for one batch (-1: its default, all cores). Tokenize workers set 1:
# they are already one process per core.
THREADS = -1

N_BYTES = 256
PAD_ID = 256
EOS_ID = 257
BOS_ID = 258
BYTE_VOCAB_SIZE = 259


class ByteTokenizer:
    """UTF-8 bytes as tokens. Deterministic, lossless, needs no file; one token per byte."""

    name = "byte"
    vocab_size = BYTE_VOCAB_SIZE
    pad_id, eos_id, bos_id = PAD_ID, EOS_ID, BOS_ID

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """The fast path used for caching a corpus: uint16 ids without a Python list."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def encode_batch(self, texts) -> list[np.ndarray]:
        return [self.encode_array(t) for t in texts]

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < N_BYTES).decode("utf-8", errors="replace")

    def fingerprint(self) -> str:
        """Identifies the token ids a text maps to (part of every token cache's key)."""
        return "byte-v1"


class SentencePieceTokenizer:
    """A SentencePiece model loaded from a `.model` file."""

    name = "sentencepiece"

    def __init__(self, model_path: str | os.PathLike):
        import sentencepiece as spm

        path = str(model_path)
        self._bytes = read_bytes(path, "data.spm_model", "train one with `ladder data spm --vocab-size N -o "
                                 "PATH.model` or point data.spm_model at a .model file")
        self.path = path
        if not self._bytes:  # sentencepiece "loads" zero bytes, logging "Model is not initialized" per call
            raise LadderError(f"data.spm_model: {path} is empty, not a SentencePiece model; train one with `ladder "
                              "data spm --vocab-size N -o PATH.model`")
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self._bytes)
        except RuntimeError as e:  # "INTERNAL: ... ParseFromArray ...": any file that is not a model proto
            raise LadderError(f"data.spm_model: {path} is not a SentencePiece model (sentencepiece cannot parse "
                              f"it: {str(e).strip().splitlines()[0][:120]}); point it at a .model file, e.g. one "
                              "from `ladder data spm`") from None
        self.vocab_size = int(self._sp.get_piece_size())
        self.eos_id = int(self._sp.eos_id())
        self.bos_id = int(self._sp.bos_id())
        pad = int(self._sp.pad_id())
        # Models trained elsewhere often have no pad piece: padding is masked anyway, so any id works.
        self.pad_id = pad if pad >= 0 else max(self.eos_id, 0)
        if self.eos_id < 0:
            raise LadderError(f"data.spm_model: {path} has no EOS piece; train it with eos_id set (the default)")

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), dtype=token_dtype(self.vocab_size))

    def encode_batch(self, texts) -> list[np.ndarray]:
        dtype = token_dtype(self.vocab_size)
        return [np.asarray(ids, dtype) for ids in self._sp.encode(list(texts), num_threads=THREADS)]

    def decode(self, ids) -> str:
        return self._sp.decode([int(i) for i in ids])

    def fingerprint(self) -> str:
        return "spm-" + hashlib.sha256(self._bytes).hexdigest()[:16]


# Special-token names tried, in order, when a tokenizer.json has no tokenizer_config.json beside it and its
# post-processor names none (GPT-2/cl100k/dolma2, Llama, T5/SentencePiece, BERT conventions).
_EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eot_id|>", "[SEP]")
_BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "[CLS]")
_PAD_NAMES = ("<|pad|>", "<pad>", "[PAD]", "<|padding|>")


class HFTokenizer:
    """Any Hugging Face `tokenizer.json`, loaded by path (local or gs://) through the `tokenizers` package.

    Special ids, first source that names them: a `tokenizer_config.json` in the same directory
    (bos_token/eos_token/pad_token, as `transformers` saves it), then the post-processor's template
    (its first special token is BOS, its last EOS), then the file's special added tokens by their usual
    names. No EOS is an error (packing needs one); no pad uses EOS (padding is masked); no BOS is -1.
    Text is encoded without the template's specials: packing adds EOS itself.
    """

    name = "hf"

    def __init__(self, path: str | os.PathLike):
        from tokenizers import Tokenizer

        self.path = str(path)
        self._bytes = read_bytes(self.path, "data.tokenizer", "point it at a Hugging Face tokenizer.json "
                                 "(train one with the `tokenizers` package, or copy one from a model directory)")
        try:
            self._tok = Tokenizer.from_str(self._bytes.decode("utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            raise LadderError(f"data.tokenizer: {self.path} is not a tokenizer.json the `tokenizers` package reads "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        ids = self._special_ids(json.loads(self._bytes))
        if ids.get("eos") is None:
            raise LadderError(f"data.tokenizer: {self.path} names no EOS token (no tokenizer_config.json eos_token, "
                              f"no post-processor template, none of {', '.join(_EOS_NAMES)}); add one")
        self.eos_id = ids["eos"]
        self.bos_id = ids["bos"] if ids.get("bos") is not None else -1
        self.pad_id = ids["pad"] if ids.get("pad") is not None else self.eos_id
        self._dtype = token_dtype(self.vocab_size)

    def _special_ids(self, spec: dict) -> dict:
        found: dict[str, int | None] = {}
        config = _sibling_config(self.path)
        for role in ("eos", "bos", "pad"):
            token = config.get(f"{role}_token")
            token = token.get("content") if isinstance(token, dict) else token
            if isinstance(token, str):
                found[role] = self._tok.token_to_id(token)
        post = spec.get("post_processor") or {}
        for processor in [post] + list(post.get("processors") or []):  # a Sequence holds a template inside
            template = processor.get("single") or []
            if template and "SpecialToken" in template[0]:
                found.setdefault("bos", self._tok.token_to_id(template[0]["SpecialToken"]["id"]))
            if template and "SpecialToken" in template[-1]:
                found.setdefault("eos", self._tok.token_to_id(template[-1]["SpecialToken"]["id"]))
        names = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
        for role, candidates in (("eos", _EOS_NAMES), ("bos", _BOS_NAMES), ("pad", _PAD_NAMES)):
            if found.get(role) is None:
                found[role] = next((self._tok.token_to_id(n) for n in candidates if n in names), None)
        return found

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), self._dtype)

    def encode_batch(self, texts) -> list[np.ndarray]:
        return [np.asarray(e.ids, self._dtype) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def fingerprint(self) -> str:
        return "hf-" + hashlib.sha256(self._bytes).hexdigest()[:16]


def token_dtype(vocab_size: int):
    """uint16 while every id fits, else uint32 (token files and caches store this)."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def read_bytes(path: str, field: str, fix: str) -> bytes:
    """A tokenizer file's bytes, local or gs:// (etils.epath); a missing one is an error naming it."""
    from etils import epath

    from ladder import gcs

    gcs.require_access(path, field)
    p = epath.Path(os.path.expanduser(path))
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise LadderError(f"{field}: no file at {path!r}; {fix}") from None
    except IsADirectoryError:
        raise LadderError(f"{field}: {path!r} is a directory; {fix}") from None


def _sibling_config(path: str) -> dict:
    from etils import epath

    config = epath.Path(os.path.expanduser(path)).parent / "tokenizer_config.json"
    try:
        return json.loads(config.read_text()) if config.exists() else {}
    except (OSError, ValueError):
        return {}


def train_sentencepiece(texts, model_path: str | os.PathLike, vocab_size: int,
                        model_type: str = "bpe", max_sentence_length: int = 1 << 16) -> SentencePieceTokenizer:
    """Train a SentencePiece model on an iterable of documents and write `model_path` (.model).

    Ids: pad 0, unk 1, bos 2, eos 3. Byte fallback is on, so every text encodes losslessly.
    """
    import sentencepiece as spm

    model_path = Path(model_path).expanduser()
    if model_path.suffix != ".model":
        raise LadderError(f"--out: {model_path} should end in .model (SentencePiece appends it)")
    model_path.parent.mkdir(parents=True, exist_ok=True)

    def sentences():
        for doc in texts:
            for line in doc.splitlines():
                if line.strip():
                    yield line[:max_sentence_length]

    from ladder import storage

    model = io.BytesIO()  # trained in memory, then written atomically: a kill never leaves half a .model
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(), model_writer=model,
        vocab_size=vocab_size, model_type=model_type, byte_fallback=True,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, character_coverage=1.0,
        max_sentence_length=max_sentence_length, minloglevel=2, num_threads=os.cpu_count() or 1,
    )
    storage.write_bytes(model_path, model.getvalue())
    return SentencePieceTokenizer(model_path)


def smallest_spm_vocab(texts, reason: str) -> tuple[int, bool]:
    """The smallest vocab sentencepiece accepts for `texts`, after it refused one with `reason` (its
    RuntimeError's text), so the refusal can name a size that works: its own figure when it gives one
    ("... 260 vs 287"), else 4 special ids + 256 byte pieces + the distinct non-space characters after NFKC
    + 1 for the space mark (measured: a 26-letter corpus needs exactly 287; the embedded corpus 1072,
    estimated 1074). Returns (the figure, whether sentencepiece gave it)."""
    import re
    import unicodedata

    said = re.search(r"required_chars\. (\d+) vs (\d+)", reason)
    if said:
        return int(said.group(2)), True
    chars = set()
    for t in texts:
        chars.update(unicodedata.normalize("NFKC", t))
    return 4 + 256 + len({c for c in chars if not c.isspace()}) + 1, False


def tokenizer_from_spec(spec: str, field: str = "data.tokenizer"):
    """One string, one tokenizer: "byte", a SentencePiece `*.model`, or a Hugging Face `*.json` (path or gs://)."""
    spec = str(spec or "byte")
    if spec == "byte":
        return ByteTokenizer()
    if spec.endswith(".model"):
        return SentencePieceTokenizer(spec)
    if spec.endswith(".json"):
        return HFTokenizer(spec)
    raise LadderError(f"{field}: {spec!r} is not a tokenizer; give 'byte', a SentencePiece .model file or a "
                      "Hugging Face tokenizer.json (path or gs://)")


def make_tokenizer(data_cfg=None):
    """`data.tokenizer`: "byte" (default), a `.model` / `tokenizer.json` path (`tokenizer_from_spec`), or
    "sentencepiece" with `data.spm_model` = path to a .model file. With `data.source=tokens` the store's
    manifest names the tokenizer it was made with; the pipeline checks the two agree."""
    get = (lambda k, d=None: data_cfg.get(k, d)) if data_cfg is not None else (lambda k, d=None: d)
    kind = get("tokenizer", "byte") or "byte"
    if kind == "sentencepiece":
        model = get("spm_model", "")
        if not model:
            raise LadderError("data.spm_model: empty; set it to a SentencePiece .model file for "
                              "data.tokenizer='sentencepiece'")
        return SentencePieceTokenizer(model)
    return tokenizer_from_spec(kind)


def train_bpe(texts, path: str | os.PathLike, vocab_size: int) -> HFTokenizer:
    """Train a byte-level BPE `tokenizer.json` with the `tokenizers` package (offline) and load it back.

    GPT-2 conventions: byte-level pre-tokenizer and decoder, `<|endoftext|>` (EOS, id 0) and `<|pad|>`
    (id 1) as special tokens, no BOS. Used by the tests and benchmarks; any tokenizer.json loads the same way.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    from ladder import storage

    # the bytes tok.save writes, but atomically: a killed training never leaves half a tokenizer.json
    storage.write_text(path, tok.to_str(pretty=True))
    return HFTokenizer(path)
