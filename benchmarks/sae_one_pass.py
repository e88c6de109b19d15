"""Many dictionaries from one pass of the base model ÷ one job per dictionary, as a user would run them.

Two comparisons, each arm a real `python train.py` (Hydra, Lightning, caches on disk), wall time:

1. layers: TopK SAEs on every block's output (`sae.hook=blocks.*.hook_resid_post`) in one run ÷ the
   4-job sweep (`-m sae.hook=blocks.0...,blocks.1...,...`), both from cold caches (a fresh cache root
   each). The sweep harvests once per hook, so the base model runs once per job; the one run harvests
   the hooks side by side in one pass. Goal <= 0.5x.
2. variants: `sae.k=[8,16,32,64]` on one hook in one run ÷ four single runs (`-m sae.k=8,16,32,64`),
   from a warm cache (harvested before either arm is timed). Goal <= 0.6x.

Both arms train the same dictionaries for the same steps on the same rows (a dictionary of the one run
equals its single run: tests/test_many_dictionaries.py). Where the time goes is read from each run's
metrics.json: `time/train_step_s` (training steps) and, from its log, the harvest; the rest is process
start-up, loading the base run, validation and saving.

    python benchmarks/sae_one_pass.py --base-run outputs/base_runs/<lm_mix run> [--tokens 200000] [--steps 300]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(args, overrides: list[str], out: Path, multirun: bool = False) -> float:
    cmd = [sys.executable, str(REPO / "train.py"), *(["-m"] if multirun else []), "task=sae",
           f"base_run={args.base_run}", "sae=topk", "sae.expansion=8", f"sae.harvest_tokens={args.tokens}",
           f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}", "logger=none",
           "trainer.enable_progress_bar=false", f"hydra.{'sweep' if multirun else 'run'}.dir={out}",
           *overrides, *args.extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def steps_s(out: Path) -> float:
    """Seconds in training steps, summed over a run or a sweep's jobs."""
    files = [out / "metrics.json"] if (out / "metrics.json").is_file() else sorted(out.glob("*/metrics.json"))
    return sum(json.loads(f.read_text()).get("time/train_step_s", 0.0) for f in files)


def report(name: str, one: float, many: float, one_dir: Path, many_dir: Path, goal: float) -> None:
    ratio = one / many
    print(f"{name}: one run {one:.1f} s (training steps {steps_s(one_dir):.1f} s); one job each {many:.1f} s "
          f"(training steps {steps_s(many_dir):.1f} s); ratio {ratio:.2f} (goal <= {goal})", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-run", required=True, help="an lm_mix run (4 blocks): outputs/base_runs/<key>")
    p.add_argument("--tokens", type=int, default=200_000, help="activations harvested per hook")
    p.add_argument("--steps", type=int, default=300, help="SAE steps per dictionary")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--variant-hook", default="blocks.2.hook_resid_post")
    p.add_argument("extra", nargs="*", help="more train.py overrides")
    args = p.parse_args()
    args.base_run = str(Path(args.base_run).resolve())
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(args.layers)]
    print(f"{args.tokens} harvested rows per hook, {args.steps} steps per dictionary, TopK k=32 (layers), "
          f"d_sae 8 x d_in", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = train(args, ["sae.k=32", "sae.hook=blocks.*.hook_resid_post", f"sae.cache.root={tmp}/cold1"],
                    tmp / "layers-one")
        many = train(args, ["sae.k=32", f"sae.hook={','.join(hooks)}", f"sae.cache.root={tmp}/cold2"],
                     tmp / "layers-sweep", multirun=True)
        report(f"{args.layers} layers, cold caches", one, many, tmp / "layers-one", tmp / "layers-sweep", 0.5)

        warm = [f"sae.hook={args.variant_hook}", f"sae.cache.root={tmp}/warm"]
        train(args, [*warm, "sae.k=8", "trainer.max_steps=1"], tmp / "harvest")   # the warm cache, untimed
        one = train(args, [*warm, "sae.k=[8,16,32,64]"], tmp / "variants-one")
        many = train(args, [*warm, "sae.k=8,16,32,64"], tmp / "variants-sweep", multirun=True)
        report(f"k=8,16,32,64 at {args.variant_hook}, warm cache", one, many, tmp / "variants-one",
               tmp / "variants-sweep", 0.6)


if __name__ == "__main__":
    main()
