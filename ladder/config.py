"""Load `get_config()` files and apply `--config.a.b=value` overrides, failing early and clearly.

Config files follow big_vision: `path/to/file.py` or `path/to/file.py:arg`, where `arg` is passed to
`get_config(arg)` to pick a variant. Overrides must name existing keys: a typo is an error, never a
silently added field.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
from pathlib import Path

import ml_collections

from ladder.errors import LadderError


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Load `file.py[:arg]`, call its get_config, apply `key.path=value` overrides.

    Everything that can go wrong in a config file is one line naming the file: it does not exist or is not
    Python, it has no get_config, it takes no variant but one was given, get_config rejects the variant
    (its own message is kept), or it returns something other than a ConfigDict."""
    path, colon, arg = spec.partition(":")
    if colon and not arg.strip():  # `file.py:` ran the default silently: the user meant some variant
        raise LadderError(f"config: {spec!r} names an empty variant after ':'; name one ({path}:NAME) or "
                          "drop the ':'")
    file = Path(path)
    if not file.is_file():
        what = "is a directory, not a file:" if file.is_dir() else "no such file"
        raise LadderError(f"config: {what} {path!r}; pass a get_config() file such as configs/smoke.py")
    if file.suffix != ".py":
        raise LadderError(f"config: {path} is not a .py file; pass a get_config() file such as configs/smoke.py")
    module = _exec_config_file(file, path)
    if not callable(getattr(module, "get_config", None)):
        raise LadderError(f"config: {path} defines no get_config(); add `def get_config(arg=None)`")
    if arg and not _takes_argument(module.get_config):
        raise LadderError(f"config: {path} has no variants (its get_config takes no argument), so "
                          f"{spec!r} names none; drop ':{arg}'")
    cfg = _call_get_config(module.get_config, file, path, arg)
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise LadderError(f"config: {path}: get_config returned {type(cfg).__name__}, not a ConfigDict; "
                          "return ml_collections.ConfigDict (start from ladder.train.default_config())")
    return apply_overrides(cfg, overrides)


