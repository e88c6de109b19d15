"""The runs of a comparison, read from their directories alone: status, parameters, final metrics.

Status follows the sweep contract: metrics.json with `"status": "failed"` (and `error`, `error_type`)
is a failed job; no metrics.json is an incomplete one (still running, or killed); metrics.json
without a status (runs written before statuses existed) or with `"status": "done"` is done.

A half-written run (config.yaml missing, cut short or unreadable; metrics.json unreadable) is incomplete
unless its metrics say otherwise, with a note saying why; its parameters then come from Hydra's .hydra/
copy, and a key missing there is unknown, not a difference from the other runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path

import yaml

from interp.errors import ConfigError
from interp.run_dir import (
    CONFIG_FILE,
    METRICS_FILE,
    STATUS_DONE,
    STATUS_FAILED,
    flat_config,
    read_metrics,
)

DONE, FAILED, INCOMPLETE = STATUS_DONE, STATUS_FAILED, "incomplete"   # INCOMPLETE: no (readable) metrics.json yet
UNKNOWN_TASK = "?"   # no readable config: the run cannot be placed among the others
# Config keys that differ between runs without being parameters of the experiment.
_NOT_PARAMS = ("run_meta", "paths", "logger", "hydra", "run_name", "ckpt_path")
# ... nor are folders derived from the run's own directory or the machine (checkpoint dirpath,
# cache roots), unless the command line set them.
_FOLDER_KEY = re.compile(r"(^|\.)(\w*_dir|dirpath|root|root_dir|cache_dir)$")
_FIX = "Fix: pass a sweep directory (multirun/<date>/<time>_<name>) or run directories (outputs/<date>/<time>_<name>)."


@dataclass
class Run:
    path: Path
    name: str                      # the job number in a sweep, else the directory's name
    status: str
    error: str = ""
    error_type: str = ""
    task: str = "?"
    params: dict = field(default_factory=dict)     # flattened config + group choices (`model`, `sae`, ...)
    overrides: list = field(default_factory=list)  # the command line's overrides, e.g. ["sae.k=16"]
    metrics: dict = field(default_factory=dict)
    note: str = ""                 # why it is incomplete: no or unreadable metrics.json, half-written config
    partial: bool = False          # params not from a whole config.yaml: a missing key is unknown, not absent
    dictionary: str = ""           # one dictionary of a run of several (its metrics are that one's) ...
    siblings: tuple = ()           # ... and every dictionary of that run


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in (CONFIG_FILE, METRICS_FILE, ".hydra/overrides.yaml"))


def _job_order(path: Path):
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories under each path: the path itself if it is a run, else its job folders (a sweep),
    else the sweeps below it (multirun/<date>)."""
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ConfigError(f"{str(path)!r} {'is not a directory' if path.exists() else 'does not exist'}. {_FIX}")
        if is_run_dir(path):
            found.append(path)
            continue
        level = [path]
        for _ in range(2):   # <sweep>/<job>, or <date>/<sweep>/<job>
            level = sorted((c for d in level for c in d.iterdir() if c.is_dir() and c.name != "compare"), key=_job_order)
            runs = [c for c in level if is_run_dir(c)]
            if runs:
                found += runs
                break
        else:
            raise ConfigError(f"{str(path)!r} holds no runs (no job folder with {CONFIG_FILE}, {METRICS_FILE} or "
                              f".hydra/). {_FIX}")
    return list(dict.fromkeys(p.resolve() for p in found))


def _load_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def _config_problem(path: Path, config) -> str:
    """Why `path`'s config.yaml (parsed as `config`) is not the whole config train.py writes, or ""."""
    if not (path / CONFIG_FILE).is_file():
        return f"no {CONFIG_FILE}"
    if not isinstance(config, dict):
        return f"{CONFIG_FILE} is not a YAML mapping"
    if not isinstance(config.get("run_meta"), dict):
        return f"{CONFIG_FILE} is cut short (no run_meta)"
    return ""


def flatten(config: dict) -> dict:
    """The config's leaves by dotted key; lists as text (table cells), unresolved `${...}` left out
    (Hydra's own copy of a failed job's config: their values are unknown)."""
    return {k: str(v) if isinstance(v, list) else v for k, v in flat_config(config).items()
            if not (isinstance(v, str) and "${" in v)}


def _config(path: Path) -> tuple[dict, dict, list, str]:
    """(config, group choices, overrides, why it is partial or ""): the resolved config.yaml if train.py
    wrote it whole, else Hydra's .hydra/ copies (written before the job ran, so failed jobs have them too)."""
    config = _load_yaml(path / CONFIG_FILE)
    if not (problem := _config_problem(path, config)):
        meta = config["run_meta"]
        return config, meta.get("choices") or {}, list(meta.get("overrides") or []), ""
    config = _load_yaml(path / ".hydra" / "config.yaml")
    hydra = (_load_yaml(path / ".hydra" / "hydra.yaml") or {}).get("hydra", {})
    choices = {k: v for k, v in (hydra.get("runtime", {}).get("choices") or {}).items() if not k.startswith("hydra")}
    overrides = _load_yaml(path / ".hydra" / "overrides.yaml") or []
    if not isinstance(config, dict):
        return {}, choices, list(overrides), f"{problem}; no readable .hydra/config.yaml"
    return config, choices, list(overrides), problem


