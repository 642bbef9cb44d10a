"""`ladder data build|files|spm|tasks|tokenize`: build datasets and token stores ahead of training (offline).

    ladder data build [--domains prose,code,legal]        embedded corpus -> tfds array_record + byte tokens
    ladder data files PATH [--text-field text] [--name N] local .txt/.jsonl files -> tfds array_record + tokens
    ladder data spm --vocab-size N -o X.model             train SentencePiece on the embedded train split
    ladder data tasks -o DIR                              write the embedded tasks as JSONL (docs/tasks.md)
    ladder data tokenize SOURCE --tokenizer SPEC -o DIR   SOURCE (embedded | files glob | JSONL | tfds name) ->
                                                          a sharded token store for data.source=tokens; a
                                                          rerun into the same DIR resumes (docs/data.md)
    ladder data verify DIR                                every shard of a token store against its sha256
"""

from __future__ import annotations

import time

from ladder.commands.common import POSITIVE, check_out, refuse_unread_options, whole
from ladder.config_checks import MAX_QUESTIONS
from ladder.errors import LadderError

EXAMPLES = """
ladder data build --domains prose,code,legal
ladder data files /data/my-corpus/ --name my-corpus
ladder data spm --vocab-size 8192 -o spm8k.model
ladder data tasks -o tasks/
ladder data tokenize embedded --tokenizer byte -o /tmp/tokens-embedded
ladder data verify /tmp/tokens-embedded
"""


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["build", "files", "spm", "tasks", "tokenize", "verify"],
                        help="what to build or check (see the examples)")
    parser.add_argument("path", nargs="?", help="files: a directory, glob or comma-separated list of .txt/.jsonl files; "
                        "tokenize: SOURCE = embedded, such files, or a tfds catalog name (with --data-dir)")
    parser.add_argument("--domains", default="prose,code,legal", help="embedded domains (comma-separated)")
    parser.add_argument("--cache-dir", default="", help="token caches and tfds data (default: $LADDER_CACHE or "
                        "~/.cache/ladder)")
    parser.add_argument("--text-field", default="text", help="JSONL field holding the text")
    parser.add_argument("--name", default="", help="files: dataset config name (default: a hash of the inputs)")
    parser.add_argument("--vocab-size", type=whole(2), default=8192, help="spm: vocabulary size")
    parser.add_argument("--n-questions", type=whole(1, MAX_QUESTIONS), default=300,
                        help="tasks: questions per embedded task")
    parser.add_argument("-o", "--out", metavar="PATH", help="spm: the .model file to write; tasks: a directory; "
                        "tokenize: the token store directory (local or gs://)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (tokenize: what --out "
                        "holds; a rerun of the same job resumes without it)")
    parser.add_argument("--tokenizer", default="byte", help="tokenize: byte, a SentencePiece .model or a tokenizer.json")
    parser.add_argument("--workers", type=whole(0), default=0, help="tokenize: worker processes (0 = one per CPU)")
    parser.add_argument("--split", default="train",
                        help="tokenize: train | validation | test (by document hash for local files; 'all' keeps all)")
    parser.add_argument("--data-dir", default="", help="tokenize: where a tfds catalog dataset is prepared (needed for a "
                        "catalog name)")
    parser.add_argument("--shard-docs", type=whole(1), default=65536, help="tokenize: records per shard (embedded, tfds)")
    parser.add_argument("--shard-mb", type=POSITIVE, default=256, help="tokenize: MB of text per shard (local files)")


READERS = {  # option dest -> (flag, the actions that read it): `data tasks --vocab-size 5` ran, ignoring it
    "domains": ("--domains", ("build", "spm", "tokenize")), "text_field": ("--text-field", ("files", "tokenize")),
    "name": ("--name", ("files",)), "vocab_size": ("--vocab-size", ("spm",)), "n_questions": ("--n-questions", ("tasks",)),
    "out": ("-o/--out", ("spm", "tasks", "tokenize")), "overwrite": ("--overwrite", ("spm", "tasks", "tokenize")),
    **{dest: (flag, ("tokenize",)) for dest, flag in (
        ("tokenizer", "--tokenizer"), ("workers", "--workers"), ("split", "--split"), ("data_dir", "--data-dir"),
        ("shard_docs", "--shard-docs"), ("shard_mb", "--shard-mb"))},
}


def run(args) -> int:
    refuse_unread_options(args, add_arguments, READERS, args.action, "ladder data")
    {"build": _build, "files": _files, "spm": _spm, "tokenize": _tokenize, "verify": _verify,
     "tasks": _tasks}[args.action](args)
    return 0


def _embedded_config(args):
    import ml_collections

    return ml_collections.ConfigDict(dict(cache_dir=args.cache_dir, source="embedded"))


def _build(args) -> None:
    """Every split of each embedded domain, built and byte-tokenized into the cache; its pinned content hash."""
    from ladder.data import pipeline
    from ladder.data.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    for domain in pipeline.embedded_domains(args.domains, "--domains"):  # ',' built nothing, exit 0
        cfg = _embedded_config(args)
        for split in ("train", "validation", "test"):
            _report(f"{domain}[{split}]", lambda: pipeline.token_cache(cfg, split, tok, domain=domain))
        meta = pipeline.dataset_builder(cfg, domain).info.metadata
        print(f"{domain}: content_sha256 {meta['content_sha256']} (docs/data.md lists the pinned values)")


