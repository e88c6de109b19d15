"""On-disk activation cache: one `.npy` of [n_tokens, d_in] plus a manifest, shared by a sweep.

Layout: `<root>/<key>/{acts.npy, manifest.json}`, key = hash of what the
activations depend on (base checkpoint hash, hook, data config, token count,
dtype, seed). A cache is built in a hidden temporary folder beside it and
renamed into place only when complete (interp.files.atomic_dir), so a crash or
a full disk never leaves something that looks valid, and the temporary folder
of a killed harvest is removed by the next one. An exclusive `flock` on `<key>.lock` makes concurrent jobs of a
sweep wait for the one that harvests, then reuse its result.

Reads use positional reads of row blocks (not a whole-file mmap), so training
from a cache far larger than RAM keeps memory at one block; the file is a
plain `.npy`, so `np.load(path, mmap_mode="r")` opens it in a notebook.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from interp import phases
from interp.errors import DataError
from interp.files import atomic_dir, content_key, file_lock, file_sha256, remove_stale_temps

log = logging.getLogger(__name__)

FORMAT = 1
ACTS_FILE, MANIFEST_FILE = "acts.npy", "manifest.json"
DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class CacheHandle:
    path: Path            # the cache directory
    manifest: dict
    harvested: bool       # True if this process built it, False if it reused one

    @property
    def acts_path(self) -> Path:
        return self.path / ACTS_FILE


class CacheWriter:
    """Appends row blocks to a `.npy` whose header already states the final shape."""

    def __init__(self, path: Path, n_rows: int, d: int, dtype: str):
        self.path, self.n_rows, self.d, self.dtype = path, n_rows, d, np.dtype(DTYPES[dtype])
        self.written = 0
        self.hash = hashlib.sha256()
        self.f = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n_rows, d)}
        np.lib.format.write_array_header_1_0(self.f, header)
        self.f.flush()
        self.hash.update(path.read_bytes())  # the header, so the digest covers the whole file

    def write(self, rows: torch.Tensor) -> int:
        """Write up to the remaining rows of `rows` [n, d]; return how many are still wanted."""
        take = rows[: self.n_rows - self.written].detach().cpu().numpy().astype(self.dtype, copy=False)
        with phases.timed("cache_write"):
            data = np.ascontiguousarray(take).tobytes()
            self.f.write(data)
            self.hash.update(data)
        self.written += len(take)
        return self.n_rows - self.written

    def close(self) -> str:
        with phases.timed("cache_write"):
            self.f.flush()
            os.fsync(self.f.fileno())
        self.f.close()
        if self.written != self.n_rows:
            raise DataError(f"activation harvest ended after {self.written} of {self.n_rows} rows: the data ran out. "
                            "Fix: lower sae.harvest_tokens or use more data.")
        return self.hash.hexdigest()


def read_header(path: Path) -> tuple[tuple[int, int], np.dtype, int]:
    """(shape, dtype, byte offset of the data) of a `.npy` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(f)
        return shape, dtype, f.tell()


