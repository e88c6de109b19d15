"""Our trainer against SAELens's own (`SyntheticSAERunner`) on SAELens's synthetic benchmark: the same
synthetic model (experiment=synth_small's), architecture, width, k, steps, batch and learning rate, a few
seeds each; both final SAEs scored by SAELens's `eval_sae_on_synthetic_data` on the same rows.

    python benchmarks/synthetic_vs_saelens.py [--arch topk] [--steps 4000] [--seeds 0 1 2] [--k 32] [--sampler fast]

Prints one table: MCC, F1, explained variance, L0, dead latents, training rows/s (each trainer's own
training time, without its start-up and evaluation) and the speed ratio. Both use every core they find (2
here). Settings made equal on purpose: constant learning rate 3e-4 (SAELens's runner has no schedule), no
normalisation, decoder rows at norm 0.1, b_dec subtracted from the input, TopK's AuxK coefficient 1.
Our rows come from `data.sampler` (default fast: SAELens's distribution drawn by interp.models.synthetic_sampler;
--sampler saelens: SAELens's own SyntheticModel.sample, as its runner draws them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EVAL_SAMPLES, EVAL_SEED = 65_536, 12_345


def synthetic_data() -> dict:
    """experiment=synth_small's data.* (read from the preset, so the two never drift apart)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", ["experiment=synth_small"])
    return OmegaConf.to_container(cfg.data, resolve=True), int(cfg.sae.d_sae), int(cfg.sae.batch_size)


def score(sae, synthetic) -> dict:
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        r = eval_sae_on_synthetic_data(sae, synthetic.feature_dict, synthetic.activation_generator,
                                       num_samples=EVAL_SAMPLES, batch_size=1024)
    return {"mcc": r.mcc, "f1": r.classification.f1_score, "ev": r.explained_variance, "l0": r.sae_l0,
            "dead": r.dead_latents}


def saelens_run(arch: str, data: dict, d_sae: int, k: int, steps: int, batch: int, seed: int, out: Path) -> dict:
    from sae_lens import BatchTopKTrainingSAEConfig, LoggingConfig, TopKTrainingSAEConfig
    from sae_lens.synthetic import SyntheticSAERunner, SyntheticSAERunnerConfig

    from interp.data.synthetic import MODEL_FIELDS
    from interp.models.synthetic import saelens_config

    config = {"topk": TopKTrainingSAEConfig, "batchtopk": BatchTopKTrainingSAEConfig}[arch](
        d_in=data["hidden_dim"], d_sae=d_sae, k=k, apply_b_dec_to_input=True, decoder_init_norm=0.1,
        normalize_activations="none", aux_loss_coefficient=1.0)
    torch.manual_seed(seed)   # before the runner: it initialises the SAE when built
    runner = SyntheticSAERunner(SyntheticSAERunnerConfig(
        synthetic_model=saelens_config(**{f: data[f] for f in MODEL_FIELDS if f != "sampler"}), sae=config,
        training_samples=steps * batch, batch_size=batch, lr=3e-4, output_path=str(out), checkpoint_path=None,
        run_final_eval=False, logger=LoggingConfig(log_to_wandb=False), device="cpu"))
    start = time.perf_counter()
    result = runner.run()
    seconds = time.perf_counter() - start
    return {**score(result.sae, result.synthetic_model), "rows_per_s": steps * batch / seconds}


def our_run(arch: str, k: int, steps: int, seed: int, out: Path, sampler: str) -> dict:
    from sae_lens import SAE
    from sae_lens.synthetic import SyntheticModel

    cmd = [sys.executable, str(REPO / "train.py"), "experiment=synth_small", f"sae={arch}", f"sae.k={k}",
           f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}", "optim.schedule=constant",
           "sae.init=saelens", "sae.normalize_activations=none", f"seed={seed}", "logger=none",
           "trainer.enable_progress_bar=false", f"data.sampler={sampler}", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    scores = score(SAE.load_from_disk(str(out / "sae")), SyntheticModel.load_from_disk(out / "synthetic_model"))
    return {**scores, "rows_per_s": metrics["throughput/rows_per_s_loop"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="topk", choices=["topk", "batchtopk"])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--sampler", default="fast", choices=["fast", "saelens"], help="how our rows are drawn")
    args = p.parse_args()
    data, d_sae, batch = synthetic_data()
    print(f"synth_small: {data['num_features']} features in {data['hidden_dim']} dims; {args.arch}, {d_sae} latents, "
          f"k={args.k}, {args.steps} steps of {batch} rows, lr 3e-4; seeds {args.seeds}; our sampler: {args.sampler}")
    rows = {"SAELens SyntheticSAERunner": [], "interp train.py": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows["SAELens SyntheticSAERunner"].append(
                saelens_run(args.arch, data, d_sae, args.k, args.steps, batch, seed, Path(tmp) / f"saelens{seed}"))
            rows["interp train.py"].append(our_run(args.arch, args.k, args.steps, seed, Path(tmp) / f"ours{seed}",
                                                    args.sampler))
            print(f"seed {seed}: " + "; ".join(f"{name} mcc {r[-1]['mcc']:.3f} f1 {r[-1]['f1']:.3f} "
                                                 f"{r[-1]['rows_per_s']:,.0f} rows/s" for name, r in rows.items()),
                  flush=True)
    print("\n| trainer | MCC | F1 | explained variance | L0 | dead | training rows/s |\n|---|---|---|---|---|---|---|")
    for name, runs in rows.items():
        def cell(key, fmt):
            values = [r[key] for r in runs]
            spread = f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else ""
            return f"{statistics.mean(values):{fmt}}{spread}"
        print(f"| {name} | {cell('mcc', '.3f')} | {cell('f1', '.3f')} | {cell('ev', '.3f')} | {cell('l0', '.1f')} | "
              f"{cell('dead', '.0f')} | {cell('rows_per_s', ',.0f')} |")
    ours, theirs = (statistics.mean(r["rows_per_s"] for r in rows[n]) for n in ("interp train.py",
                                                                                "SAELens SyntheticSAERunner"))
    per_seed = [o["rows_per_s"] / t["rows_per_s"] for o, t in zip(rows["interp train.py"],
                                                                   rows["SAELens SyntheticSAERunner"])]
    print(f"\nspeed: ours / SAELens's = {ours / theirs:.2f}x (goal >= 2x); per seed, each pair run back to back: "
          + ", ".join(f"{r:.2f}x" for r in per_seed))


if __name__ == "__main__":
    main()
