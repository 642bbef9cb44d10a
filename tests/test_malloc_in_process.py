"""ladder.malloc_tunables.keep_freed_memory: on glibc the malloc thresholds are set (mallopt accepts them), once."""

import platform

import pytest

from ladder import malloc_tunables


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_sets_the_thresholds_once():
    assert malloc_tunables.keep_freed_memory() is True
    assert malloc_tunables.keep_freed_memory() is True  # a second call is a no-op
