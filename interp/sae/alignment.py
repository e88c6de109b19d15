"""How well SAE features line up with a task's ground-truth variables.

For every value v of every variable (e.g. ptr1 = 2, or the selected digit a = 7)
the indicator 1[var == v] over N samples is correlated (Pearson) with every
feature's activation; we report the best feature and its correlation. A
monosemantic dictionary has, for each value, one feature near 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch


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


class ArithmeticAlignment(pl.Callback):
    """At the end of an SAE run on the arithmetic MLP: features vs ptr1, ptr2, a, b, their pairs
    (ptr1_ptr2, a_b: value = 10*first + second) and the target |a - b|."""

    def __init__(self, n_samples: int = 10000):
        self.n_samples = n_samples
        self.results: dict[str, float] = {}

    @torch.no_grad()
    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        from interp.data.arithmetic import ground_truth
        from interp.sae.harvest import activations

        if not trainer.is_global_zero:
            return
        base_dm = trainer.datamodule.base_dm
        x = torch.as_tensor(base_dm.test_ds.arrays["x"][: self.n_samples])
        device = pl_module.device
        acts = activations(pl_module.base_model, {"x": x.to(device)}, pl_module.hook)
        feats = pl_module.saved_form().encode(acts).cpu()
        t = ground_truth(x)
        # The variables themselves, and their pairs: a sparse dictionary may code conjunctions.
        truth = {"ptr1": t["ptr1"], "ptr2": t["ptr2"], "a": t["a"], "b": t["b"],
                 "ptr1_ptr2": t["ptr1"] * 10 + t["ptr2"], "a_b": t["a"] * 10 + t["b"], "target": t["target"].long()}
        rows = variable_alignment(feats, truth)
        out_dir = Path(trainer.default_root_dir) / "figures" / "sae"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "alignment.json").write_text(json.dumps(rows, indent=1) + "\n")
        lines = ["| variable | value | best feature | correlation |", "|---|---|---|---|"]
        lines += [f"| {r['variable']} | {r['value']} | {r['feature']} | {r['corr']:.3f} |" for r in rows]
        (out_dir / "alignment.md").write_text("\n".join(lines) + "\n")
        self.results = {f"alignment/{r['variable']}={r['value']}": r["corr"] for r in rows
                        if r["variable"] in ("ptr1", "ptr2", "a", "b")}   # pairs: only their mean below
        for name in truth:
            corrs = [r["corr"] for r in rows if r["variable"] == name]
            self.results[f"alignment/{name}_mean"] = sum(corrs) / len(corrs)
        for logger in trainer.loggers:
            logger.log_metrics(self.results, step=trainer.global_step)
