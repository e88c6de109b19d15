"""Feature probe (seed S4's report) for one input of the arithmetic MLP: the input, the expected and
the MLP's output (also with the SAE spliced in), how many SAE features fire and the top ones, each
with its ground-truth label (the variable value it best matches over the test rows, and how well).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from interp.analyses import alignment
from interp.errors import ConfigError
from interp.files import atomic_write_text

SEED_INPUT = (8, 9, 5, 1, 3, 2, 9, 4, 7, 1)   # the seed's first probe: |col1[1] - col2[1]| = |9 - 1| = 8


def parse_input(x, n_inputs: int, n_classes: int) -> torch.Tensor:
    """`x` as a [1, n_inputs] row, or a ConfigError naming the layout it should have."""
    n = (n_inputs - 2) // 2
    layout = (f"{n_inputs} integers [col1 ({n} digits 0-{n_classes - 1}), ptr1 (0-{n - 1}), "
              f"col2 ({n} digits), ptr2 (0-{n - 1})]")
    example = ",".join(map(str, SEED_INPUT if n_inputs == len(SEED_INPUT) else [7] * n + [0] + [2] * n + [0]))
    fix = f"Fix: pass x=[{example}]."
    x = list(x) if isinstance(x, Sequence) and not isinstance(x, str) else x   # also a Hydra ListConfig
    if not isinstance(x, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        raise ConfigError(f"x={x!r} is not a list of integers; the arithmetic MLP reads {layout}. {fix}")
    if len(x) != n_inputs:
        raise ConfigError(f"x has {len(x)} numbers; the arithmetic MLP reads {layout}. {fix}")
    if bad := [v for v in x if not 0 <= v < n_classes]:
        raise ConfigError(f"x holds {bad[0]}, not a digit 0-{n_classes - 1}; the arithmetic MLP reads {layout}. {fix}")
    for name, pos in (("ptr1", n), ("ptr2", 2 * n + 1)):
        if x[pos] >= n:
            raise ConfigError(f"{name}={x[pos]} (x[{pos}]) points beyond its column of {n} digits "
                              f"(pointers are 0-{n - 1}). {fix}")
    return torch.tensor([list(x)])


@torch.no_grad()
def probe(model, sae, row: torch.Tensor, labels: list[tuple[str, float]], top_k: int) -> dict:
    """The report for one input row [1, n]: numbers, and the top features by activation."""
    from interp.data.arithmetic import ground_truth

    hook = sae.cfg.metadata.hook_name
    feats = alignment.feature_activations(model, sae, row)[0]
    acts = alignment.hook_activations(model, row)[hook].to(sae.W_enc.device)
    recon = sae.decode(sae.encode(acts)).to(acts.dtype)
    with_sae = model.run_with_hooks(row.to(acts.device), fwd_hooks=[(hook, lambda a, hook=None: recon.view(a.shape))])
    values, ids = feats.topk(min(top_k, int((feats > 0).sum())))
    return {"input": row[0].tolist(), "expected": float(ground_truth(row)["target"][0]),
            "mlp_output": float(model(row.to(acts.device))[0]), "mlp_output_with_sae": float(with_sae[0]),
            "active_features": int((feats > 0).sum()),
            "top_features": [{"feature": int(f), "activation": float(v), "label": labels[f][0], "corr": labels[f][1]}
                             for v, f in zip(values.tolist(), ids.tolist())]}


def report_text(p: dict) -> str:
    lines = ["--- Interpretability Report ---",
             f"Sample Input: {p['input']} | Expected Output: {p['expected']:.1f}",
             f"MLP Output: {p['mlp_output']:.4f} (with the SAE spliced in: {p['mlp_output_with_sae']:.4f})",
             f"Number of active SAE features: {p['active_features']}",
             "Top Active Features (ground-truth label: best-matching variable value, Pearson r):"]
    lines += [f"  Feature #{t['feature']:>5} | Activation: {t['activation']:.4f} | {t['label']} (r={t['corr']:.2f})"
              for t in p["top_features"]]
    return "\n".join(lines)


@torch.no_grad()
def run(model, datamodule, out_dir, *, sae, x=SEED_INPUT, top_k: int = 5, n_samples: int = 16384) -> dict[str, float]:
    """probe.txt / probe.json for input `x`; labels from `n_samples` test rows."""
    test_x = alignment.require_arithmetic(model, datamodule, "feature_probe")[:n_samples]
    row = parse_input(x, model.n_inputs, model.n_classes)
    labels = alignment.score(alignment.feature_activations(model, sae, test_x),
                             alignment.task_variables(test_x)).unit_labels()
    p = probe(model, sae, row, labels, top_k)
    text = report_text(p)
    print(text, flush=True)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "probe.txt", text + "\n")
    atomic_write_text(out_dir / "probe.json", json.dumps(p, indent=1) + "\n")
    return {k: float(p[k]) for k in ("expected", "mlp_output", "mlp_output_with_sae", "active_features")}
