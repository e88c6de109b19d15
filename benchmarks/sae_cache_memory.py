"""Peak memory when an SAE trains from an activation cache several times larger than its buffer.

Builds a cache of `--rows` x `--d-in` float32 activations (random; only the
size matters), then in a fresh process trains a standard SAE for one pass over
it through the same CacheStream that `sae.source=cache` uses, with
`--buffer` rows per read block, and reports the peak RSS growth over the
process's RSS just before training, against the cache's size, for each cache
size in `--rows`. Loading the cache whole would grow RSS by at least its size;
streaming keeps the growth flat as the cache grows. Large tensors are
allocated in huge pages, as under train.py (interp/hugepages.py).

    python benchmarks/sae_cache_memory.py [--rows 250000 1000000] [--d-in 128] [--buffer 65536]
"""

import interp.hugepages  # noqa: F401  (first: before torch loads; the child inherits it)
import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

import torch

from interp.sae.cache import get_or_build

CHILD = textwrap.dedent("""
    import json, resource, sys, tempfile, warnings
    import pytorch_lightning as pl, torch
    from interp.sae.source import CacheStream
    from interp.sae.task import SAETask
    warnings.filterwarnings("ignore")
    acts, d_in, batch, buffer, steps = sys.argv[1], *map(int, sys.argv[2:6])
    spec = {"architecture": "standard", "expansion": 8, "hook": "bench", "dead_feature_window": 1000,
            "feature_sampling_window": 2000, "dense_threshold": 0.1, "l1_coefficient": 1.0}
    optim = dict(name="Adam", lr=3e-4, betas=[0.9, 0.999], weight_decay=0.0, warmup_steps=0, schedule="constant")
    task = SAETask({"sae": spec, "optim": optim, "data": {}}, d_in)
    loader = torch.utils.data.DataLoader(CacheStream(acts, batch, buffer, seed=0), batch_size=None)
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    before = rss_mb()
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         default_root_dir=tempfile.mkdtemp())   # where the task saves its SAE, not cwd
    trainer.fit(task, train_dataloaders=loader)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rss_before_mb": before, "peak_rss_mb": peak, "rss_after_mb": rss_mb()}))
""")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="+", default=[250_000, 1_000_000])
    p.add_argument("--d-in", type=int, default=128)
    p.add_argument("--buffer", type=int, default=65536)
    p.add_argument("--batch", type=int, default=4096)
    args = p.parse_args()
    for rows in args.rows:   # growth that does not follow the cache size is the step's own working memory
        measure(args, rows)


def measure(args, rows: int) -> None:
    args = argparse.Namespace(**{**vars(args), "rows": rows})
    with tempfile.TemporaryDirectory() as tmp:
        def fill(writer):
            g = torch.Generator().manual_seed(0)
            while writer.write(torch.randn(65536, args.d_in, generator=g)) > 0:
                pass
        fields = {"bench": True, "n_tokens": args.rows, "dtype": "float32"}
        handle = get_or_build(tmp, fields, args.d_in, fill, verify_hash=False)
        cache_mb = handle.acts_path.stat().st_size / 2**20
        steps = args.rows // args.batch   # one pass over the cache
        out = subprocess.run([sys.executable, "-c", CHILD, str(handle.acts_path), str(args.d_in), str(args.batch),
                              str(args.buffer), str(steps)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
    buffer_mb = args.buffer * args.d_in * 4 / 2**20
    grow = r["peak_rss_mb"] - r["rss_before_mb"]
    print(f"cache {cache_mb:.0f} MiB = {cache_mb / buffer_mb:.0f} x the {buffer_mb:.0f} MiB buffer; one pass, "
          f"{steps} steps of {args.batch}")
    print(f"RSS before training {r['rss_before_mb']:.0f} MiB, peak {r['peak_rss_mb']:.0f} MiB: growth "
          f"{grow:.0f} MiB = {grow / cache_mb:.2f} x the cache size")


if __name__ == "__main__":
    main()