def problem_with(path: Path, expected: dict, verify_hash: bool) -> str | None:
    """Why the cache at `path` cannot be used for `expected` fields (None: it can)."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f"its manifest is missing or unreadable ({type(e).__name__})"
    if manifest.get("fields") != expected:
        diff = sorted(k for k in {*expected, *manifest.get("fields", {})}
                      if manifest.get("fields", {}).get(k) != expected.get(k))
        return f"its manifest was written for different {', '.join(diff)}"
    acts = path / ACTS_FILE
    try:
        shape, dtype, offset = read_header(acts)
    except (OSError, ValueError) as e:
        return f"{ACTS_FILE} has no valid .npy header ({e})"
    n, d = expected["n_tokens"], manifest["d_in"]
    if shape != (n, d) or dtype != np.dtype(DTYPES[expected["dtype"]]):
        return f"{ACTS_FILE} holds {shape} {dtype}, the manifest says ({n}, {d}) {expected['dtype']}"
    if acts.stat().st_size != offset + n * d * dtype.itemsize:
        return f"{ACTS_FILE} is {acts.stat().st_size} bytes, expected {offset + n * d * dtype.itemsize} (truncated?)"
    with phases.timed("cache_verify"):
        corrupted = verify_hash and file_sha256(acts) != manifest["sha256"]
    if corrupted:
        return f"{ACTS_FILE} does not match the sha256 in its manifest (corrupted)"
    return None


def get_or_build(
    root: str | Path,
    fields: dict,
    d_in: int,
    harvest: Callable[[CacheWriter], None],
    *,
    path: str | Path | None = None,
    verify_hash: bool = True,
) -> CacheHandle:
    """The cache for `fields`, harvested by `harvest(writer)` only if no valid one exists.

    `path` (user-given) is never rebuilt: a mismatch there is an error. An
    invalid cache at the automatic location is logged and rebuilt.
    """
    fields = {**fields, "format": FORMAT}
    if path is not None:
        path = Path(path)
        if reason := problem_with(path, fields, verify_hash):
            raise DataError(f"the activation cache {path} (sae.cache.path) cannot be used: {reason}. Fix: unset "
                            "sae.cache.path to harvest a matching cache automatically, or point it at one.")
        return CacheHandle(path, json.loads((path / MANIFEST_FILE).read_text()), harvested=False)

    final = Path(root) / content_key(fields)
    remove_stale_temps(Path(root))   # harvests killed mid-way, of any key
    with file_lock(final.with_suffix(".lock")):
        if final.exists():
            if (reason := problem_with(final, fields, verify_hash)) is None:
                log.info("reusing activation cache %s", final)
                return CacheHandle(final, json.loads((final / MANIFEST_FILE).read_text()), harvested=False)
            log.warning("activation cache %s is invalid (%s); harvesting it again", final, reason)
            shutil.rmtree(final)
        _build(final, fields, d_in, harvest)
        return CacheHandle(final, json.loads((final / MANIFEST_FILE).read_text()), harvested=True)


def _build(final: Path, fields: dict, d_in: int, harvest: Callable[[CacheWriter], None]) -> None:
    n, dtype = fields["n_tokens"], fields["dtype"]
    need = n * d_in * np.dtype(DTYPES[dtype]).itemsize
    final.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(final.parent).free
    if free < need * 1.05:
        raise DataError(f"the activation cache needs {need / 2**20:.1f} MiB but {final.parent} has "
                        f"{free / 2**20:.1f} MiB free. Fix: free space, lower sae.harvest_tokens, "
                        "use sae.cache.dtype=float16, or sae.source=stream (no cache).")
    fix = "lower sae.harvest_tokens or use sae.source=stream (no cache); nothing was kept"
    with atomic_dir(final, fix=fix) as tmp:   # the cache appears complete or not at all
        writer = CacheWriter(tmp / ACTS_FILE, n, d_in, dtype)
        with phases.timed("harvest"):
            harvest(writer)
        digest = writer.close()
        manifest = {"fields": fields, "d_in": d_in, "sha256": digest, "bytes": (tmp / ACTS_FILE).stat().st_size}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))


class CacheReader:
    """Row blocks of a cache's `.npy` by positional reads; memory use is one block."""

    def __init__(self, acts_path: str | Path):
        self.path = Path(acts_path)
        (self.n_rows, self.d), self.dtype, self.offset = read_header(self.path)
        self.row_bytes = self.d * self.dtype.itemsize

    def read(self, start: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
        count = min(count, self.n_rows - start)
        buf = out[:count] if out is not None else np.empty((count, self.d), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as f:
            view = memoryview(buf.reshape(-1).view(np.uint8))
            got = os.preadv(f.fileno(), [view], self.offset + start * self.row_bytes)
        if got != count * self.row_bytes:
            raise DataError(f"short read from {self.path} (file changed while training?)")
        return buf

    def blocks(self, block_rows: int, rng: np.random.Generator, rank: int = 0, world: int = 1) -> Iterator[np.ndarray]:
        """Every row once, in blocks of `block_rows` visited in random order; with `world` > 1
        processes sharing one rng seed, process `rank` gets every world-th block."""
        starts = rng.permutation(np.arange(0, self.n_rows, block_rows))[rank::world]
        buf = np.empty((min(block_rows, self.n_rows), self.d), dtype=self.dtype)
        for start in starts:
            yield self.read(int(start), block_rows, out=buf)