def _files(args) -> None:
    import ml_collections

    from ladder.data import pipeline, tfds_builder
    from ladder.data.tokenizer import ByteTokenizer

    if not args.path:
        raise LadderError("ladder data files: give PATH (a directory, glob or comma-separated list of .txt/.jsonl files)")
    tok = ByteTokenizer()
    cfg = ml_collections.ConfigDict(dict(cache_dir=args.cache_dir, source="files", files=args.path,
                                         text_field=args.text_field, name=args.name))
    builder = pipeline.dataset_builder(cfg, None)
    for split in ("train", "validation", "test"):
        # a small corpus may have no validation or test document (no train document: token_cache's error)
        if split != "train" and not tfds_builder.has_split(builder, split):
            print(f"files[{split}]: no documents (each document's split is drawn from a hash of its text: "
                  f"{tfds_builder._SHARES}); a held-out loss on this corpus needs more documents")
            continue
        _report(f"files[{split}]", lambda: pipeline.token_cache(cfg, split, tok))


def _spm(args) -> None:
    from ladder.data import pipeline
    from ladder.data.tokenizer import smallest_spm_vocab, train_sentencepiece

    if not args.out:
        raise LadderError("--out: give the SentencePiece .model file to write (-o X.model)")
    check_out(args.out, args.overwrite)
    cfg = _embedded_config(args)
    texts = [t for d in pipeline.embedded_domains(args.domains, "--domains") for t in pipeline.documents(cfg, "train", domain=d)]
    start = time.perf_counter()
    try:
        model = train_sentencepiece(texts, args.out, args.vocab_size)
    except RuntimeError as e:  # sentencepiece's own check, e.g. "Vocabulary size too high (N). Please set
        # it to a value <= 184096." after reading the corpus: its reason, as one line naming the option
        reason = str(e).split("] ", 1)[-1].strip()
        need, exact = smallest_spm_vocab(texts, reason)
        if args.vocab_size < need:  # below the floor sentencepiece's message was empty (an id check) or cryptic
            raise LadderError(f"--vocab-size: {args.vocab_size} is too small for this corpus: sentencepiece needs "
                              f"{'at least' if exact else 'about'} {need} (4 special ids + 256 byte-fallback pieces + the corpus's "
                              f"characters); use --vocab-size {need} or more") from None
        raise LadderError(f"--vocab-size: sentencepiece refused {args.vocab_size} ({reason})") from None
    print(f"wrote {args.out}: vocab {model.vocab_size} from {len(texts)} documents in "
          f"{time.perf_counter() - start:.1f}s; use --config.data.tokenizer=sentencepiece "
          f"--config.data.spm_model={args.out}")


def _tokenize(args) -> None:
    import os

    from ladder.data.tokenize import tokenize

    if not args.path or not args.out:
        raise LadderError("ladder data tokenize: give SOURCE and --out DIR (and --tokenizer SPEC)")
    start = time.perf_counter()
    m = tokenize(args.path, args.tokenizer, args.out, workers=args.workers or os.cpu_count() or 1,
                 split=args.split, domains=args.domains, text_field=args.text_field, data_dir=args.data_dir,
                 cache_dir=args.cache_dir, shard_docs=args.shard_docs, shard_mb=args.shard_mb,
                 overwrite=args.overwrite)
    print(f"wrote {args.out}: {m['documents']:,} documents, {m['tokens']:,} tokens ({m['text_bytes'] / 1e6:.1f} MB "
          f"of text) in {len(m['shards'])} shards, vocab {m['tokenizer']['vocab_size']}, content_sha256 "
          f"{m['content_sha256'][:16]}... ({time.perf_counter() - start:.1f}s); train on it with "
          f"--config.data.source=tokens --config.data.path={args.out} --config.data.tokenizer={args.tokenizer}")


def _verify(args) -> None:
    from ladder.data.token_store import verify

    if not args.path:
        raise LadderError("ladder data verify: give DIR (a token store)")
    m = verify(args.path)
    print(f"{args.path}: {len(m['shards'])} shards, {m['tokens']:,} tokens match the manifest "
          f"(content_sha256 {m['content_sha256'][:16]}...)")


def _tasks(args) -> None:
    from pathlib import Path

    from ladder import storage, tasks

    if not args.out:
        raise LadderError("--out: give a directory for the task JSONL files (-o DIR)")
    out = Path(args.out)
    for name in tasks.EMBEDDED:
        check_out(out / f"{name}.jsonl", args.overwrite)
    cfg = _embedded_config(args)
    with storage.all_or_nothing(out):  # every task file lands, or none does
        out.mkdir(parents=True, exist_ok=True)
        for name in tasks.EMBEDDED:
            task = tasks.embedded_task(name, cfg, n_questions=args.n_questions)
            tasks.write_jsonl_task(task, out / f"{name}.jsonl")
            print(f"wrote {out / (name + '.jsonl')}: {len(task.questions)} questions")


def _report(label, build):
    start = time.perf_counter()
    tokens, offsets = build()
    print(f"{label}: {len(offsets) - 1} documents, {len(tokens):,} tokens ({time.perf_counter() - start:.1f}s)")
