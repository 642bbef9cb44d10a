"""Package boundaries that keep light verbs light: the launcher, run-dir I/O and config resolution import no JAX.

`ladder launch`, `ladder status` and `ladder collect` run on a laptop or a CI box without accelerators; a JAX
import there costs seconds and ties the launcher to the trainer's dependencies. Each check runs in a fresh
interpreter, so modules imported by other tests cannot hide an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIGHT_MODULES = ["ladder.launch", "ladder.launch.jobs", "ladder.launch.commands", "ladder.launch.status",
                 "ladder.launch.local", "ladder.launch.cloud", "ladder.launch.tpu_vm",
                 "ladder.launch.queued_resources", "ladder.launch.xpk", "ladder.launch.fetch"]


def _imported_after(code: str) -> set[str]:
    """Top-level module names in sys.modules after running `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                         check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_launcher_modules_import_no_jax():
    modules = _imported_after("\n".join(f"import {m}" for m in LIGHT_MODULES))
    assert "jax" not in modules and "flax" not in modules
    assert "ladder.train" not in modules and "ladder.model" not in modules
