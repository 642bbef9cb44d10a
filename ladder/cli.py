"""`ladder <verb>`: a thin shell over the Python API.

Each verb lives in `ladder/commands/<verb>.py` with `add_arguments(parser)`, `run(args) -> int` (parse, one
library call, print), `EXAMPLES` (shown by --help) and `TAKES_CONFIG = True` when it reads `--config.*`
overrides. A verb's module is imported only when invoked, so `ladder plan` never pays for JAX.
Any `LadderError`, any OSError (a path that cannot be read or written) and a MemoryError becomes one line
on stderr and exit code 2; Ctrl-C is one line and 130, SIGTERM one line and 143 (not for the verbs that train
in-process: the trainer handles SIGTERM itself). The grammar the verbs share (-o/--out and
--overwrite, --target, examples, defaults in --help) is in `ladder/commands/common.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

# scipy's L-BFGS on small problems runs 10-20x slower with multi-threaded OpenBLAS on a busy 2-core machine
# (measured on the D-CPT fits); set before numpy loads. An explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Every plot is a PNG file drawn with Agg; a MPLBACKEND the machine lacks (or misspelt) made matplotlib's import
# raise a ValueError traceback after the fit.
os.environ["MPLBACKEND"] = "Agg"

from ladder.errors import LadderError, Terminated, sigterm_raises_terminated

# verb -> (module under ladder.commands, one-line help). Order is the order of the data flow.
VERBS: dict[str, tuple[str, str]] = {
    "plan": ("plan", "plan a ladder for one or more targets: rungs, budgets, batch sizes, LRs, FLOPs"),
    "data": ("data", "build the embedded corpus or a local tfds dataset, tokenize and cache it"),
    "train": ("train", "train one rung (or any config) with the sharded trainer; resumes automatically"),
    "eval": ("eval", "score a checkpoint on multiple-choice tasks (ranked classification)"),
    "import": ("import_", "import published ladder results (e.g. OLMo) into a results table"),
    "predict": ("predict", "fit the two-step laws on a results table and predict target accuracy"),
    "run": ("run", "end to end: plan, train every rung, evaluate, predict, self-check, report"),
    "launch": ("launch", "launch a plan's rungs locally or on Cloud TPU (tpu-vm, queued-resources, xpk)"),
    "status": ("status", "one line per rung of a launched plan: state, step, loss, tokens/s, ETA"),
    "collect": ("collect", "gather every rung's evaluation rows into one results table"),
    "compile": ("compile", "compile each rung for a Cloud TPU topology on CPU; report HBM use and FLOPs"),
    "cpt": ("cpt", "continual pretraining grids: specialize checkpoints on domain mixtures"),
    "fit": ("fit", "fit specialization laws (D-CPT, pretrain/specialize split) on a results table"),
    "allocate": ("allocate", "split a compute budget between pretraining and k domain specializations"),
    "report": ("report", "write reports (e.g. the specialization compute-effectiveness report)"),
}

# Verbs whose process runs XLA steps: started from a shell they re-execute once with glibc's malloc tunables
# (ladder/malloc_tunables.py; the local launcher gives its trainers them directly).
TUNED_VERBS = ("train", "eval", "cpt")


def _load(verb: str):
    module, _ = VERBS[verb]
    return importlib.import_module(f"ladder.commands.{module}")


def version() -> str:
    """The installed package's version (package metadata), or 'unknown' when running from a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("ladder")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ladder",
        description="Model ladders for scaling-law research. Run `ladder VERB --help` for a verb's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="verbs:\n" + "\n".join(f"  {v:<9} {h}" for v, (_, h) in VERBS.items()),
    )
    parser.add_argument("verb", choices=list(VERBS), metavar="VERB", help="one of the verbs below")
    parser.add_argument("--version", action="version", version=f"ladder {version()}")
    return parser


def verb_parser(verb: str, module) -> argparse.ArgumentParser:
    """The verb's parser: its options (defaults shown), its examples and, for verbs that take a config, the
    `--config.section.key=value` override line (the module's own CONFIG_LINE if it has one, else one whose
    example is the first override in its EXAMPLES)."""
    from ladder.commands.common import HelpFormatter, config_line

    takes_config = getattr(module, "TAKES_CONFIG", False)
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in module.EXAMPLES.strip().splitlines())
    if takes_config:
        epilog += "\n\n" + (getattr(module, "CONFIG_LINE", None) or config_line(module.EXAMPLES))
    parser = argparse.ArgumentParser(prog=f"ladder {verb}", description=VERBS[verb][1], formatter_class=HelpFormatter,
                                     epilog=epilog)
    module.add_arguments(parser)
    return parser


