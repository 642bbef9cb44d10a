"""Shared test set-up. Tests run on CPU; reference data in ../shared is optional (tests skip without it)."""

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Multi-threaded OpenBLAS makes scipy's L-BFGS-B ~10-20x slower on a busy 2-core box (threads spin on
# 9x9 problems): the specialization law tests took 221 s with it and 11 s without. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_collection_modifyitems(config, items):
    """The long (`slow`) tests first, in a stable order. README's command runs two xdist workers, one file per
    worker at a time (--dist loadfile: a module's expensive fixture is built once); in alphabetical order the two
    longest files (test_run, test_cpt_study) started last and one worker ran them alone for minutes."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"reference data not found at {SHARED}")
    return SHARED


@pytest.fixture
def gcs_emulator(tmp_path):
    """gs://test/... served by a local Cloud Storage emulator (launch.emulator, the rehearsal's) for the
    test's duration; yields the environment that points clients at it. Skips without ladder[rehearse]."""
    pytest.importorskip("gcp_storage_emulator", reason="needs ladder[rehearse] (gcp-storage-emulator)")
    pytest.importorskip("gcsfs", reason="needs ladder[rehearse] (gcsfs)")
    from ladder.launch import emulator

    with emulator.serving(tmp_path / "gcs" / "bucket", ["test"]) as env:
        yield env


@pytest.fixture(scope="session")
def build_offline():
    """build_offline(domains, root) -> {domain: prepared tfds builder}: embedded domains built into
    root/tfds with the network forbidden (any IPv4/IPv6 connect fails the test)."""
    from ladder.data.tfds_builder import embedded_builder, prepared

    def build(domains, root: Path) -> dict:
        real_connect = socket.socket.connect

        def refuse(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise AssertionError(f"network access attempted: {address}")
            return real_connect(self, address)

        socket.socket.connect = refuse
        try:
            return {d: prepared(embedded_builder(d, root / "tfds")) for d in domains}
        finally:
            socket.socket.connect = real_connect

    return build
