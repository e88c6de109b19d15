"""Recovery of the arithmetic task's true variables by SAEs, across the runs of a sweep.

    python scripts/arithmetic_recovery.py multirun/<date>/<time>_arithmetic_sae [more dirs] --out docs/arithmetic_sae

Reads each run's config.yaml and metrics.json (the `alignment` analysis of experiment=arithmetic_sae)
and writes recovery.md / recovery.csv (one row per SAE, the neurons of its hook beside it) and two
plots: the SAE's mean best correlation over ptr1, ptr2, a, b, (ptr1, a), (ptr2, b) against L0 and
against task-MSE recovered.
"""

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from interp.analyses.alignment import TASK_VARIABLES  # noqa: E402
from interp.run_dir import read_metrics  # noqa: E402

SPARSITY = {"standard": "l1_coefficient", "gated": "l1_coefficient", "jumprelu": "l0_coefficient",
            "topk": "k", "batchtopk": "k"}


def row_of(run: Path) -> dict | None:
    metrics = read_metrics(run)
    if "analysis/alignment/features/task/mean" not in metrics:
        return None
    config = yaml.safe_load((run / "config.yaml").read_text())
    sae = config["sae"]
    a = "analysis/alignment/"
    neurons = f"{a}neurons/{sae['hook']}/"
    row = {"run": run.name, "arch": sae["architecture"], "d_sae": sae["d_sae"],
           "sparsity": f"{SPARSITY[sae['architecture']]}={sae[SPARSITY[sae['architecture']]]}",
           "steps": config["trainer"]["max_steps"], "l0": metrics["val/l0"], "explained_variance": metrics["val/explained_variance"],
           "task_mse_recovered": metrics.get("val/task_mse_score", float("nan")),
           "sae_task": metrics[f"{a}features/task/mean"], "neurons_task": metrics[f"{neurons}task/mean"]}
    for var in TASK_VARIABLES:
        row[f"sae_{var}"], row[f"neurons_{var}"] = metrics[f"{a}features/{var}/mean"], metrics[f"{neurons}{var}/mean"]
    row["goal"] = row["sae_task"] > row["neurons_task"] and row["task_mse_recovered"] >= 0.9
    return row


def plot(rows: list[dict], x: str, xlabel: str, path: Path, log: bool) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arch in sorted({r["arch"] for r in rows}):
        pts = [r for r in rows if r["arch"] == arch]
        ax.scatter([r[x] for r in pts], [r["sae_task"] for r in pts], label=arch)
        for r in pts:
            ax.annotate(f"{r['d_sae']} {r['sparsity'].split('_')[0]}", (r[x], r["sae_task"]), fontsize=7)
    ax.axhline(rows[0]["neurons_task"], color="k", ls="--", label="the layer's neurons")
    if x == "task_mse_recovered":
        ax.axvline(0.9, color="grey", ls=":", label="task-MSE recovered 0.9 (the goal)")
    ax.set(xlabel=xlabel, ylabel="mean best r over ptr1, ptr2, a, b, (ptr1,a), (ptr2,b)",
           xscale="log" if log else "linear", title="Recovery of the true variables (labels: width, sparsity)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders or run folders")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = sorted({p.parent for d in args.dirs for p in [*d.glob("metrics.json"), *d.glob("*/metrics.json")]})
    rows = sorted(filter(None, map(row_of, runs)), key=lambda r: -r["sae_task"])
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "recovery.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cols = ["arch", "d_sae", "sparsity", "steps", "l0", "task_mse_recovered", "sae_task", "neurons_task",
            *(f"sae_{v}" for v in TASK_VARIABLES), "goal"]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    lines += ["| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |"
              for r in rows]
    (args.out / "recovery.md").write_text("\n".join(lines) + "\n")
    plot(rows, "l0", "L0 (active features per input)", args.out / "recovery_vs_l0.png", log=True)
    plot(rows, "task_mse_recovered", "task-MSE recovered", args.out / "recovery_vs_task_mse.png", log=False)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
