"""Ground-truth scoring: how well SAE features, and a layer's own neurons, line up with the
arithmetic task's true variables.

For every value v of every candidate variable (a raw input such as col1[2] = 6, ptr1 = 2, the
selected digit a = 7, the conjunction (ptr1, a) = (2, 7), ...) the indicator 1[var == v] over N
fresh test rows is correlated (Pearson) with every unit's activation. Per variable we report the
mean over its values of the best unit's correlation, and the fraction of values with a dedicated
unit (best correlation >= 0.9). A monosemantic dictionary has, for each value, one unit near 1.
The SAE's features are scored at its hook; the MLP's neurons at every hook, side by side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import NotApplicable
from interp.files import atomic_write_text

DEDICATED = 0.9
# The variables the goal is judged on: SAE features should beat the neurons on their mean.
TASK_VARIABLES = ("ptr1", "ptr2", "a", "b", "ptr1_a", "ptr2_b")
SUMMARY_VARIABLES = ("raw", *TASK_VARIABLES, "a_b", "target")   # "raw": all ten raw inputs together


def pearson_columns(x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Correlation of every column of x [N, F] with every column of y [N, V] -> [F, V] (0 where constant).
    float64, `chunk` columns of x at a time (all of a [16k, 2048] matrix in float64 is 256 MB)."""
    y = y.double() - y.double().mean(0)
    y = y / y.norm(dim=0).clamp(min=1e-30)
    out = []
    for block in x.split(chunk, dim=1):
        block = block.double() - block.double().mean(0)
        norm = block.norm(dim=0)[:, None]
        out.append(torch.where(norm > 0, (block.T @ y) / norm.clamp(min=1e-30), 0.0).float())
    return torch.cat(out)


def raw_names(n_inputs: int) -> list[str]:
    """Names of the raw input positions: col1[0..n-1], ptr1, col2[0..n-1], ptr2."""
    n = (n_inputs - 2) // 2
    return [*(f"col1[{i}]" for i in range(n)), "ptr1_in", *(f"col2[{i}]" for i in range(n)), "ptr2_in"]