def parse(verb: str, rest: list[str]):
    """(module, args) for `ladder VERB REST...` without running it; argparse errors exit 2 as usual.
    `--config.a.b=value` overrides (the ml_collections idiom) land in args.config_overrides for verbs that
    take a config and are errors elsewhere."""
    module = _load(verb)
    parser = verb_parser(verb, module)
    args, unknown = parser.parse_known_args(rest)
    takes_config = getattr(module, "TAKES_CONFIG", False)
    args.config_overrides = [u[len("--config."):] for u in unknown if takes_config and u.startswith("--config.")]
    leftover = [u for u in unknown if not (takes_config and u.startswith("--config."))]
    if leftover:
        parser.error(f"unrecognized arguments: {' '.join(leftover)}")
    refuse_empty_values(parser, args)
    refuse_output_onto_input(parser, args)
    return module, args


def refuse_output_onto_input(parser: argparse.ArgumentParser, args) -> None:
    """-o naming a file the verb also reads (`predict res.csv -o res.csv --overwrite` replaced the results table
    with the predictions; `import csv t.csv -o t.csv` rewrote its own input) is a usage error, whatever
    --overwrite says: the input is gone once the output lands."""
    out = getattr(args, "out", None)
    if not isinstance(out, str) or not os.path.isfile(out):
        return
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.dest == "out" or not isinstance(value, str) or not os.path.isfile(value):
            continue
        try:
            same = os.path.samefile(value, out)
        except OSError:
            continue
        if same:
            flag = "/".join(action.option_strings) or action.metavar or action.dest
            parser.error(f"argument -o/--out: {out} is also the input {flag}; write the output to another path")


def refuse_empty_values(parser: argparse.ArgumentParser, args) -> None:
    """A value typed as '' (or blanks), e.g. `--method ''` from an unset shell variable, is an error, not the
    default: before, `--method ''`, `--holdout ''` and `--eval-fractions ''` ran with the defaults, exit 0.
    A flag whose own default is '' may be given ''."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if action.default != value and any(isinstance(v, str) and not v.strip() for v in values):
            flag = "/".join(action.option_strings) or action.metavar or action.dest
            fix = f"give a value or leave {action.option_strings[-1]} out" if action.option_strings else "give a value"
            parser.error(f"argument {flag}: is empty; {fix}")


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    tolerant_output()
    quiet_library_loggers()
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help", "--version"):
        if argv[:1] == ["--version"]:
            print(f"ladder {version()}")
        else:
            top.print_help()
        return 0
    if argv[0] not in VERBS:
        top.print_usage(sys.stderr)
        print(f"ladder: error: unknown verb {argv[0]!r}; choose one of {', '.join(VERBS)}", file=sys.stderr)
        return 2
    verb, rest = argv[0], argv[1:]
    if verb in TUNED_VERBS and from_command_line:
        from ladder.malloc_tunables import reexec_with_tunables

        reexec_with_tunables()  # glibc reads its malloc tunables at process start: once, before JAX loads
    with sigterm_as_interrupt(verb):
        return _run_verb(verb, rest, from_command_line)


def _run_verb(verb: str, rest: list[str], from_command_line: bool) -> int:
    try:
        module, args = parse(verb, rest)  # imports the verb's module: Ctrl-C here was a traceback from deep in it
    except KeyboardInterrupt as e:
        return interrupted(verb, e)
    try:
        check_environment()
        return int(module.run(args) or 0)
    except LadderError as e:
        print(f"ladder {verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        code = interrupted(verb, e)
        if from_command_line and "jax" in sys.modules:
            exit_now(code)
        return code
    except MemoryError as e:  # numpy's _ArrayMemoryError (global_batch=2^31-1 asked for 1 TiB) is one too
        print(f"ladder {verb}: error: out of host memory ({e or 'an allocation failed'}); use a smaller batch, "
              "model or input", file=sys.stderr)
        return 2
    except RuntimeError as e:  # Python 3.11's Path.resolve on a loop of links (3.13 raises OSError ELOOP instead)
        if not str(e).startswith("Symlink loop from "):
            raise
        print(f"ladder {verb}: error: {str(e)[len('Symlink loop from '):]}: a loop of symbolic links; remove the "
              "link or give another path", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ladder plan ... | head -1`: the reader has what it wanted; not a file error
        quiet_stdout()
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe reports
    except OSError as e:  # a path that cannot be read or written (missing, a directory, read-only, disk full)
        line = os_error_line(e) if e.filename or not from_print(e) else \
            f"standard output: {e.strerror or e}; send the output somewhere that takes it (> FILE)"
        print(f"ladder {verb}: error: {line}", file=sys.stderr)
        return 2


def exit_now(code: int) -> None:
    """End the process after an interrupt without the interpreter's teardown once JAX is loaded: a Ctrl-C or
    SIGTERM while `ladder train` compiled left XLA's threads running into it, and the process ended in a
    segmentation fault (exit 139, 2 of 5 tries) after its one line. Every file is already written whole and
    the run lock released (the exception unwound through them); a test's in-process call never gets here."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def interrupted(verb: str, e: KeyboardInterrupt) -> int:
    """The one line for a stop asked from outside, and the shell's exit code for it (128 + the signal)."""
    if isinstance(e, Terminated):
        print(f"ladder {verb}: interrupted by SIGTERM; nothing half-written (every file is written whole or not "
              "at all), re-run the same command to do the work", file=sys.stderr)
        return 143
    print(f"ladder {verb}: interrupted", file=sys.stderr)
    return 130


