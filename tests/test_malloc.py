"""interp.malloc: with reuse_freed_memory, a large tensor allocated again reuses freed pages
instead of page-faulting fresh ones in (what makes CPU SAE steps ~20 ms per tensor faster)."""

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from interp.malloc import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def fill():
    torch.empty(4096, 4096).fill_(1.0)       # 64 MiB, above glibc's mmap threshold
fill()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fill()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_reuse_freed_memory_stops_page_faults_on_a_repeated_large_allocation():
    faults = {mode: int(subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("system", "reuse")}
    assert faults["system"] > 4000           # 64 MiB of fresh 4 KiB pages (fewer with huge pages)
    assert faults["reuse"] < 200, faults