def task_variables(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every candidate variable of rows `x` [N, 2n+2]: the raw inputs, ptr1, ptr2, a = col1[ptr1],
    b = col2[ptr2], the pairs (ptr1, a), (ptr2, b), (a, b) (value = 10 * first + second) and the
    target |a - b|. With one-hot inputs the first layer can only form `a` through conjunctions
    "ptr1 = i and col1[i] = v", so a dictionary may well code those rather than `a` itself."""
    from interp.data.arithmetic import ground_truth

    t = ground_truth(x)
    raw = {name: x[:, i] for i, name in enumerate(raw_names(x.shape[1]))}
    return {**raw, "ptr1": t["ptr1"], "ptr2": t["ptr2"], "a": t["a"], "b": t["b"],
            "ptr1_a": t["ptr1"] * 10 + t["a"], "ptr2_b": t["ptr2"] * 10 + t["b"], "a_b": t["a"] * 10 + t["b"],
            "target": t["target"].long()}


def is_raw(variable: str) -> bool:
    return variable.startswith(("col1[", "col2[")) or variable.endswith("_in")


@dataclass
class Scores:
    """Correlations of every unit with every (variable, value) indicator."""

    values: list[tuple[str, int]]   # one (variable, value) per column of corr
    corr: torch.Tensor              # [units, values]

    def per_value(self) -> list[dict]:
        """One row per (variable, value): the best unit and its correlation."""
        best, unit = self.corr.max(dim=0)
        return [{"variable": var, "value": v, "unit": int(u), "corr": float(c)}
                for (var, v), u, c in zip(self.values, unit.tolist(), best.tolist())]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per variable (raw inputs pooled as "raw"): mean best correlation and the fraction of values
        with a dedicated unit; plus "task": the mean over TASK_VARIABLES' means."""
        groups: dict[str, list[float]] = {}
        for row in self.per_value():
            groups.setdefault("raw" if is_raw(row["variable"]) else row["variable"], []).append(row["corr"])
        out = {var: {"mean": sum(c) / len(c), "dedicated": sum(x >= DEDICATED for x in c) / len(c)}
               for var, c in groups.items()}
        out["task"] = {k: sum(out[v][k] for v in TASK_VARIABLES) / len(TASK_VARIABLES) for k in ("mean", "dedicated")}
        return out

    def unit_labels(self) -> list[tuple[str, float]]:
        """Each unit's ground-truth label: the variable value it best matches, e.g. ("ptr1_a=27", 0.93)."""
        best, col = self.corr.max(dim=1)
        names = [var.removesuffix("_in") for var, _ in self.values]   # the raw pointer input is ptr1 / ptr2
        return [(f"{names[c]}={self.values[c][1]}", float(b)) for c, b in zip(col.tolist(), best.tolist())]


@torch.no_grad()
def score(acts: torch.Tensor, variables: dict[str, torch.Tensor]) -> Scores:
    """Scores of the units (columns) of `acts` [N, units] against every value of every variable."""
    values, indicators = [], []
    for name, v in variables.items():
        levels = torch.unique(v)
        values += [(name, int(level)) for level in levels.tolist()]
        indicators.append(v[:, None] == levels[None, :])
    return Scores(values, pearson_columns(acts, torch.cat(indicators, dim=1)))


def require_arithmetic(model, datamodule, name: str):
    """The test rows of the arithmetic task, or NotApplicable for any other model."""
    test_ds = getattr(datamodule, "test_ds", None)
    if test_ds is None or "x" not in getattr(test_ds, "arrays", {}) or not hasattr(model, "n_inputs"):
        raise NotApplicable(f"{name} scores against the arithmetic task's true variables; "
                            "this run is not the arithmetic MLP (experiment=arithmetic_mlp) or an SAE on it")
    return torch.as_tensor(test_ds.arrays["x"])


@torch.no_grad()
def hook_activations(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every hook of the MLP on rows `x`, each as [N, units] (hook_out as one unit)."""
    _, cache = model.run_with_cache(x.to(next(model.parameters()).device))
    return {name: (a[:, None] if a.ndim == 1 else a).float().cpu() for name, a in cache.items()}


def feature_activations(model, sae, x: torch.Tensor) -> torch.Tensor:
    from interp.sae.harvest import feature_acts

    return feature_acts(model, sae, x).float().cpu()


def summary_table(summaries: dict[str, dict]) -> str:
    """Markdown: variables x sources (each cell: mean best correlation / fraction dedicated)."""
    sources = list(summaries)
    lines = ["| variable | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for var in (*SUMMARY_VARIABLES, "task"):
        cells = [f"{s[var]['mean']:.3f} / {s[var]['dedicated']:.2f}" if var in s else "" for s in summaries.values()]
        lines.append(f"| {var} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@torch.no_grad()
def run(model, datamodule, out_dir, *, sae=None, n_samples: int = 16384) -> dict[str, float]:
    """alignment.md (variables x [neurons at every hook, SAE features]), alignment.json (also every
    value's best unit) and, as metrics, `<source>/<variable>/mean|dedicated` with source `features` (the SAE's)
    or `neurons/<hook>`, and `sae_minus_neurons`: the SAE's task mean minus its hook's neurons'."""
    x = require_arithmetic(model, datamodule, "alignment")[:n_samples]
    truth = task_variables(x)
    scores = {f"neurons/{hook}": score(acts, truth) for hook, acts in hook_activations(model, x).items()}
    if sae is not None:
        scores["features"] = score(feature_activations(model, sae, x), truth)
    summaries = {source: s.summary() for source, s in scores.items()}
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "alignment.json", json.dumps(
        {"n_samples": len(x), "summary": summaries, "values": {k: s.per_value() for k, s in scores.items()}}) + "\n")
    header = f"Best Pearson correlation per value, mean per variable / fraction >= {DEDICATED}, {len(x)} test rows.\n\n"
    atomic_write_text(out_dir / "alignment.md", header + summary_table(summaries) + "\n")
    results = {f"{source}/{var}/{k}": v for source, summary in summaries.items()
               for var, stats in summary.items() for k, v in stats.items()}
    if sae is not None:
        hook = sae.cfg.metadata.hook_name
        results["sae_minus_neurons"] = summaries["features"]["task"]["mean"] - summaries[f"neurons/{hook}"]["task"]["mean"]
    return results
