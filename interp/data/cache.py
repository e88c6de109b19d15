"""Content-keyed on-disk cache of token arrays (tokenizing 13 MB of code takes a while)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from interp.files import atomic_writer, content_key

FORMAT_VERSION = 1  # bump when the cached content's meaning changes


def cache_key(**parts) -> str:
    """Stable hash of JSON-serialisable parts describing everything the arrays depend on."""
    return content_key({"format": FORMAT_VERSION, **parts})


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_writer(path, "wb") as f:
        np.savez(f, **arrays)


def cached_arrays(cache_dir: str | None, name: str, build: Callable[[], dict[str, np.ndarray]],
                  **parts) -> dict[str, np.ndarray]:
    """`build()`'s arrays, kept in <cache_dir>/token_streams/<name>-<key of parts>.npz and read
    from there next time; `parts` must name everything the arrays depend on. No cache_dir: build."""
    if not cache_dir:
        return build()
    path = Path(cache_dir).expanduser() / "token_streams" / f"{name}-{cache_key(**parts)}.npz"
    if (arrays := load_arrays(path)) is not None:
        return arrays
    arrays = build()
    save_arrays(path, arrays)
    return arrays
