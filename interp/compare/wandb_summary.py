"""The comparison as one offline W&B run in the sweep's group, so the dashboard (after
`wandb sync`) shows the same table and figures beside the sweep's jobs."""

from __future__ import annotations

import os
from pathlib import Path

from interp.compare.runs import Run
from interp.compare.table import Table


def sweep_identity(runs: list[Run]) -> tuple[str, str]:
    """(project, group) the sweep's jobs logged to; without W&B runs, the sweep folder's name."""
    from interp.runs.wandb_offline import offline_runs, run_info

    for run in runs:
        for wandb_file in offline_runs(run.path):
            info = run_info(wandb_file)
            if info["group"]:
                return info["project"] or "interp", info["group"]
    return "interp", runs[0].path.parent.name


def log_summary(runs: list[Run], sections: dict[str, tuple[Table, dict[str, Path]]], out_dir: Path,
                name: str) -> Path:
    """One offline run (job_type=compare) holding, per task, the table and every figure; returns its folder."""
    import wandb

    project, group = sweep_identity(runs)
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, group=group, job_type="compare", name=name, dir=str(out_dir),
                     mode="offline", config={"runs": [str(r.path) for r in runs]})
    with run:
        data = {}
        for task, (table, figures) in sections.items():
            rows = [[_cell(v, i, table) for i, v in enumerate(row)] for row in table.rows]
            data[f"{task}/table"] = wandb.Table(columns=table.columns, data=rows)
            data.update({f"{task}/{key}": wandb.Image(str(path)) for key, path in figures.items()
                         if path.suffix == ".png"})
            data[f"{task}/table_html"] = wandb.Html(table.html(f"{group}: {task}"))
        run.log(data)
        folder = Path(run.dir).parent
    return folder


def _cell(value, column: int, table: Table):
    """W&B tables want one type per column: parameters and text as strings, metrics as floats."""
    is_metric = 2 + table.n_params <= column < len(table.columns) - 1
    if is_metric:
        return None if value is None else float(value)
    return "" if value is None else str(value)
