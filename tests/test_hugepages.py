"""interp.hugepages: train.py turns on PyTorch's huge-page allocation before torch loads, so a large
tensor costs a few hundred page faults, not one per 4 KiB (what makes CPU SAE steps ~25% faster)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
SCRIPT = """
import resource
import train            # the entry point, as `python train.py` imports it
import torch
def fill():
    torch.empty(4096, 4096).fill_(1.0)   # 64 MiB
fill()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fill()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(**env) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not THP.exists() or "[never]" in THP.read_text(), reason="no transparent huge pages")
def test_train_py_allocates_large_tensors_in_huge_pages_unless_turned_off(monkeypatch):
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert faults() < 2000                            # 64 MiB in 2 MiB pages (and a few small ones)
    assert faults(THP_MEM_ALLOC_ENABLE="0") > 16000   # one fault per 4 KiB page