@contextlib.contextmanager
def sigterm_as_interrupt(verb: str):
    """SIGTERM during a verb is one line and exit 143, as Ctrl-C is one line and 130; before, the process
    ended with 143 and no word. `ladder train` and `cpt` too, except while the trainer's Preemption
    (ladder/preemption.py) holds SIGTERM for its steps (to save first): a SIGTERM while `ladder train` built
    its data or compiled ended the process with no word and a stale lock.json."""
    with sigterm_raises_terminated():
        yield


def tolerant_output() -> None:
    """A console that cannot encode a name (PYTHONIOENCODING=ascii, an ASCII locale under a pipe) shows it
    escaped (\\xfc) instead of ending the verb with a UnicodeEncodeError traceback after its work was done."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # a test's capture, or a closed stream
            pass


def quiet_library_loggers() -> None:
    """gcsfs logs each failed request with its traceback (logger.exception) and a fallback warning per file;
    with no logging configured Python's last-resort handler printed them all: an unreachable gs:// run root
    gave `ladder status` 55 lines of aiohttp tracebacks before its one error line. A NullHandler silences only
    that fallback: a notebook or job that configures logging still gets the records (they propagate)."""
    import logging

    for name in ("gcsfs", "google.auth"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


def from_print(e: BaseException) -> bool:
    """Whether `e` was raised by a print (stdout on a full device, `> /dev/full`): said as standard output, not
    "a file"; stdout is then pointed at /dev/null so the interpreter's exit flush stays silent."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    printed = bool(frames) and (frames[-1].line or "").lstrip().startswith("print(")
    if printed:
        quiet_stdout()
    return printed


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into the closed pipe stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed (`>&-`) or not a real file (a test's capture)
        pass


def check_environment(environ=None) -> None:
    """The LADDER_* variables a verb may read, checked before any work: a bad value is one line naming the
    variable, not a fallback nobody sees (LADDER_FIT_WORKERS=abc) or a failure deep inside (LADDER_CACHE naming
    a file surfaced as a storage error under the run directory). Empty counts as unset."""
    environ = os.environ if environ is None else environ
    try:  # a shell left in a deleted directory: every relative path failed later as "a file: No such file"
        os.getcwd()
    except FileNotFoundError:
        raise LadderError("the current directory no longer exists (deleted after the shell entered it); cd to an "
                          "existing directory") from None
    from ladder.laws.parallel import default_workers  # the one reader of LADDER_FIT_WORKERS

    default_workers(environ)
    cache = environ.get("LADDER_CACHE", "")
    if cache and os.path.exists(os.path.expanduser(cache)) and not os.path.isdir(os.path.expanduser(cache)):
        raise LadderError(f"LADDER_CACHE: {cache} is a file, not a directory; point LADDER_CACHE at a directory, "
                          "or unset it for ~/.cache/ladder")
    from ladder import cpu_threads, malloc_tunables, storage  # cpu_threads, malloc_tunables: their one readers

    problem = cache and storage.native_path_problem(os.path.expanduser(cache))
    if problem:
        raise LadderError(f"LADDER_CACHE: {problem}; {storage.NATIVE_PATH_FIX}")

    cpu_threads.requested(environ)
    malloc_tunables.check_switch(environ)
    check_xla_flags(environ.get("XLA_FLAGS", ""))


# XLA_FLAGS entries XLA parses as numbers, with the least value that starts a backend (0 or -1 devices did not).
_XLA_COUNTS = {"xla_force_host_platform_device_count": 1}


def check_xla_flags(value: str) -> None:
    """XLA_FLAGS as XLA reads it, checked before JAX loads: XLA aborts the process on a flag it cannot parse
    (`--xla_force_host_platform_device_count=abc` printed its 90-line flag list and exit 1, a value without
    `--` is taken for a file of flags) and silently skips words that are not flags (`--x= 2` drops the 2).
    Names XLA does not know are left to XLA, whose one line names them."""
    words = value.split()
    if not words:
        return
    fix = "write flags as --name=value separated by spaces, or unset XLA_FLAGS"
    if not words[0].startswith("--"):
        if os.path.isfile(value.strip()):
            return  # XLA reads the flags from that file
        raise LadderError(f"XLA_FLAGS={value!r}: does not start with --, so XLA reads it as a file of flags, and "
                          f"there is no such file; {fix}")
    for word in words:
        name, _, given = word[2:].partition("=")
        if not word.startswith("--") or not name:
            raise LadderError(f"XLA_FLAGS: {word!r} is not a flag (XLA would skip it without a word); {fix}")
        least = _XLA_COUNTS.get(name)
        if least is not None and not (given.isdigit() and int(given) >= least):
            raise LadderError(f"XLA_FLAGS: --{name}={given!r} is not a whole number >= {least}; give e.g. "
                              f"--{name}=4, or leave it out")


def os_error_line(e: OSError) -> str:
    """An OSError as '<path>: <reason>; <fix>' (no traceback: the path and the reason are what the user needs)."""
    if not e.filename and unreachable(e):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:  # not the network or credentials: the variable that sends gs:// elsewhere
            return (f"STORAGE_EMULATOR_HOST={emulator}: the Cloud Storage emulator cannot be reached "
                    f"({e.strerror or e}); start it there, or unset STORAGE_EMULATOR_HOST for Cloud Storage")
        return (f"Cloud Storage cannot be reached ({e.strerror or e}); check the network and the credentials "
                "(gcloud auth application-default login), or give a local --run-root")
    path = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "") if e.filename else "a file"
    cache = os.path.expanduser(os.environ.get("LADDER_CACHE", ""))
    if cache and e.filename and _under(os.fsdecode(e.filename), cache):
        # the path came from the environment, not the command line: name the variable to change
        return f"LADDER_CACHE={os.environ['LADDER_CACHE']}: {path}: {e.strerror or e}; point LADDER_CACHE at a " \
               "writable directory, or unset it for ~/.cache/ladder"
    home = os.path.expanduser("~")
    default = os.path.join(home, ".cache", "ladder")
    if not cache and e.filename and home != "/" and _under(name := os.fsdecode(e.filename), home) and \
            (_under(name, default) or _under(default, name)):  # the default cache, or a directory on its way
        return f"the default cache {default} (LADDER_CACHE unset, HOME={home}): {path}: {e.strerror or e}; set " \
               "LADDER_CACHE to a writable directory"
    return f"{path}: {e.strerror or e}; check that the path exists, is of the right kind (file or directory), " \
           "is writable, and that the disk is not full"


def unreachable(e: OSError) -> bool:
    """A network failure (DNS, refused or dropped connection, timeout) rather than a file's: gcsfs raises
    aiohttp's connection errors, which are OSErrors without a file name (before: "a file: Name or service not
    known; check that ... the disk is not full")."""
    import socket

    return isinstance(e, (ConnectionError, socket.gaierror, TimeoutError)) or \
        type(e).__module__.split(".")[0] in ("aiohttp", "requests", "urllib3")


def _under(path: str, root: str) -> bool:
    """Whether `path` is `root` or inside it (lexically: the cache need not exist)."""
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


if __name__ == "__main__":
    raise SystemExit(main())
