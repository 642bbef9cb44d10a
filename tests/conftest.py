"""Shared test set-up. Tests run on CPU; reference data in ../shared is optional (tests skip without it)."""

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Multi-threaded OpenBLAS makes scipy's L-BFGS-B ~10-20x slower on a busy 2-core box (threads spin on
# 9x9 problems): the specialization law tests took 221 s with it and 11 s without. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# gcsfs's experimental file system asks the Storage Control API for a bucket's layout before operations and
# does not cache a failure; the Cloud Storage emulator has no such API, so every gs:// call paid a failed
# lookup (a gRPC client, a credentials search, a warning: 270 per rehearsal host) and then fell back to the
# plain GCSFileSystem anyway. The plain one directly: 4 ms instead of 14 ms CPU per status read. Set before
# gcsfs is imported; subprocesses (trainers, rehearsal hosts) inherit it.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"


# The files that take longest, longest first, started first so that neither of README's two workers is left
# running one of them alone at the end. Costs (session 5, CPU-s of one file run alone on the loaded 2-core
# machine, after its cuts): quick smoke ~350 s wall in the last full run, CPT study 135, AOT compiles ~125 s
# wall, local launcher 89, memory savers ~90 (55 for the remat/microbatch runs), rehearsal 83 (plus its
# detached TPU VM hosts, not counted), meshes 74, trainer ~70; the reliability files and the two-process
# run follow (~35-70 s wall each).
LONGEST_FILES = ("test_run.py", "test_cpt_study.py", "test_aot.py", "test_launch_rehearse.py", "test_launch_local.py",
                 "test_loss.py", "test_sharding.py", "test_train.py", "test_reliability_checkpoints.py",
                 "test_reliability_rundir.py", "test_multiprocess.py")


def pytest_configure(config):
    """pytest-xdist's --dist loadfile hands out files by number of tests, most first (its --loadscope-reorder,
    on by default), which undid the order below: the quick smoke run (3 tests) was queued behind 40 files."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Longest files first, then the other `slow` tests, then the rest (a stable sort). README's command runs
    two xdist workers taking whole files (--dist loadfile: a module's expensive fixture is built once) in this
    order; alphabetically the quick smoke run (test_run.py) started last and ran alone for 5 minutes."""
    def key(item):
        name = item.path.name
        first = LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
        return first, item.get_closest_marker("slow") is None

    items.sort(key=key)


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
