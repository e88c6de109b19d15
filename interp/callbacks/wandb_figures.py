"""An analysis's output as W&B media: each PNG an image, each HTML page a W&B HTML panel, its
results a table, under `figures/<analysis>/<file stem>` and `figures/<analysis>/results`, so the
runs of a sweep line up figure by figure in the dashboard and every-N-steps analyses show their
evolution with the step slider."""

from __future__ import annotations

from pathlib import Path


def media(analysis: str, out_dir: str | Path, results: dict, since: float = 0.0) -> dict:
    """W&B objects for the files this analysis wrote into `out_dir` (modified at or after `since`)."""
    import wandb

    out_dir = Path(out_dir)
    fresh = [p for p in sorted(out_dir.rglob("*")) if p.is_file() and p.stat().st_mtime >= since]
    key = lambda p: f"figures/{analysis}/{p.relative_to(out_dir).with_suffix('').as_posix()}"
    logged = {key(p): wandb.Image(str(p)) for p in fresh if p.suffix == ".png"}
    logged |= {key(p): wandb.Html(p.read_text(encoding="utf-8"), inject=False) for p in fresh if p.suffix == ".html"}
    if results:
        logged[f"figures/{analysis}/results"] = wandb.Table(columns=["metric", "value"],
                                                            data=[[k, float(v)] for k, v in sorted(results.items())])
    return logged
