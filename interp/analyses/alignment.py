"""How well SAE features line up with the arithmetic task's ground-truth variables.

For every value v of every variable (e.g. ptr1 = 2, or the selected digit a = 7)
the indicator 1[var == v] over N test rows is correlated (Pearson) with every
feature's activation; we report the best feature and its correlation. A
monosemantic dictionary has, for each value, one feature near 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.errors import NotApplicable


def pearson_columns(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correlation of every column of x [N, F] with every column of y [N, V] -> [F, V] (0 where constant)."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    denom = x.norm(dim=0)[:, None] * y.norm(dim=0)[None, :]
    return torch.where(denom > 0, (x.T @ y) / denom.clamp(min=1e-30), torch.zeros(()).double())


@torch.no_grad()
def variable_alignment(feature_acts: torch.Tensor, variables: dict[str, torch.Tensor]) -> list[dict]:
    """One row per (variable, value): the best-correlated feature and its correlation."""
    rows = []
    for name, values in variables.items():
        levels = torch.unique(values)
        indicators = (values[:, None] == levels[None, :]).double()
        corr = pearson_columns(feature_acts, indicators)          # [F, V]
        best_corr, best_feature = corr.max(dim=0)
        rows += [{"variable": name, "value": int(v), "feature": int(f), "corr": float(c)}
                 for v, f, c in zip(levels.tolist(), best_feature.tolist(), best_corr.tolist())]
    return rows


def task_variables(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """ptr1, ptr2, a, b, their pairs (ptr1_ptr2, a_b: value = 10*first + second) and the target |a - b|:
    a sparse dictionary may code conjunctions rather than the variables themselves."""
    from interp.data.arithmetic import ground_truth

    t = ground_truth(x)
    return {"ptr1": t["ptr1"], "ptr2": t["ptr2"], "a": t["a"], "b": t["b"],
            "ptr1_ptr2": t["ptr1"] * 10 + t["ptr2"], "a_b": t["a"] * 10 + t["b"], "target": t["target"].long()}


@torch.no_grad()
def run(model, datamodule, out_dir, *, sae, n_samples: int = 10000) -> dict[str, float]:
    """alignment.json / alignment.md (every variable value's best feature) and, as metrics, the
    correlation per value of ptr1, ptr2, a, b and the mean per variable."""
    from interp.sae.harvest import activations

    test_ds = getattr(datamodule, "test_ds", None)
    if test_ds is None or "x" not in getattr(test_ds, "arrays", {}) or not hasattr(model, "n_inputs"):
        raise NotApplicable("alignment scores SAE features against the arithmetic task's variables; "
                            "this run is not an SAE on the arithmetic MLP")
    x = torch.as_tensor(test_ds.arrays["x"][:n_samples])
    hook = sae.cfg.metadata.hook_name
    acts = activations(model, {"x": x.to(next(model.parameters()).device)}, hook)
    feats = sae.encode(acts.to(sae.W_enc.device)).cpu()
    truth = task_variables(x)
    rows = variable_alignment(feats, truth)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "alignment.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| variable | value | best feature | correlation |", "|---|---|---|---|"]
    lines += [f"| {r['variable']} | {r['value']} | {r['feature']} | {r['corr']:.3f} |" for r in rows]
    (out_dir / "alignment.md").write_text("\n".join(lines) + "\n")
    results = {f"{r['variable']}={r['value']}": r["corr"] for r in rows
               if r["variable"] in ("ptr1", "ptr2", "a", "b")}   # pairs: only their mean below
    for name in truth:
        corrs = [r["corr"] for r in rows if r["variable"] == name]
        results[f"{name}_mean"] = sum(corrs) / len(corrs)
    return results
