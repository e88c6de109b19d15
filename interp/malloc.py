"""Let glibc reuse freed large blocks instead of unmapping them (CPU training speed).

glibc's malloc serves every allocation above its mmap threshold (at most 32 MiB)
with a fresh `mmap`, and `munmap`s it on free. PyTorch's CPU allocator has no
cache of its own, so each large tensor of a training step, e.g. an SAE's
[4096, 4096] float32 activations (64 MiB), is page-faulted in again on first
touch: about 20 ms here, four times the ReLU that fills it. PyTorch's CPU
tuning guide recommends swapping in jemalloc or tcmalloc for this; the same
effect is two `mallopt` calls on the allocator already loaded: serve large
blocks from the heap (M_MMAP_MAX = 0), where freed ones are reused, and do not
trim the heap back after every step (M_TRIM_THRESHOLD). The process then keeps
its peak memory until it exits, as a GPU caching allocator does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def reuse_freed_memory() -> bool:
    """Apply the setting to this process (and its forked children); False where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):   # not glibc (macOS, musl, Windows)
        ok = False
    if not ok:
        log.debug("mallopt unavailable: large CPU tensors are page-faulted in on each allocation")
    return ok
