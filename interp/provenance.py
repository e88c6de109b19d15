"""What code and packages a run was made with, recorded in every run's run_meta so that
`train.py --reproduce` can say why metrics might differ."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The stack whose versions change numbers (distribution names, as pip spells them).
PACKAGES = ("torch", "pytorch-lightning", "sae-lens", "transformer-lens", "hydra-core", "wandb")
_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_ROOT), *args], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict:
    """interp's package version, and its git commit (+ whether tracked files differ) when run from a checkout."""
    from interp import __version__

    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"interp": __version__, "git_commit": commit, "git_dirty": dirty}


def package_versions() -> dict:
    def one(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {name: one(name) for name in PACKAGES}


def versions() -> dict:
    return {"code": code_version(), "packages": package_versions()}


def differences(recorded: dict, current: dict) -> list[str]:
    """`what: recorded -> now` for each code or package version that differs."""
    out = []
    for section in ("code", "packages"):
        old, new = recorded.get(section) or {}, current.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                out.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    return out
