"""Content-keyed on-disk cache of token arrays (tokenizing 13 MB of code takes a while)."""

from __future__ import annotations

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
