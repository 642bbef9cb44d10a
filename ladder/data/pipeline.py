"""From `cfg.data` to a batch source: pick the tfds dataset, tokenize it once into the cache, pack, mix.

Config fields under `data` (all read with defaults; see docs/data.md):
    source        "embedded" | "files" | "tfds" | "tokens" | "mixture" | "synthetic"
    path          source "tokens": a token store directory (local or gs://) from `ladder data tokenize`
    domains       embedded domains, "prose,code,legal" (a string or a list)
    weights       "" (documents in natural proportion) or one weight per domain/mixture component
    files         directory, glob or comma list of .txt/.md/.jsonl files (source "files")
    text_field    JSONL/tfds field holding the text ("text")
    tfds_name     catalog dataset, e.g. "c4/en" (source "tfds"); data_dir, try_gcs, download, max_documents
    mixture       {component name: {weight: w, <any data field overriding the parent>}} (source "mixture")
    split         "train" | "validation" | "test" (default "train")
    tokenizer     "byte" | a SentencePiece .model or tokenizer.json path | "sentencepiece" (+ spm_model: a .model)
    segment_ids   True: documents do not attend to each other (default True)
    seed          shuffling seed (default 0)
    cache_dir     where datasets and token caches live ("" = $LADDER_CACHE or ~/.cache/ladder)
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from ladder.data import tfds_builder
from ladder.data.corpus import DOMAINS
from ladder.data.mixture import MixtureSource
from ladder.data.packing import PackedSource, build_token_cache, cache_ready, load_token_cache
from ladder.data.tokenizer import make_tokenizer
from ladder.errors import LadderError, require

SOURCES = ("embedded", "files", "tfds", "tokens", "mixture", "synthetic")


def _get(cfg, key, default):
    try:
        value = cfg.get(key, default)
    except AttributeError:
        value = getattr(cfg, key, default)
    return default if value is None else value


def as_list(value, field: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise LadderError(f"data.{field}: expected a comma-separated string or a list, got {value!r}")


def embedded_domains(value, field: str) -> list[str]:
    """A comma list of embedded corpus domains, checked where it is set (before, an unknown name in mix.general
    was reported as data.domains, and a repeated one, `prose,prose`, trained on a silently reweighted mixture)."""
    names = as_list(value, field.split(".", 1)[-1])
    require(bool(names), field, "is empty", f"choose some of {', '.join(DOMAINS)}")
    unknown = [n for n in names if n not in DOMAINS] + [None]
    require(unknown[0] is None, field, f"unknown embedded domain {unknown[0]!r}", f"choose from {', '.join(DOMAINS)}")
    repeated = sorted({n for n in names if names.count(n) > 1}) + [None]
    require(repeated[0] is None, field, f"names {repeated[0]!r} twice",
            "list each domain once (data.weights sets their shares)")
    return names


def vocab_size(data_cfg) -> int:
    """The vocabulary the model must embed for this data config (flows into the model config)."""
    kind = _get(data_cfg, "source", "embedded")
    if kind == "synthetic":
        return int(data_cfg.vocab_size)
    if kind == "tokens":  # the store's manifest says what it was tokenized with
        from ladder.data.token_store import read_manifest

        return int(read_manifest(_store_path(data_cfg))["tokenizer"]["vocab_size"])
    return make_tokenizer(data_cfg).vocab_size


def _store_path(data_cfg) -> str:
    """data.path for data.split: a store holds one split, so "DIR-{split}" names one store per split."""
    path, split = str(_get(data_cfg, "path", "")), _get(data_cfg, "split", "train")
    if not path:
        raise LadderError("data.path: empty; set it to a token store directory from `ladder data tokenize ... --out DIR`")
    if "{split}" in path:
        return path.replace("{split}", split)
    if split != "train":
        raise LadderError(f"data.path: {path} is one store but split {split!r} is asked for (held-out LM loss?); "
                          "tokenize each split into its own store (--split) and write data.path as 'DIR-{split}'")
    return path


def _text_of(record, field: str) -> str:
    value = record[field] if isinstance(record, dict) else record
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _cache_key(builder, split: str, tokenizer) -> Path:
    content = builder.info.metadata.get("content_sha256", "") if builder.info.metadata else ""
    version = f"{builder.builder_config.name if builder.builder_config else 'default'}/{builder.version}"
    tag = hashlib.sha256(f"{content}|{tokenizer.fingerprint()}".encode()).hexdigest()[:12]
    return Path("tokens") / builder.name / version / f"{split}-{tokenizer.name}-{tag}"


def documents(data_cfg, split: str | None = None, *, domain: str | None = None) -> list[str]:
    """Raw texts of one split of an embedded domain or local-files dataset (used by the embedded tasks)."""
    split = split or _get(data_cfg, "split", "train")
    builder = dataset_builder(data_cfg, domain)
    source = tfds_builder.read_split(builder, split)
    return [_text_of(source[i], "text") for i in range(len(source))]


def dataset_builder(data_cfg, domain: str | None):
    """The prepared tfds builder of an embedded domain (`domain`, or data.source=embedded) or of data.files;
    its metadata holds the split counts and the content hash (ladder/data/tfds_builder.py)."""
    kind = _get(data_cfg, "source", "embedded")
    root = tfds_builder.cache_dir(data_cfg) / "tfds"
    if kind == "embedded" or domain is not None:
        return tfds_builder.prepared(tfds_builder.embedded_builder(domain, root))
    if kind == "files":
        spec = _get(data_cfg, "files", "")
        if not spec:
            raise LadderError("data.files: empty; set it to a directory, glob or comma list of .txt/.jsonl files")
        return tfds_builder.prepared(tfds_builder.files_builder(
            spec, root, text_field=_get(data_cfg, "text_field", "text"), name=_get(data_cfg, "name", "")))
    raise LadderError(f"data.source: {kind!r} has no local builder")


def token_cache(data_cfg, split: str, tokenizer, domain: str | None = None):
    """(tokens memmap, offsets) for one dataset split, tokenizing it on first use."""
    cache = tfds_builder.cache_dir(data_cfg)
    kind = _get(data_cfg, "source", "embedded")
    if kind == "tfds":
        name = _get(data_cfg, "tfds_name", "")
        if not name:
            raise LadderError("data.tfds_name: empty; name a catalog dataset such as 'c4/en'")
        field = _get(data_cfg, "text_field", "text")
        source = tfds_builder.catalog_source(name, split, _get(data_cfg, "data_dir", ""),
                                             try_gcs=bool(_get(data_cfg, "try_gcs", False)),
                                             download=bool(_get(data_cfg, "download", False)))
        limit = int(_get(data_cfg, "max_documents", 0)) or len(source)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        directory = cache / "tokens" / "catalog" / safe / f"{split}-{tokenizer.name}-{tokenizer.fingerprint()[-12:]}-{limit}"
        texts = (_text_of(source[i], field) for i in range(min(limit, len(source))))
        return load_token_cache(build_token_cache(texts, tokenizer, directory, describe=f"{name}[{split}]"),
                                verified=True)
    builder = dataset_builder(data_cfg, domain)
    directory = cache / _cache_key(builder, split, tokenizer)
    if not cache_ready(directory):  # absent, or damaged (set aside with one line): built (again)
        source = tfds_builder.read_split(builder, split)
        texts = (_text_of(source[i], "text") for i in range(len(source)))
        build_token_cache(texts, tokenizer, directory, describe=f"{builder.name}/{builder.builder_config.name}[{split}]")
    return load_token_cache(directory, verified=True)


def _packed(data_cfg, tokens, offsets, seq_len, global_batch, process_index, process_count, name, tokenizer):
    return PackedSource(tokens, offsets, seq_len, global_batch, seed=int(_get(data_cfg, "seed", 0)),
                        eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                        segment_ids=bool(_get(data_cfg, "segment_ids", True)),
                        process_index=process_index, process_count=process_count, name=name)


def _weights(data_cfg, names: list[str]) -> dict[str, float] | None:
    raw = _get(data_cfg, "weights", "")
    if raw in ("", (), []):
        return None
    values = as_list(raw, "weights")
    if len(values) != len(names):
        raise LadderError(f"data.weights: {len(values)} weights for {len(names)} sources {names}; give one each")
    try:
        return {n: float(v) for n, v in zip(names, values)}
    except ValueError:
        raise LadderError(f"data.weights: {raw!r} are not numbers") from None


def make_source(data_cfg, seq_len: int, global_batch: int, process_index: int = 0, process_count: int = 1):
    """The batch source `data_cfg.source` names; batch(k) serves host-local rows, pure in (seed, k)."""
    kind = _get(data_cfg, "source", "embedded")
    if kind not in SOURCES:
        raise LadderError(f"data.source: unknown source {kind!r}; choose one of {', '.join(SOURCES)}")
    if kind == "synthetic":
        from ladder.data import make_source as top

        return top(data_cfg, seq_len, global_batch, process_index, process_count)
    split = _get(data_cfg, "split", "train")
    tokenizer = make_tokenizer(data_cfg)
    args = (seq_len, global_batch, process_index, process_count)
    if kind == "tokens":
        from ladder.data.token_source import TokenStoreSource

        path = _store_path(data_cfg)
        vocab = int(_get(data_cfg, "vocab_size", 0)) or vocab_size(data_cfg)
        return TokenStoreSource(path, seq_len, global_batch, seed=int(_get(data_cfg, "seed", 0)), vocab_size=vocab,
                                tokenizer_fingerprint=tokenizer.fingerprint(),
                                tokenizer_spec=str(_get(data_cfg, "tokenizer", "byte")),
                                segment_ids=bool(_get(data_cfg, "segment_ids", True)),
                                process_index=process_index, process_count=process_count)

    if kind == "mixture":
        components = _get(data_cfg, "mixture", None)
        if not components:
            raise LadderError("data.mixture: empty; give {name: {weight: w, source: ..., ...}} components")
        sources, weights = {}, {}
        for name in sorted(components):
            part = _merge(data_cfg, components[name])
            if _get(part, "source", "embedded") == "mixture":
                raise LadderError(f"data.mixture.{name}.source: a mixture component cannot itself be a mixture")
            weights[name] = float(_get(components[name], "weight", 1.0))
            sources[name] = make_source(part, *args)
        return _mixture(data_cfg, sources, weights, global_batch, process_index, process_count)

    if kind == "embedded":
        domains = as_list(_get(data_cfg, "domains", "prose,code,legal"), "domains")
        if not domains:
            raise LadderError("data.domains: empty; choose some of prose, code, legal")
        caches = {d: token_cache(data_cfg, split, tokenizer, domain=d) for d in domains}
        weights = _weights(data_cfg, domains)
        if weights is not None and len(domains) > 1:
            sources = {d: _packed(data_cfg, *caches[d], *args, d, tokenizer) for d in domains}
            return _mixture(data_cfg, sources, weights, global_batch, process_index, process_count)
        tokens, offsets = _concatenate([caches[d] for d in domains])
        return _packed(data_cfg, tokens, offsets, *args, "+".join(domains), tokenizer)

    tokens, offsets = token_cache(data_cfg, split, tokenizer)
    return _packed(data_cfg, tokens, offsets, *args, kind, tokenizer)


def _mixture(data_cfg, sources, weights, global_batch, process_index, process_count) -> MixtureSource:
    mix = MixtureSource(sources, weights, global_batch, int(_get(data_cfg, "seed", 0)), process_index, process_count)
    if process_index == 0:
        shares = mix.token_shares(1000)
        # the train source and the evaluator's held-out source each say theirs: name the split
        print(f"data mixture ({_get(data_cfg, 'split', 'train')}) token shares over the first 1000 batches: "
              + ", ".join(f"{n} {s:.4f} (weight {w:.4f})" for (n, s), w in zip(shares.items(), mix.weights)),
              file=sys.stderr, flush=True)
    return mix


def _merge(parent, child):
    """A component's data config: the parent's fields, overridden by the component's (minus 'weight')."""
    import ml_collections

    base = parent.to_dict() if hasattr(parent, "to_dict") else dict(parent)
    base.pop("mixture", None)
    base.pop("weights", None)
    extra = child.to_dict() if hasattr(child, "to_dict") else dict(child)
    extra.pop("weight", None)
    base.update(extra)
    return ml_collections.ConfigDict(base)


def _concatenate(caches):
    import numpy as np

    if len(caches) == 1:
        return caches[0]
    tokens = np.concatenate([np.asarray(t) for t, _ in caches])
    offsets, shift = [np.zeros(1, np.int64)], 0
    for t, o in caches:
        offsets.append(o[1:] + shift)
        shift += int(o[-1])
    return tokens, np.concatenate(offsets)
