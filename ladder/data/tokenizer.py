"""Tokenizers: byte-level by default (bits per byte are exact), SentencePiece when asked for.

Byte-level ids are the byte values themselves, 0..255, followed by three specials:

    PAD_ID = 256   padding (never a training target: segment id 0 masks it)
    EOS_ID = 257   end of document; packing puts one after every document
    BOS_ID = 258   beginning of document (available, not inserted by the pipeline)

    BYTE_VOCAB_SIZE = 259

The model embeds `ladder.arch.pad_vocab(vocab_size)` rows, so 259 costs the same as 264 or 384; configs
should pass the tokenizer's `vocab_size` (see `ladder.data.pipeline.vocab_size`) rather than a constant.

SentencePiece models are trained with `train_sentencepiece` (the `sentencepiece` package, offline) or loaded
from a `.model` file; pad/eos/bos/unk ids are read from the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ladder.errors import LadderError

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

        path = Path(model_path).expanduser()
        if not path.is_file():
            raise LadderError(
                f"data.spm_model: no SentencePiece model at {str(path)!r}; train one with "
                "`ladder data spm --vocab-size N -o PATH.model` or point data.spm_model at a .model file"
            )
        self.path = path
        self._sp = spm.SentencePieceProcessor(model_file=str(path))
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
        dtype = np.uint16 if self.vocab_size <= 1 << 16 else np.uint32
        return np.asarray(self._sp.encode(text), dtype=dtype)

    def decode(self, ids) -> str:
        return self._sp.decode([int(i) for i in ids])

    def fingerprint(self) -> str:
        import hashlib

        return "spm-" + hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]


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

    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(), model_prefix=str(model_path.with_suffix("")),
        vocab_size=vocab_size, model_type=model_type, byte_fallback=True,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, character_coverage=1.0,
        max_sentence_length=max_sentence_length, minloglevel=2, num_threads=os.cpu_count() or 1,
    )
    return SentencePieceTokenizer(model_path)


def make_tokenizer(data_cfg=None):
    """`data.tokenizer`: "byte" (default) or "sentencepiece" with `data.spm_model` = path to a .model file."""
    get = (lambda k, d=None: data_cfg.get(k, d)) if data_cfg is not None else (lambda k, d=None: d)
    kind = get("tokenizer", "byte") or "byte"
    if kind == "byte":
        return ByteTokenizer()
    if kind == "sentencepiece":
        model = get("spm_model", "")
        if not model:
            raise LadderError("data.spm_model: empty; set it to a SentencePiece .model file for "
                              "data.tokenizer='sentencepiece'")
        return SentencePieceTokenizer(model)
    raise LadderError(f"data.tokenizer: unknown tokenizer {kind!r}; choose 'byte' or 'sentencepiece'")
