"""Hugging Face tokenizer.json files load by path beside byte and SentencePiece; special ids come from the file."""

import json

import ml_collections
import numpy as np
import pytest

from ladder.arch import pad_vocab
from ladder.data.tokenizer import (ByteTokenizer, HFTokenizer, SentencePieceTokenizer, make_tokenizer, train_bpe,
                                   tokenizer_from_spec)
from ladder.errors import LadderError

TEXTS = ["The licensee shall not sublicense the software. " * 3, "def f(x):\n    return x + 1\n" * 4,
         "Permission is hereby granted, free of charge, to any person obtaining a copy."] * 20


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    return train_bpe(TEXTS, tmp_path_factory.mktemp("tok") / "tokenizer.json", vocab_size=300)


def test_trained_bpe_loads_by_path_with_specials_from_the_file(bpe):
    loaded = tokenizer_from_spec(bpe.path)
    assert isinstance(loaded, HFTokenizer) and loaded.fingerprint() == bpe.fingerprint()
    assert (loaded.eos_id, loaded.pad_id, loaded.bos_id) == (0, 1, -1)  # <|endoftext|>, <|pad|>, none
    assert loaded.vocab_size == 300 and pad_vocab(loaded.vocab_size) == 384
    text = "The licensee shall return x + 1. Ünïcode too."
    ids = loaded.encode(text)
    assert loaded.decode(ids) == text and len(ids) < len(text.encode())  # merges learnt, lossless
    assert np.array_equal(loaded.encode_array(text), np.asarray(ids)) and loaded.encode_array(text).dtype == np.uint16
    assert [a.tolist() for a in loaded.encode_batch([text, "x"])] == [ids, loaded.encode("x")]
    # data.tokenizer is the one way a run names it; evaluation builds its tokenizer from the same field
    cfg = ml_collections.ConfigDict(dict(tokenizer=bpe.path))
    assert make_tokenizer(cfg).fingerprint() == bpe.fingerprint()


def test_special_ids_from_config_then_template(bpe, tmp_path):
    spec = json.loads(open(bpe.path).read())
    # 1. a transformers tokenizer_config.json beside it wins
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "tokenizer.json").write_text(json.dumps(spec))
    (tmp_path / "a" / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": {"content": "<|pad|>"}, "bos_token": "<|endoftext|>", "pad_token": None}))
    t = HFTokenizer(tmp_path / "a" / "tokenizer.json")
    assert (t.eos_id, t.bos_id, t.pad_id) == (1, 0, 1)  # no pad named: EOS pads
    # 2. a post-processor template <s> $A </s> names BOS and EOS
    spec2 = dict(spec, added_tokens=spec["added_tokens"] + [
        {"id": 300, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}, {"id": 301, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True}],
        post_processor={"type": "TemplateProcessing",
                        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                   {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                        "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [300], "tokens": ["<s>"]},
                                                       "</s>": {"id": "</s>", "ids": [301], "tokens": ["</s>"]}}})
    (tmp_path / "b.json").write_text(json.dumps(spec2))
    t = HFTokenizer(tmp_path / "b.json")
    assert (t.bos_id, t.eos_id, t.pad_id, t.vocab_size) == (300, 301, 1, 302)
    assert t.encode("x") == bpe.encode("x")  # the template's specials are not added: packing adds EOS


def test_bad_tokenizer_specs_are_named(tmp_path, bpe):
    with pytest.raises(LadderError, match="no file at"):
        tokenizer_from_spec(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(LadderError, match="bad.json is not a tokenizer.json"):
        tokenizer_from_spec(str(tmp_path / "bad.json"))
    spec = json.loads(open(bpe.path).read())
    for t in spec["added_tokens"]:
        t["content"] = t["content"].replace("endoftext", "nothing")
    (tmp_path / "noeos.json").write_text(json.dumps(spec))
    with pytest.raises(LadderError, match="names no EOS"):
        tokenizer_from_spec(str(tmp_path / "noeos.json"))
    with pytest.raises(LadderError, match="is not a tokenizer"):
        tokenizer_from_spec("gpt2")
    assert isinstance(tokenizer_from_spec("byte"), ByteTokenizer)


def test_sentencepiece_loads_by_spec(tmp_path):
    from ladder.data.tokenizer import train_sentencepiece

    model = train_sentencepiece(TEXTS * 5, tmp_path / "m.model", vocab_size=300)
    again = tokenizer_from_spec(str(tmp_path / "m.model"))
    assert isinstance(again, SentencePieceTokenizer) and again.fingerprint() == model.fingerprint()
    assert [a.tolist() for a in again.encode_batch(["abc def", "x"])] == [again.encode("abc def"), again.encode("x")]
