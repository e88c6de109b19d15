"""`compare(paths)`: the comparison report of a sweep (or of any runs), offline, from run directories.

Per task (runs of different tasks are compared separately): table.csv / table.md / table.html
(parameters that differ against final metrics), curves.png (training curves from the runs' own
logs), final.png (final metrics against the first numeric parameter that differs), and for SAE runs
pareto_l0_explained_variance.png and pareto_l0_ce_loss_score.png (and, on data=synthetic,
pareto_l0_synthetic_f1.png and pareto_l0_synthetic_mcc.png).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from interp.compare.figures import pareto_plots, plot_against_param, plot_curves
from interp.compare.runs import (
    DONE,
    UNKNOWN_TASK,
    by_task,
    dictionary_curves,
    differing,
    find_runs,
    label,
    read_runs,
)
from interp.compare.table import DEFAULT_METRICS, Table, metric_columns
from interp.errors import ConfigError


def default_out(paths: list[Path]) -> Path:
    from interp.compare.runs import is_run_dir

    if len(paths) == 1 and not is_run_dir(paths[0]):
        return paths[0] / "compare"                       # multirun/<sweep>/compare
    return Path("outputs") / "compare" / time.strftime("%Y-%m-%d/%H-%M-%S")


def _title(out: Path) -> str:
    return out.parent.name if out.name == "compare" else out.name   # the sweep's name


def _unique_names(runs) -> None:
    """Job numbers repeat across sweeps: then name runs by <sweep>/<job>."""
    if len({r.name for r in runs}) < len(runs):
        for r in runs:
            r.name = f"{r.path.parent.name}/{r.path.name}"


def _unique(labels: dict[str, str]) -> dict[str, str]:
    """Plot labels, one per run: runs that differ only in what labels leave out get their name added."""
    seen = Counter(labels.values())
    return {name: text if seen[text] == 1 else f"{text} [{name}]" for name, text in labels.items()}


def _skipped(runs) -> str:
    """The note on runs left out because nothing says what they ran."""
    return (f"Skipped, half-written (task unknown): {'; '.join(f'{r.name} ({r.note})' for r in runs)}."
            if runs else "")


def _incomplete(runs) -> str:
    """The note on a group's runs that are incomplete or half-written: why, one clause each."""
    noted = [r for r in runs if r.note and not r.error]
    if not noted:
        return ""
    unknown = "; parameters they lack are not counted as differences" if any(r.partial for r in noted) else ""
    return f"Incomplete: {'; '.join(f'{r.name} ({r.note})' for r in noted)}{unknown}."


def _counts(runs) -> str:
    return ", ".join(f"{n} {status}" for status, n in Counter(r.status for r in runs).items())


def compare(paths: list[str | Path], out: str | Path | None = None, metrics=DEFAULT_METRICS,
            wandb: bool = True) -> dict[str, dict]:
    """Write the report; return {task: {"table": Table, "files": {kind: path}, "left_out": str}}."""
    from interp.runs.history import curves

    paths = [Path(p) for p in paths]
    runs = [r for p in find_runs(paths) for r in read_runs(p)]
    _unique_names(runs)
    skipped = _skipped([r for r in runs if r.task == UNKNOWN_TASK])   # no config to place them by
    groups = by_task([r for r in runs if r.task != UNKNOWN_TASK])
    comparable = {task: group for task, group in groups.items() if len(group) > 1}
    if not comparable:
        found = ", ".join(f"{len(g)} run of task={t}" for t, g in groups.items()) or "no run with a config"
        raise ConfigError(f"nothing to compare: no two runs share a task ({found}). {skipped + ' ' if skipped else ''}"
                          "Fix: pass at least two runs of the same task (a sweep directory holds them).")
    out = Path(out) if out else default_out(paths)
    dirs = {task: out / task if len(comparable) > 1 else out for task in comparable}
    report = {}
    for task, group in comparable.items():
        left_out = "; ".join(
            f"{len(g)} run(s) of task={t} ({', '.join(r.name for r in g)}): "
            + (f"compared in {dirs[t]}" if t in dirs else "alone, nothing to compare with")
            for t, g in groups.items() if t != task)
        left_out = " ".join(filter(None, [f"Left out, another task: {left_out}." if left_out else "", skipped,
                                          _incomplete(group)]))
        task_dir = dirs[task]
        keys = differing(group)
        metric_cols = metric_columns(group, metrics)
        table = Table(group, keys, metric_cols)
        files = table.write(task_dir, f"{_title(out)}: task={task}", left_out)
        labels = _unique({r.name: label(r, keys) for r in group})
        run_curves = {labels[r.name]: dictionary_curves(curves(r.path), r) for r in group}
        if path := plot_curves(run_curves, task_dir / "curves.png", f"task={task}: training curves"):
            files["curves"] = path
        done = [r for r in group if r.status == DONE]
        if path := plot_against_param(done, keys, metric_cols, labels, task_dir / "final.png",
                                      f"task={task}: final metrics"):
            files["final"] = path
        files.update(pareto_plots([r.metrics for r in done], [labels[r.name] for r in done], task_dir,
                                  f"task={task}: sparsity against reconstruction"))
        report[task] = {"table": table, "files": files, "left_out": left_out, "counts": _counts(group)}
    if wandb:
        from interp.compare.wandb_summary import log_summary

        sections = {task: (r["table"], r["files"]) for task, r in report.items()}
        report_run = log_summary(runs, sections, out, f"compare-{_title(out)}")
        for r in report.values():
            r["files"]["wandb"] = report_run
    return report
