"""Runs and sweeps under the outputs folders, read from their files alone (no model is loaded).

A run directory is any folder with Hydra's `.hydra/`, a `config.yaml` or `checkpoints/`; a sweep is a
folder holding Hydra's `multirun.yaml` and its jobs. A run whose files are missing or unreadable is
listed with a `problem` instead of failing the whole listing (a run still training has no metrics.json).

Every path the explorer reads lies inside the outputs folders once symlinks are resolved (`inside`,
`require_inside`): a run whose checkpoint links to a file elsewhere is refused, never unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from interp.errors import RunDirError
from interp.run_dir import CONFIG_FILE, FIGURES_DIR, METRICS_FILE
from interp.sae import GROUP as SAE_GROUP  # the package init only: no torch

# The metrics worth a column on the start page, in this order, when a run has them.
KEY_METRICS = ("val/loss", "val/ppl", "val/acc", "val/exact_match", "val/explained_variance", "val/l0",
               "val/ce_loss_score", "val/mse")
FIGURE_SUFFIXES = (".png", ".html", ".md")
SWEEP_FILE = "multirun.yaml"
SAE_DIR = SAE_GROUP      # <run>/sae/: interp.sae.task.SAE_DIR (a module that imports torch), the same name
SAES_DIR = "saes"        # <run>/saes/<label>/: interp.sae.dictionaries.FOLDER (a run of several dictionaries)
# What loading a run reads (sae/ and saes/*/ with every file in them) and where the explorer keeps its caches
# (explorer/): each must resolve inside the roots.
RUN_FILES = (CONFIG_FILE, METRICS_FILE, "checkpoints", "checkpoints/last.ckpt", SAE_DIR, SAES_DIR, "explorer")
PATH_MAX, NAME_MAX = 4096, 255   # Linux's limits, in bytes


class BadPath(RunDirError):
    """A path parameter that is no path at all (empty, a NUL byte, too long, a symlink loop): 400."""


class Refused(RunDirError):
    """A path, or a file a run links to, outside the outputs folders (symlinks resolved): 403."""


def clip(text: str, n: int = 400) -> str:
    """`text` quoted for an error message, cut to `n` characters (a hostile value can be megabytes)."""
    return repr(text) if len(text) <= n else f"{text[:n]!r}... ({len(text)} characters)"


@dataclass
class RunInfo:
    path: Path                       # as found under its root (relative if the root is)
    task: str = "?"
    model: str = "?"
    data: str = "?"
    metrics: dict = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    problem: str | None = None       # why the run cannot be opened, or what is missing
    sweep: Path | None = None


@dataclass
class SweepInfo:
    path: Path
    jobs: list[RunInfo]
    reports: list[Path]              # comparison reports (`analyze.py compare`), when present


def is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in (".hydra", CONFIG_FILE, "checkpoints"))


def read_run(path: Path, sweep: Path | None = None, roots: list[Path] | None = None) -> RunInfo:
    """What the start page shows of one run; never raises (a broken run gets `problem`). With `roots`, a
    run whose files link outside them is not read at all."""
    info = RunInfo(path=path, sweep=sweep)
    if not path.is_dir():
        info.problem = "the directory is gone"
        return info
    if roots is not None:
        try:
            require_inside(path, roots)
        except RunDirError as e:
            info.problem = str(e)
            return info
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text()) or {}
        choices = (config.get("run_meta") or {}).get("choices") or {}
        info.task = choices.get("task") or config.get("task", {}).get("name", "?")
        info.model = choices.get("model") or config.get("model", {}).get("arch", "?")
        info.data = config.get("data", {}).get("name") or choices.get("data", "?")   # an SAE run: its base's
        if base := config.get("base"):   # an SAE run: which SAE on which model
            sae = config.get(SAE_GROUP) or {}
            what = (f"transcoder {sae.get('hook', '?')} -> {sae['target_hook']}" if sae.get("target_hook") else
                    f"SAE at {sae.get('hook', '?')}")
            info.model = f"{sae.get('architecture', '?')} {what} of {base.get('run_name', '?')}"
    except FileNotFoundError:
        info.problem = f"no {CONFIG_FILE}: half-written (the run never got past start-up)"
    except (OSError, yaml.YAMLError, AttributeError) as e:
        info.problem = f"{CONFIG_FILE} is unreadable ({type(e).__name__})"
    try:
        metrics = json.loads((path / METRICS_FILE).read_text())
        info.metrics = {k: metrics[k] for k in KEY_METRICS if k in metrics}
    except FileNotFoundError:
        info.problem = info.problem or f"no {METRICS_FILE}: still training, or stopped before the end"
    except (OSError, ValueError) as e:
        info.problem = info.problem or f"{METRICS_FILE} is unreadable ({type(e).__name__})"
    if info.problem is None and not (path / "checkpoints" / "last.ckpt").is_file():
        info.problem = "no checkpoints/last.ckpt: the model cannot be loaded"
    figures = path / FIGURES_DIR
    if figures.is_dir():
        info.figures = sorted(p for p in figures.rglob("*") if p.suffix in FIGURE_SUFFIXES and p.is_file())
    return info


def scan(roots: list[Path]) -> tuple[list[RunInfo], list[SweepInfo]]:
    """(runs outside sweeps, sweeps with their jobs) under `roots`, newest first."""
    runs, sweeps = [], []
    for root in roots:
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):
            here = Path(dirpath)
            dirnames.sort()
            if (here / SWEEP_FILE).is_file():
                jobs = [read_run(here / d, sweep=here, roots=roots) for d in dirnames if is_run_dir(here / d)]
                sweeps.append(SweepInfo(here, jobs, comparison_reports(here)))
                dirnames.clear()
            elif here != root and is_run_dir(here):
                runs.append(read_run(here, roots=roots))
                dirnames.clear()   # a run's own folders (figures, wandb, ...) hold no runs
            else:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    runs.sort(key=lambda r: str(r.path), reverse=True)
    sweeps.sort(key=lambda s: str(s.path), reverse=True)
    return runs, sweeps


def overrides_of(run: Path) -> str:
    """The Hydra overrides a run (a sweep's job) was started with, as one line ("" when not recorded)."""
    try:
        found = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return ""
    return " ".join(map(str, found)) if isinstance(found, list) else ""


def comparison_reports(sweep: Path) -> list[Path]:
    """Files in a sweep folder (or a `compare*` folder in it) that look like a comparison report."""
    found = [p for p in sweep.glob("compar*") if p.is_file() and p.suffix in FIGURE_SUFFIXES]
    for folder in (p for p in sweep.glob("compar*") if p.is_dir()):
        found += [p for p in folder.iterdir() if p.suffix in FIGURE_SUFFIXES and p.is_file()]
    return sorted(found)


def inside(path: str | Path, roots: list[Path]) -> Path:
    """`path` resolved, if it lies inside one of `roots` (symlinks followed); Refused otherwise, BadPath
    if it is no path at all."""
    text = str(path)
    if not text:
        raise BadPath("no path given. Fix: open a run listed on the start page (/run?path=<run directory>).")
    if "\0" in text:
        raise BadPath(f"the path {clip(text)} contains a NUL byte (%00), which no file name can hold. "
                      "Fix: open a run listed on the start page.")
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        raise BadPath(f"the path {clip(text)} is not valid text (a lone surrogate). Fix: send it as UTF-8.") from None
    if len(encoded) > PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise BadPath(f"the path {clip(text)} is longer than a file path can be ({PATH_MAX} bytes, {NAME_MAX} "
                      "per name). Fix: open a run listed on the start page.")
    try:
        resolved = Path(text).resolve()
    except (OSError, RuntimeError) as e:   # RuntimeError: a symlink loop
        raise BadPath(f"the path {clip(text)} cannot be resolved ({e}).") from None
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    raise Refused(f"{clip(text)} is outside the outputs folders ({', '.join(map(str, roots))}). "
                  "Fix: open a run listed on the start page.")


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    except OSError:
        return []


def require_inside(run: Path, roots: list[Path], _base: bool = False) -> None:
    """Refused if a file that loading `run` reads (config, metrics, checkpoint, sae/, saes/) is a symlink
    leading outside `roots`, or, for an SAE run, if its base run (whose checkpoint loading it unpickles)
    lies outside them: torch.load unpickles, so a checkpoint must never come from elsewhere."""
    in_sae = []
    for folder in (run / SAE_DIR, *_subfolders(run / SAES_DIR)):   # one dictionary, or several
        try:
            in_sae += [str(p.relative_to(run)) for p in folder.iterdir()] if folder.is_dir() else []
        except OSError:   # unreadable: loading it fails later, saying so
            pass
    for name in (*RUN_FILES, *in_sae):
        file = run / name
        if file.is_symlink() or file.exists():
            try:
                inside(file, roots)
            except BadPath as e:
                raise Refused(f"{run}/{name} cannot be read: {e}") from None
            except Refused:
                raise Refused(f"{run}/{name} is a link to {file.resolve()}, outside the outputs folders "
                              f"({', '.join(map(str, roots))}): the explorer loads nothing from elsewhere. "
                              "Fix: copy the file into the run instead of linking it.") from None
    base = None if _base else base_run_of(run)
    if base is not None:
        try:
            inside(base, roots)
        except (BadPath, Refused):
            raise Refused(f"{run} is an SAE run of the base run {base}, which is outside the outputs folders "
                          f"({', '.join(map(str, roots))}): the explorer loads nothing from elsewhere. Fix: serve "
                          "that folder too (analyze.py serve --root <its folder> ...).") from None
        require_inside(base, roots, _base=True)


def base_run_of(run: Path) -> Path | None:
    """The base run an SAE run's config names (base.run), or None (not an SAE run, a pretrained base, or no
    readable config: loading then fails, saying so)."""
    try:
        config = yaml.safe_load((run / CONFIG_FILE).read_text()) or {}
        base = (config.get("base") or {}).get("run")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return Path(str(base)) if base else None