def _exec_config_file(file: Path, path: str):
    """The config file run as a module; whatever stops it (bad Python, an import it lacks, sys.exit) is one line
    naming the file as the user wrote it (`path`) and, where known, the line."""
    module_spec = importlib.util.spec_from_file_location(f"_ladder_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except (SyntaxError, UnicodeDecodeError, ValueError) as e:
        where = f" line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise LadderError(f"config: {path}{where} is not valid Python ({type(e).__name__}: "
                          f"{getattr(e, 'msg', None) or e}); fix the file") from None
    except KeyboardInterrupt:
        raise
    except SystemExit as e:  # sys.exit() in the file would end the tool with no word
        raise LadderError(f"config: {path}{_line_in(e, file)} called sys.exit({e.code!r}) while loading; "
                          "a config file must define get_config(), not exit") from None
    except Exception as e:  # an import it lacks, a name it misspells: the user's code, so name its line
        raise LadderError(f"config: {path}{_line_in(e, file)} failed while loading: {_one_line(e)}; fix the file") from None
    return module


def _call_get_config(get_config, file: Path, path: str, arg: str):
    """get_config(arg) (or get_config() without a variant); an error inside it is one line at its line, and a
    ValueError/KeyError/TypeError keeps its own message (the usual way to refuse an unknown variant)."""
    what = f"variant {arg!r}" if arg else "get_config()"
    try:
        return get_config(arg) if arg else get_config()
    except (ValueError, KeyError, TypeError) as e:
        message = str(e.args[0]) if e.args else type(e).__name__
        raise LadderError(f"config: {path}: {what} failed: {message}") from None
    except (KeyboardInterrupt, LadderError):
        raise
    except SystemExit as e:
        raise LadderError(f"config: {path}{_line_in(e, file)}: {what} called sys.exit({e.code!r}); "
                          "return a ConfigDict instead") from None
    except Exception as e:  # any other error inside the user's get_config: one line at its line, not a traceback
        raise LadderError(f"config: {path}{_line_in(e, file)}: {what} raised {_one_line(e)}; fix the file") from None


KINDS = {  # config kind -> (sections that mark it, the verb that takes it, an example)
    "train": (("model", "train", "optim"), "ladder train", "configs/tiny.py"),
    "run": (("plan", "launch"), "ladder run", "configs/smoke.py"),
    "cpt": (("base", "ratios", "budgets"), "ladder cpt", "configs/specialization.py"),
}


def require_kind(cfg, kind: str, spec: str = "config") -> None:
    """A config of another kind (a train config given to `ladder run`, or the reverse) is one line saying
    which verb takes it, not an AttributeError deep inside."""
    sections, verb, example = KINDS[kind]
    if all(k in cfg for k in sections):
        return
    other = next((k for k, (marks, _, _) in KINDS.items() if k != kind and all(m in cfg for m in marks)), None)
    what = f"a `{KINDS[other][1]}` config" if other else f"not a `{verb}` config (it lacks {', '.join(sections)})"
    hint = f"run it with `{KINDS[other][1]}`, or " if other else ""
    raise LadderError(f"config: {spec} is {what}; {hint}give `{verb}` a config such as {example}")


def _line_in(e: BaseException, file: Path) -> str:
    """' line N' of the deepest frame of `e` inside the config file (where the user's code failed), else ''."""
    import traceback

    try:
        target = file.resolve()
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == target]
    except (OSError, ValueError):
        return ""
    return f" line {lines[-1]}" if lines else ""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def _takes_argument(fn) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def apply_overrides(cfg: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
    """Apply `a.b=value` strings; values are Python literals, else taken as strings."""
    cfg = ml_collections.ConfigDict(copy.deepcopy(cfg))  # deep: the caller's sections stay as they were
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise LadderError(f"--config.{item}: expected --config.KEY=VALUE")
        set_path(cfg, key, parse_value(raw))
    return cfg


def parse_value(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # not a literal: the text itself
        return raw


def set_path(cfg: ml_collections.ConfigDict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if part in node and not isinstance(node[part], ml_collections.ConfigDict):
            value_key = ".".join(parents[: i + 1])
            raise LadderError(f"--config.{key}: {value_key!r} is a value, not a section; set it as "
                              f"--config.{value_key}=VALUE")
        if part not in node:
            sections = [k for k in node.keys() if isinstance(node[k], ml_collections.ConfigDict)]
            raise LadderError(f"--config.{key}: unknown key {'.'.join(parents[: i + 1])!r}; "
                              f"{_nearest(part, sections, 'sections here')}")
        node = node[part]
    if leaf not in node:
        raise LadderError(f"--config.{key}: unknown key {leaf!r}; {_nearest(leaf, list(node.keys()), 'known keys here')}")
    old = node[leaf]
    if isinstance(old, ml_collections.ConfigDict):  # its repr is the whole section: name it instead
        raise LadderError(f"--config.{key}: {key!r} is a section, not a value; set one of its keys, e.g. "
                          f"--config.{key}.{next(iter(old.keys()), 'KEY')}=VALUE")
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if old is not None and value is not None and type(old) is not type(value) and not (
        isinstance(old, (list, tuple)) and isinstance(value, (list, tuple))
    ):
        fix = "write a value of that type"
        if isinstance(old, bool):  # true, yes, 1, 'False': the spellings other tools take
            fix = f"write True or False as Python spells them, e.g. --config.{key}={not old}"
        elif isinstance(old, str):  # 1,2,3 and 123 parse as Python literals; the shell strips plain quotes
            fix = f"quote it for the shell and for Python, e.g. --config.{key}='\"{raw_text(value)}\"'"
        elif isinstance(old, (list, tuple)) and isinstance(value, str) and value.startswith("["):
            # [a,b] after the shell stripped the quotes of ['a','b']: the names need Python quotes inside shell ones
            items = ",".join(f'"{v.strip()}"' for v in value.strip("[]").split(",") if v.strip())
            fix = f"quote the names for Python inside shell quotes, e.g. --config.{key}='[{items}]'"
        raise LadderError(f"--config.{key}: expected {type(old).__name__} (like {old!r}), got {value!r}; {fix}")
    with node.ignore_type():
        node[leaf] = value


def _nearest(name: str, keys: list[str], what: str) -> str:
    """'did you mean X? <what>: a, b, c' (the closest key first: a typo names its fix), or just the list."""
    import difflib

    known = f"{what}: {', '.join(sorted(keys))}" if keys else "this level has no keys; see the config file"
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? {known}" if close else known


def raw_text(value) -> str:
    """How a literal was most likely typed: (1, 2) from `1,2`, 123 from `123`."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def to_json(cfg: ml_collections.ConfigDict) -> str:
    """A stable JSON form, used to save the config beside a run and to hash it."""
    return json.dumps(cfg.to_dict(), sort_keys=True, indent=2, default=str)
