"""Hugging Face hub access that fails fast when the hub cannot be reached.

With no network, `huggingface_hub` retries each request for ~30 s before it
falls back to its cache (or fails). Loaders here probe the hub once (a HEAD
request, milliseconds when DNS or the connection fails) and, when it is
unreachable, either fail at once (nothing cached) or load from the cache in
offline mode, so no request is retried.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from huggingface_hub import constants, try_to_load_from_cache


def offline_requested() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, now or when huggingface_hub was imported."""
    now = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper()
    return constants.HF_HUB_OFFLINE or now in {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when offline mode is requested or one HEAD request to the hub endpoint fails."""
    if offline_requested():
        return False
    from huggingface_hub import get_session  # honours HTTP(S)_PROXY like every hub request

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # noqa: BLE001 - any transport error means "not reachable"
        return False
    return True


@contextlib.contextmanager
def offline_mode():
    """Hub offline for the block: huggingface_hub and transformers read this flag at call time,
    so requests go straight to the cache instead of retrying (same effect as HF_HUB_OFFLINE=1). `datasets`
    keeps its own copy of the flag, set too where it is loaded."""
    datasets_config = getattr(sys.modules.get("datasets"), "config", None)
    before = constants.HF_HUB_OFFLINE, getattr(datasets_config, "HF_HUB_OFFLINE", None)
    constants.HF_HUB_OFFLINE = True
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before[0]
        if datasets_config is not None:
            datasets_config.HF_HUB_OFFLINE = before[1]


def cached_path(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """The file's path in the local HF cache (snapshot of `revision`, default main), or None."""
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def snapshot_revision(path: Path) -> str | None:
    """The commit hash of a cached file's snapshot (.../snapshots/<hash>/...), or None outside the cache."""
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def cache_location() -> str:
    return constants.HF_HUB_CACHE



def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of a model repo at `revision` (branch, tag or commit; default main), or None."""
    from huggingface_hub.file_download import repo_folder_name

    repo = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    ref = repo / "refs" / (revision or "main")
    snapshot = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision or "main")
    return snapshot if snapshot.is_dir() else None
