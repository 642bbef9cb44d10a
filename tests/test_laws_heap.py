"""ladder.laws.heap: on glibc the malloc thresholds are set (mallopt accepts them), once per process."""

import platform

import pytest

from ladder.laws import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_sets_the_thresholds_once():
    assert heap.keep_freed_memory() is True
    assert heap.keep_freed_memory() is True  # a second call is a no-op
