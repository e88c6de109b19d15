"""File plumbing shared by every layer: atomic writes, hashes, locks, content keys.

Every file and folder interp writes into a run or a cache is written as a temporary sibling (same
folder, so the same filesystem), flushed and fsynced, then renamed over the target: whatever kills
the process, and even a full disk, the old file stays whole until the new one is complete (the rule
SQLite and PostgreSQL keep). Temporaries are named `.<target>.tmp-<host>-<pid>-<random>`, so a later
write of the same target removes those of dead processes on this host instead of leaving them forever.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from interp.errors import DiskFull

log = logging.getLogger(__name__)

FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_HOST = socket.gethostname().replace("/", "_")
_TEMP = re.compile(r"^\..+\.tmp-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")
_LEGACY_TEMP = re.compile(r"^[^.].*\.tmp-(?P<pid>\d+)$")   # activation caches of earlier versions: <key>.tmp-<pid>/


def temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-{_HOST}-{os.getpid()}-"


def mount_point(path: str | Path) -> Path:
    """The mount point of the filesystem that holds `path` (or would, for a path not yet created)."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def disk_full(error: OSError, path: str | Path, fix: str = "") -> DiskFull:
    """The one message for a write that ran out of space, naming the filesystem that is full; `fix`
    continues "Fix: free space on <mount>, ..." (default: "or write to another disk")."""
    mount = mount_point(Path(path).parent)
    what = "no space left" if error.errno != errno.EFBIG else "file too large"
    return DiskFull(f"{what} on {mount} while writing {path} ({error.strerror}); files written before are "
                    f"unchanged. Fix: free space on {mount}, {fix or 'or write to another disk'}.")


@contextlib.contextmanager
def full_disk_is_an_error(path: str | Path, fix: str = "") -> Iterator[None]:
    """Turn ENOSPC / EDQUOT / EFBIG while writing `path` into `disk_full(...)`, a one-line user error."""
    try:
        yield
    except Exception as e:
        if (cause := _full_disk_cause(e)) is not None:
            raise disk_full(cause, path, fix) from e
        raise


def _full_disk_cause(error: BaseException | None) -> OSError | None:
    """The full-disk OSError behind `error`, if any (torch.save re-raises one as a RuntimeError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True


def remove_stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporaries (of target `name`, or of all) in `folder` that dead processes of this
    host left (a kill mid-write); return what was removed. Those of other hosts (a shared filesystem)
    may be live: they are named in a warning, not touched."""
    removed = []
    try:
        pattern = "*" if name is None else glob_escape(name)
        candidates = [*folder.glob(f".{pattern}.tmp-*"), *folder.glob(f"{pattern}.tmp-*")]
    except OSError:
        return removed
    for temp in candidates:
        match = _TEMP.search(temp.name) or _LEGACY_TEMP.search(temp.name)
        if match is None:
            continue
        host = match.groupdict().get("host") or _HOST
        if host != _HOST:
            log.warning("left alone %s: a temporary file of a process on %s (remove it if that process is gone)",
                        temp, host)
            continue
        if _alive(int(match["pid"])):
            continue
        shutil.rmtree(temp, ignore_errors=True) if temp.is_dir() else temp.unlink(missing_ok=True)
        removed.append(temp)
    if removed:
        log.warning("removed %d temporary file(s) of killed processes: %s", len(removed), ", ".join(map(str, removed)))
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def fsync_path(path: str | Path) -> None:
    """fsync a file, or a folder: a rename in a folder is durable once the folder is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", fix: str = "") -> Iterator[IO]:
    """Write `path` through a temporary file in the same folder, fsynced, then renamed into place:
    a crash or a full disk mid-write never leaves a truncated file, and the old file (if any) stays
    whole until the new one is complete. The file is world-readable (0644), as a shared cache needs.
    A full disk raises DiskFull (`fix`: what the message suggests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    with full_disk_is_an_error(path, fix):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path))
        try:
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)   # mkstemp makes it owner-only
            os.replace(tmp, path)
            fsync_path(path.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, fix: str = "") -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success its files are fsynced and it is
    renamed to `path`. An existing `path` is replaced: it is renamed aside first (a kill between the
    two renames leaves it as `.<name>.old-...` beside), then removed. On failure nothing is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    with full_disk_is_an_error(path, fix):
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(path)))
        try:
            yield tmp
            for file in tmp.rglob("*"):
                if file.is_file():
                    fsync_path(file)
            os.chmod(tmp, 0o755)   # mkdtemp makes it owner-only
            fsync_path(tmp)
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
                os.replace(path, old / path.name)
            os.replace(tmp, path)
            fsync_path(path.parent)
            if old is not None:
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_key(parts, length: int = 20) -> str:
    """Stable short hash of JSON-serialisable `parts`: the name of a cache entry that depends on them."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


@contextlib.contextmanager
def file_lock(lock_path: str | Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if missing); other holders wait."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that holds %s", lock_path)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