def read_runs(path: Path) -> list[Run]:
    """The run at `path`; a run of several dictionaries (interp.sae.dictionaries) as one Run per dictionary."""
    run = read_run(path)
    runs = per_dictionary(run, _config(path)[0].get("dictionaries") or [])
    if len(runs) > 1 and run.status == DONE:   # a dictionary that stopped on a NaN loss is a failed job
        try:
            failed = read_metrics(path).get("failed_dictionaries") or {}
        except (OSError, ValueError):
            failed = {}
        for r in runs:
            if r.dictionary in failed:
                r.status, r.error, r.error_type = FAILED, str(failed[r.dictionary]), "TrainingDiverged"
    return runs


def per_dictionary(run: Run, dictionaries: list[dict]) -> list[Run]:
    """One Run per dictionary: its `<metric>/<label>` keys as `<metric>`, the run-wide keys kept, its hooks
    as parameters; named `<run>/<label>`."""
    if not dictionaries:
        return [run]
    labels = tuple(str(d["label"]) for d in dictionaries)
    params = {k: v for k, v in run.params.items() if k not in ("dictionaries", "sae.hook", "sae.target_hook")}
    out = []
    for d in dictionaries:
        metrics = _as_dictionary(run.metrics, str(d["label"]), labels)
        if f"val/mse/{d['label']}" in run.metrics:   # a one-dictionary run's val/loss is its MSE (the run's: the mean)
            metrics["val/loss"] = metrics["val/mse"]
        out.append(dataclass_replace(run, name=f"{run.name}/{d['label']}", dictionary=str(d["label"]), siblings=labels,
                                     params={**params, "dictionary": d["label"], "sae.hook": d["hook"],
                                             "sae.target_hook": d["target_hook"], "sae.d_sae": d["d_sae"],
                                             **(d.get("settings") or {})},
                                     metrics=metrics))
    return out


def _as_dictionary(keyed: dict, label: str, labels: tuple) -> dict:
    """One dictionary's share of a run's `keyed` values: its `<key>/<label>` as `<key>`, the run-wide keys kept,
    the other dictionaries' left out."""
    shared = {k: v for k, v in keyed.items() if not any(k.endswith(f"/{lab}") for lab in labels)}
    return shared | {k[:-len(label) - 1]: v for k, v in keyed.items() if k.endswith(f"/{label}")}


def dictionary_curves(found: dict, run: Run) -> dict:
    """A run's logged curves as its dictionary's (see _as_dictionary); a run of one dictionary's as they are."""
    return _as_dictionary(found, run.dictionary, run.siblings) if run.dictionary else found


def read_run(path: Path) -> Run:
    config, choices, overrides, problem = _config(path)
    overridden = {override_key(o) for o in overrides}
    params = {k: v for k, v in {**flatten(config), **choices}.items()
              if v is not None and k.split(".")[0] not in _NOT_PARAMS
              and (k in overridden or not _FOLDER_KEY.search(k))}
    task = str((config.get("task") or {}).get("name", UNKNOWN_TASK))
    run = Run(path=path, name=path.name, status=INCOMPLETE, task=task, params=params, overrides=overrides,
              partial=bool(problem))
    try:
        metrics = read_metrics(path)
    except FileNotFoundError:
        run.note = "; ".join(filter(None, [problem, f"no {METRICS_FILE}"]))
        return run
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:   # cut short: being written, or a copy
        what = "is not valid JSON" if isinstance(e, ValueError) else f"is unreadable ({e.strerror})"
        run.note = "; ".join(filter(None, [problem, f"{METRICS_FILE} {what}"]))
        return run
    if not isinstance(metrics, dict):
        run.note = "; ".join(filter(None, [problem, f"{METRICS_FILE} holds no metrics"]))
        return run
    run.note = problem
    run.status = str(metrics.pop("status", DONE))
    run.error = " ".join(str(metrics.pop("error", "")).split())      # one line
    run.error_type = str(metrics.pop("error_type", ""))
    run.metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return run


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def differing(runs: list[Run]) -> list[str]:
    """Parameters whose values are not the same in every run: overridden keys first (in command-line
    order), then group choices, then the rest alphabetically. A key a partial run lacks is unknown there,
    not different."""
    keys = {k for r in runs for k in r.params}
    differ = {k for k in keys if len({repr(r.params.get(k)) for r in runs if k in r.params or not r.partial}) > 1}
    order = [override_key(o) for r in runs for o in r.overrides]
    order = list(dict.fromkeys(k for k in order if k in differ))
    choices = sorted(k for k in differ if "." not in k and k not in order)
    return order + choices + sorted(differ - set(order) - set(choices))


def label(run: Run, keys: list[str]) -> str:
    """A run's name in plots: its differing overrides (`sae.k=16`), else its differing parameters,
    else its folder name."""
    parts = [o.lstrip("+~") for o in run.overrides if override_key(o) in keys]
    parts = parts or [f"{k}={run.params[k]}" for k in keys[:3] if k in run.params]
    return " ".join(parts) or run.name


def by_task(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.task, []).append(run)
    return groups
