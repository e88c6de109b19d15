"""What `analyze.py` sends to W&B: the figures and metrics of analyses run on a saved run.

A finished W&B run cannot be appended to offline (wandb ignores `resume` there), so each `analyze.py`
call that ran an analysis logs one new run beside the training run: the same project and group,
job_type "analyze", named "<run name>/analyze", its config the analysed run's config plus
`analyzed_run` (the directory) and `analyzed_wandb_id`. It is written into the run's own `wandb/`
folder, so the run's `wandb sync <run>/wandb/offline-run-*` uploads it too. Its keys are the training
callback's (`figures/<analysis>/<file>`, `analysis/<analysis>/<metric>`), logged at the checkpoint's
global step, so in the dashboard the analyze runs of a sweep line up figure by figure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from interp.callbacks.wandb_figures import media
from interp.run_dir import wandb_logger
from interp.runs.wandb_offline import ANALYZE_JOB, read_run_info


@dataclass
class Analysed:
    """One analysis that ran: its name, folder, results and the time it started (to pick its fresh files)."""

    name: str
    out_dir: Path
    results: dict
    started: float


@dataclass
class Target:
    """Where an analyze run goes: the analysed run's W&B identity and config."""

    run_dir: Path
    config: dict
    step: int
    offline: bool = True
    identity: dict = field(default_factory=dict)   # id, project, group, name, tags of the training run


def target_of(run_dir: str | Path, config: dict, step: int) -> Target | None:
    """The analyze run's target for a run directory, or None when the run did not log to W&B."""
    spec = wandb_logger(config)
    if spec is None:
        return None
    run_dir = Path(run_dir)
    records = sorted(run_dir.glob("wandb/*run-*/run-*.wandb"))   # offline-run-* and (online) run-*
    trained = [info for info in map(read_run_info, records) if info and info["job_type"] != ANALYZE_JOB]
    identity = trained[0] if trained else {"id": "", "project": spec.get("project") or "interp",
                                           "group": spec.get("group") or "", "name": spec.get("name") or run_dir.name,
                                           "tags": list(spec.get("tags") or [])}
    return Target(run_dir, config, step, offline=bool(spec.get("offline", True)), identity=identity)


def comparison_target(runs: list, root: Path, name: str = "feature_layers") -> Target | None:
    """The W&B target of a comparison of several runs (feature_layers): a run in the first compared run's
    project and group, at `root`, its config the compared runs; None when the first did not log to W&B."""
    from dataclasses import replace

    first = target_of(runs[0].run_dir, runs[0].config, 0)
    if first is None:
        return None
    label = first.identity["group"] or Path(root).name
    return replace(first, run_dir=Path(root), config={"runs": [str(run.run_dir) for run in runs]},
                   identity=first.identity | {"id": "", "name": f"{label}/{name}"})


def log_analyses(target: Target, analysed: list[Analysed]) -> Path | None:
    """One W&B run holding what `analysed` wrote and returned; returns its local folder."""
    if not analysed:
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    who = target.identity
    run = wandb.init(project=who["project"] or "interp", group=who["group"] or None, job_type=ANALYZE_JOB,
                     name=f"{who['name']}/{ANALYZE_JOB}", tags=[*who["tags"], ANALYZE_JOB], dir=str(target.run_dir),
                     mode="offline" if target.offline else "online",
                     config=target.config | {"analyzed_run": str(target.run_dir), "analyzed_wandb_id": who["id"]})
    with run:
        data = {"trainer/global_step": target.step}
        for a in analysed:
            data |= {f"analysis/{a.name}/{k}": float(v) for k, v in a.results.items()}
            data |= media(a.name, a.out_dir, a.results, since=a.started)
            for path in sorted(Path(a.out_dir).glob("*.json")):   # the analysis's data files (graph.json, ...)
                if path.stat().st_mtime >= a.started:
                    run.save(str(path), base_path=str(Path(a.out_dir).parent), policy="now")
        run.log(data, step=target.step)
        folder = Path(run.dir).parent
    return folder
