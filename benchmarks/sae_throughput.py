"""SAE training throughput: our Lightning SAE task ÷ SAELens's own `SAETrainer`.

Both train the same SAELens architecture from the same initial weights on the
same activation batches (held in memory, so neither pays for data loading),
with Adam, grad-norm clipping 1.0 and dead-feature tracking, in one process;
the two are interleaved `--repeats` times and the median ratio is reported.
Goals: >= 1.0 for standard (L1), >= 1.5 for TopK (k=32, d_sae = 8 d_in). Ours
runs the standard SAE's step as one fused autograd function
(interp.sae.fused_standard) and decodes TopK sparsely (interp.sae.sparse_topk);
SAELens runs its generic ops and decodes densely.

Also reports the fraction of this machine's measured matmul peak that SAE
training reaches (goal >= 0.8), counting the matmul FLOPs a step needs: for
the standard SAE encode, decode and three backward products = 10 B d_in d_sae;
for sparse-decode TopK the encoder's two (4 B d_in d_sae) plus 6 B k d_in. The
peak is the sustained rate of those five matmuls alone (or of 2048^3 ones),
measured just before each repeat's run for about as long, since this shared
machine's speed drifts; the fraction against the best peak of all repeats is
printed too.

Like train.py, the process allocates large tensors in huge pages
(interp/hugepages.py); both trainers run under it. `THP_MEM_ALLOC_ENABLE=0`
in front of the command measures without.

    python benchmarks/sae_throughput.py [--d-in 512] [--batch 4096] [--steps 20] [--repeats 3]
"""

import interp.hugepages  # noqa: F401  (first: before torch loads, as in train.py)
import argparse
import os
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch

from interp.sae.spec import build_training_sae
from interp.sae.task import SAETask

warnings.filterwarnings("ignore")


def synthetic_activations(n_batches: int, batch: int, d_in: int, seed: int = 0) -> list[torch.Tensor]:
    """Sparse combinations of 4·d_in random unit directions plus noise: SAE-shaped data."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(4 * d_in, d_in, generator=g), dim=-1)
    out = []
    for _ in range(n_batches):
        codes = torch.rand(batch, 4 * d_in, generator=g) * (torch.rand(batch, 4 * d_in, generator=g) < 0.02)
        out.append(codes @ dirs + 0.05 * torch.randn(batch, d_in, generator=g))
    return out


def spec_for(args, arch: str, fast_paths: bool) -> dict:
    spec = {"architecture": arch, "expansion": args.expansion, "hook": "bench", "dead_feature_window": 1000,
            "feature_sampling_window": 2000, "dense_threshold": 0.1}
    if arch == "topk":
        spec.update(k=args.k, sparse_decode=fast_paths)
    if arch == "standard":
        spec.update(fused=fast_paths)
    return spec


def ours(args, spec: dict, init: dict, batches) -> float:
    config = {"sae": spec, "optim": dict(name="Adam", lr=3e-4, betas=[0.9, 0.999], weight_decay=0.0, warmup_steps=0,
                                          schedule="constant", min_lr_ratio=1.0), "data": {}}
    task = SAETask(config, args.d_in)
    task.sae.load_state_dict(init)
    timer = Timer()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False, callbacks=[timer],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=1.0, limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=50)
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return timer.seconds


def saelens(args, spec: dict, init: dict, batches) -> float:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    sae = build_training_sae(spec_for(args, spec["architecture"], fast_paths=False), args.d_in, "bench")
    sae.load_state_dict(init)
    cfg = SAETrainerConfig(total_training_samples=len(batches) * args.batch, train_batch_size_samples=args.batch,
                           lr=3e-4, lr_end=3e-4, device="cpu", logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg, sae, iter(batches))
    start = time.perf_counter()
    import contextlib
    import io
    with contextlib.redirect_stderr(io.StringIO()):   # its tqdm bar
        trainer.fit()
    return time.perf_counter() - start


class Timer(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.t0


def matmul_peak(args) -> float:
    """Sustained FLOP/s of the standard step's five matmuls (its shapes, preallocated outputs, back to
    back, `args.steps` rounds: about as long as a training run, so both see the machine's current
    speed), or of 2048^3 matmuls for as long, whichever is higher."""
    B, d, D = args.batch, args.d_in, args.d_in * args.expansion
    x, g, acts = torch.randn(B, d), torch.randn(B, d), torch.randn(B, D)
    w_enc, w_dec = torch.randn(d, D), torch.randn(D, d)
    products = [(x, w_enc), (acts, w_dec), (g, w_dec.T), (acts.T, g), (x.T, acts)]
    square = [(torch.randn(2048, 2048), torch.randn(2048, 2048))] * round(5 * B * d * D / 2048**3)
    best = 0.0
    for group in (products, square):
        outs = [torch.empty(a.shape[0], b.shape[1]) for a, b in group]
        for (a, b), o in zip(group, outs):   # warm-up
            torch.mm(a, b, out=o)
        start = time.perf_counter()
        for _ in range(args.steps):
            for (a, b), o in zip(group, outs):
                torch.mm(a, b, out=o)
        flops = args.steps * sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in group)
        best = max(best, flops / (time.perf_counter() - start))
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d-in", type=int, default=512)
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--archs", nargs="+", default=["standard", "topk"])
    args = p.parse_args()
    torch.manual_seed(0)
    batches = synthetic_activations(args.steps, args.batch, args.d_in)
    d_sae = args.d_in * args.expansion
    print(f"d_in {args.d_in}, d_sae {d_sae}, batch {args.batch}, {args.steps} steps, {torch.get_num_threads()} "
          f"threads, THP_MEM_ALLOC_ENABLE={os.environ['THP_MEM_ALLOC_ENABLE']}")
    for arch in args.archs:
        spec = spec_for(args, arch, fast_paths=True)
        init = build_training_sae(spec, args.d_in, "bench").state_dict()
        ratios, fractions, rates, peaks = [], [], [], []
        for r in range(args.repeats):
            peaks.append(matmul_peak(args))   # just before ours: the same machine speed
            t_ours, t_lens = ours(args, spec, init, batches), saelens(args, spec, init, batches)
            rows = args.steps * args.batch
            ratios.append(t_lens / t_ours)
            flops = 10 * args.d_in * d_sae if arch == "standard" else 4 * args.d_in * d_sae + 6 * args.k * args.d_in
            rates.append(flops * rows / t_ours)
            fractions.append(rates[-1] / peaks[-1])
            print(f"  {arch} repeat {r}: ours {rows / t_ours:,.0f} rows/s ({rates[-1] / 1e9:.1f} GFLOP/s, "
                  f"{fractions[-1]:.2f} of the {peaks[-1] / 1e9:.1f} GFLOP/s peak measured just before), "
                  f"SAELens SAETrainer {rows / t_lens:,.0f} rows/s, ratio {ratios[-1]:.2f}")
        print(f"{arch}: median ratio {statistics.median(ratios):.2f} (all {', '.join(f'{x:.2f}' for x in ratios)}); "
              f"median fraction of matmul peak {statistics.median(fractions):.2f}; against the best peak of all "
              f"repeats ({max(peaks) / 1e9:.1f} GFLOP/s) {statistics.median(rates) / max(peaks):.2f}")


if __name__ == "__main__":
    main()
