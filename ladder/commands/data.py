"""`ladder data build|files|spm|tasks`: build datasets and token caches ahead of training (all offline).

    ladder data build [--domains prose,code,legal]        embedded corpus -> tfds array_record + byte tokens
    ladder data files PATH [--text-field text] [--name N] local .txt/.jsonl files -> tfds array_record + tokens
    ladder data spm --vocab-size N -o X.model             train SentencePiece on the embedded train split
    ladder data tasks -o DIR                              write the embedded tasks as JSONL (docs/tasks.md)
"""

from __future__ import annotations

import time

from ladder.commands.common import add_out, check_out

EXAMPLES = """
ladder data build --domains prose,code,legal
ladder data files /data/my-corpus/ --name my-corpus
ladder data spm --vocab-size 8192 -o spm8k.model
ladder data tasks -o tasks/
"""


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["build", "files", "spm", "tasks"], help="what to build (see the examples)")
    parser.add_argument("path", nargs="?", help="files: a directory, glob or comma list of .txt/.jsonl files")
    parser.add_argument("--domains", default="prose,code,legal", help="embedded domains (comma list)")
    parser.add_argument("--cache-dir", default="", help="token caches and tfds data (default: $LADDER_CACHE or "
                        "~/.cache/ladder)")
    parser.add_argument("--text-field", default="text", help="JSONL field holding the text")
    parser.add_argument("--name", default="", help="files: dataset config name (default: a hash of the inputs)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="spm: vocabulary size")
    add_out(parser, "spm: the .model file to write; tasks: a directory")
    parser.add_argument("--n-questions", type=int, default=300, help="tasks: questions per embedded task")


def run(args) -> int:
    import ml_collections

    from ladder.data import pipeline
    from ladder.data.tokenizer import ByteTokenizer, train_sentencepiece
    from ladder.errors import LadderError

    base = dict(cache_dir=args.cache_dir)
    tok = ByteTokenizer()
    if args.action == "build":
        for domain in pipeline.as_list(args.domains, "domains"):
            cfg = ml_collections.ConfigDict(dict(base, source="embedded"))
            for split in ("train", "validation", "test"):
                _report(f"{domain}[{split}]", lambda: pipeline.token_cache(cfg, split, tok, domain=domain))
    elif args.action == "files":
        if not args.path:
            raise LadderError("ladder data files: give PATH (a directory, glob or comma list of .txt/.jsonl files)")
        cfg = ml_collections.ConfigDict(dict(base, source="files", files=args.path, text_field=args.text_field,
                                             name=args.name))
        for split in ("train", "validation", "test"):
            _report(f"files[{split}]", lambda: pipeline.token_cache(cfg, split, tok))
    elif args.action == "spm":
        if not args.out:
            raise LadderError("--out: give the SentencePiece .model file to write (-o X.model)")
        check_out(args.out, args.overwrite)
        cfg = ml_collections.ConfigDict(dict(base, source="embedded"))
        texts = [t for d in pipeline.as_list(args.domains, "domains") for t in pipeline.documents(cfg, "train", domain=d)]
        start = time.perf_counter()
        model = train_sentencepiece(texts, args.out, args.vocab_size)
        print(f"wrote {args.out}: vocab {model.vocab_size} from {len(texts)} documents in "
              f"{time.perf_counter() - start:.1f}s; use --config.data.tokenizer=sentencepiece "
              f"--config.data.spm_model={args.out}")
    elif args.action == "tasks":
        from pathlib import Path

        from ladder import tasks

        if not args.out:
            raise LadderError("--out: give a directory for the task JSONL files (-o DIR)")
        out = Path(args.out)
        for name in tasks.EMBEDDED:
            check_out(out / f"{name}.jsonl", args.overwrite)
        out.mkdir(parents=True, exist_ok=True)
        cfg = ml_collections.ConfigDict(dict(base, source="embedded"))
        for name in tasks.EMBEDDED:
            task = tasks.embedded_task(name, cfg, n_questions=args.n_questions)
            tasks.write_jsonl_task(task, out / f"{name}.jsonl")
            print(f"wrote {out / (name + '.jsonl')}: {len(task.questions)} questions")
    return 0


def _report(label, build):
    start = time.perf_counter()
    tokens, offsets = build()
    print(f"{label}: {len(offsets) - 1} documents, {len(tokens):,} tokens ({time.perf_counter() - start:.1f}s)")
