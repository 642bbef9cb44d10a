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
    """Load `file.py[:arg]`, call its get_config, apply `key.path=value` overrides."""
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise LadderError(f"config: no such file {path!r}; pass a get_config() file such as configs/smoke.py")
    module_spec = importlib.util.spec_from_file_location(f"_ladder_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise LadderError(f"config: {path} defines no get_config(); add `def get_config(arg=None)`")
    cfg = module.get_config(arg) if arg else module.get_config()
    return apply_overrides(cfg, overrides)


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
    except (ValueError, SyntaxError):
        return raw


def set_path(cfg: ml_collections.ConfigDict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            raise LadderError(f"--config.{key}: unknown key {'.'.join(parents[: i + 1])!r}; see the config file")
        node = node[part]
    if leaf not in node:
        known = ", ".join(sorted(node.keys()))
        raise LadderError(f"--config.{key}: unknown key {leaf!r}; known keys here: {known}")
    old = node[leaf]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if old is not None and value is not None and type(old) is not type(value) and not (
        isinstance(old, (list, tuple)) and isinstance(value, (list, tuple))
    ):
        raise LadderError(
            f"--config.{key}: expected {type(old).__name__} (like {old!r}), got {value!r}"
        )
    with node.ignore_type():
        node[leaf] = value


def to_json(cfg: ml_collections.ConfigDict) -> str:
    """A stable JSON form, used to save the config beside a run and to hash it."""
    return json.dumps(cfg.to_dict(), sort_keys=True, indent=2, default=str)
