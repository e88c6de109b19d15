"""Wall time of a run's phases (tokenizing, harvesting, writing and hashing the cache, saving), reported in
metrics.json as `time/<phase>_s` beside `time/train_step_s`, so a slow run says where its time went.

Phases nest; each reports its own time only (a harvest's cache writes count as `cache_write`, not `harvest`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

_totals: dict[str, float] = {}
_stack: list[list] = []   # [name, start, seconds spent in nested phases]


@contextmanager
def timed(name: str):
    _stack.append([name, time.perf_counter(), 0.0])
    try:
        yield
    finally:
        _, start, inner = _stack.pop()
        spent = time.perf_counter() - start
        _totals[name] = _totals.get(name, 0.0) + spent - inner
        if _stack:
            _stack[-1][2] += spent


def reset() -> None:
    _totals.clear()


def summary() -> dict[str, float]:
    return {f"time/{name}_s": seconds for name, seconds in _totals.items()}
