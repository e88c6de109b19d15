"""Figures of a comparison: overlaid training curves, and L0 Pareto plots for SAE sweeps."""

from __future__ import annotations

import math
import re
from pathlib import Path

# Curves worth a panel, best first; others follow alphabetically up to MAX_PANELS.
_FIRST_CURVES = ("train/loss", "val/loss", "val/l0", "val/explained_variance", "val/ce_loss_score", "val/acc")
_NOT_CURVES = ("lr-",)
_PER_HEAD = re.compile(r"/L\d+H\d+$")   # one panel per head is too many; the per-layer maxima stay
MAX_PANELS = 12
PARETO = {"explained_variance": "val/explained_variance", "ce_loss_score": "val/ce_loss_score",
          # data=synthetic: agreement with the ground-truth features (SAELens's SynthSAEBench scores)
          "synthetic_f1": "val/synthetic/f1", "synthetic_mcc": "val/synthetic/mcc"}
L0 = "val/l0"


def curve_keys(curves: dict[str, dict]) -> list[str]:
    """Metrics with at least two points in some run (one point is not a curve) that are not one constant
    in every run (dead features 0 throughout)."""
    keys = {k for c in curves.values() for k, points in c.items()
            if len(points) > 1 and not k.startswith(_NOT_CURVES) and not _PER_HEAD.search(k)}
    keys = {k for k in keys if len({v for c in curves.values() for _, v in c.get(k, [])}) > 1}
    ordered = [k for k in _FIRST_CURVES if k in keys] + sorted(keys - set(_FIRST_CURVES))
    return ordered[:MAX_PANELS]


def _colors(names) -> dict[str, str]:
    """One colour of matplotlib's cycle per name, the same in every panel."""
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def _panels(n: int, panel_height: float, extra_height: float = 0.0):
    """A figure of `n` panels, three to a row, the unused places blank: (figure, the n axes)."""
    from interp.viz import plt

    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, panel_height * rows + extra_height), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _log2_if_wide(ax, xs) -> None:
    """k = 4..64: doublings read better on a log axis."""
    if min(xs) > 0 and max(xs) / min(xs) >= 16:
        ax.set_xscale("log", base=2)


def plot_curves(curves: dict[str, dict], path: Path, title: str) -> Path | None:
    """One panel per metric, one line per run. `curves`: {run label: {metric: [(step, value)]}}."""
    from interp.viz import save_figure

    fig = curves_figure(curves, title)
    return None if fig is None else save_figure(fig, path)


def curves_figure(curves: dict[str, dict], title: str):
    """plot_curves' figure. Each run keeps one colour in every panel, also where other runs lack the metric
    (a 0-layer model has no layer-1 score), and the legend lists every run."""
    from matplotlib.lines import Line2D

    keys = curve_keys(curves)
    if not keys:
        return None
    colors = _colors(curves)
    fig, axes = _panels(len(keys), 3.0, 0.8)
    for ax, key in zip(axes, keys):
        for run_label, run_curves in curves.items():
            if points := run_curves.get(key):
                steps, values = zip(*points)
                ax.plot(steps, values, marker="." if len(points) < 20 else None, label=run_label,
                        color=colors[run_label])
        ax.set(title=key, xlabel="step")
    handles = [Line2D([], [], color=color, label=label) for label, color in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * math.ceil(len(handles) / 4), 1, 1))
    return fig


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto frontier for (L0, quality): lower L0 and higher quality are better; a
    point is on it when no other point has L0 <= its own and quality >= its own, one of them strictly."""
    return [i for i, (x, y) in enumerate(points)
            if not any((a <= x and b >= y) and (a < x or b > y) for a, b in points)]


def plot_pareto(points: list[tuple[float, float]], labels: list[str], metric: str, path: Path, title: str) -> Path:
    from interp.viz import plt, save_figure

    front = sorted(frontier(points), key=lambda i: points[i][0])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs, ys = zip(*points)
    ax.scatter(xs, ys, color="tab:gray", label="runs", zorder=2)
    ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="tab:red",
            zorder=1, label="Pareto frontier")
    ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], color="tab:red", s=60, zorder=3)
    for (x, y), text in zip(points, labels):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="L0 (active features per token)", ylabel=metric, title=title)
    _log2_if_wide(ax, xs)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, path)


def pareto_plots(runs_metrics: list[dict], labels: list[str], out_dir: Path, title: str) -> dict[str, Path]:
    """L0 against explained variance, CE recovered and (synthetic data) F1 and MCC against the true features,
    for the runs that report both."""
    paths = {}
    for name, key in PARETO.items():
        keep = [(m[L0], m[key], lab) for m, lab in zip(runs_metrics, labels)
                if all(math.isfinite(m.get(k, math.nan)) for k in (L0, key))]
        if keep:
            paths[f"pareto_{name}"] = plot_pareto([(x, y) for x, y, _ in keep], [lab for *_, lab in keep], key,
                                                  out_dir / f"pareto_l0_{name}.png", title)
    return paths


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def x_parameter(runs, params: list[str]) -> str | None:
    """The numeric parameter a sweep's result is drawn against: of those that differ, the one with the
    most distinct values (model.n_layers for model=transformer_0l,1l,2l; sae.k); ties go to the earlier
    (overridden keys come first)."""
    numeric = [k for k in params if all(_number(r.params.get(k)) for r in runs) and len({r.params[k] for r in runs}) > 1]
    return max(numeric, key=lambda k: len({r.params[k] for r in runs}), default=None)


def plot_against_param(runs, params: list[str], metrics: list[str], labels: dict, path: Path, title: str) -> Path | None:
    """Final metrics against the sweep's numeric parameter (`x_parameter`): a sweep's result as a
    curve, one line per value of the other differing overrides."""
    from interp.viz import save_figure

    x_key = x_parameter(runs, params)
    shown = [m for m in metrics if len({r.metrics.get(m) for r in runs}) > 1][:MAX_PANELS * 3 // 4]
    if x_key is None or not shown:
        return None
    # the x parameter, or the config group it belongs to (model=... for model.n_layers), does not name a line
    own = (f"{x_key}=", f"{x_key.split('.')[0]}=")
    series: dict[str, list] = {}
    for run in runs:
        rest = " ".join(p for p in labels[run.name].split() if not p.startswith(own)) or "runs"
        series.setdefault(rest, []).append(run)
    colors = _colors(series)
    xs = [r.params[x_key] for r in runs]
    fig, axes = _panels(len(shown), 3.2)
    for ax, metric in zip(axes, shown):
        for name, group in series.items():
            points = sorted((r.params[x_key], r.metrics[metric]) for r in group if metric in r.metrics)
            if points:
                ax.plot(*zip(*points), marker="o", color=colors[name], label=name)
        ax.set(title=metric, xlabel=x_key)
        _log2_if_wide(ax, xs)
    if len(series) > 1:
        axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)
