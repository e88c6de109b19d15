"""A 4-job SAE sweep sharing one activation cache ÷ the same sweep where every job harvests.

Both arms are one `python train.py -m task=sae ... sae.l1_coefficient=1,3,10,30`
(Hydra runs the 4 jobs in one process, as a user's sweep would). The only
difference is `sae.cache.root`: one directory for all jobs (the first job
harvests, the others reuse its cache), or a directory per job (interpolated
from the job's l1 coefficient, so each job harvests). Reported: wall time of
each arm and their ratio (goal >= 3x). The ratio is (4H + 4T) / (H + 4T) for
harvest time H and SAE training time T per job: it grows with how much the
harvest costs next to training.

    python benchmarks/sae_sweep_cache.py --base-run outputs/<run> --hook blocks.1.hook_resid_post
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sweep(args, cache_root: str, sweep_dir: Path) -> tuple[float, list[float]]:
    """Wall time of the whole sweep, and each job's time (between consecutive metrics.json writes;
    the first job's from its first log line)."""
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "task=sae", f"base_run={args.base_run}", "sae=standard",
           f"sae.hook={args.hook}", "sae.l1_coefficient=1,3,10,30", f"sae.harvest_tokens={args.tokens}",
           f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}", "logger=none",
           f"sae.cache.root={cache_root}", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep_dir}",
           *args.extra]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - start
    ends = [(sweep_dir / str(i) / "metrics.json").stat().st_mtime for i in range(4)]
    first_start = (sweep_dir / "0" / ".hydra" / "config.yaml").stat().st_mtime   # written as job 0 begins
    jobs = [b - a for a, b in zip([first_start, *ends], ends)]
    return wall, jobs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-run", required=True)
    p.add_argument("--hook", required=True)
    p.add_argument("--tokens", type=int, default=1_000_000, help="activations harvested per cache")
    p.add_argument("--steps", type=int, default=100, help="SAE steps per job")
    p.add_argument("extra", nargs="*", help="more train.py overrides")
    args = p.parse_args()
    args.base_run = str(Path(args.base_run).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        shared, shared_jobs = sweep(args, f"{tmp}/shared", Path(tmp) / "shared-sweep")
        separate, separate_jobs = sweep(args, tmp + "/own-${sae.l1_coefficient}", Path(tmp) / "own-sweep")
        harvested = sorted(p.parent.parent.name for p in Path(tmp).glob("*/*/manifest.json"))
    print(f"4 jobs, {args.tokens} harvested activations at {args.hook}, {args.steps} SAE steps each; "
          f"caches written: {harvested}")
    print(f"shared cache: {shared:.1f} s; every job harvesting: {separate:.1f} s; ratio {separate / shared:.2f}x")
    print("per job (s): shared " + " ".join(f"{t:.1f}" for t in shared_jobs)
          + "; every job harvesting " + " ".join(f"{t:.1f}" for t in separate_jobs))
    harvest = statistics.mean(separate_jobs[1:]) - statistics.mean(shared_jobs[1:])
    other = statistics.mean(shared_jobs[1:])
    print(f"so a harvest costs ~{harvest:.1f} s, the rest of a job ~{other:.1f} s, and process start-up and "
          f"the first job's one-time work ~{shared - 4 * other - harvest:.1f} s")


if __name__ == "__main__":
    main()
