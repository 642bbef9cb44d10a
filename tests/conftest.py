"""Shared test set-up. Tests run on CPU; reference data in ../shared is optional (tests skip without it)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Multi-threaded OpenBLAS makes scipy's L-BFGS-B ~10-20x slower on a busy 2-core box (threads spin on
# 9x9 problems): the specialization law tests took 221 s with it and 11 s without. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"reference data not found at {SHARED}")
    return SHARED
