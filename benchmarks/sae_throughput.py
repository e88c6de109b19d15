"""SAE training throughput: our Lightning SAE task against its peers on the same work.

Peers: SAELens's own `SAETrainer` (standard and TopK) and, for TopK, EleutherAI's
sparsify (`pip install "interp[bench]"`; skipped with a note when absent). Its
`Trainer` needs a Hugging Face model, so its `SparseCoder` is driven here with
the per-step work of its trainer.py (1.3.3, loss_fn=fvu, optimizer=adam):
decoder renormalised to unit norm, loss = FVU (scaled by the batch's total
variance), gradient parallel to the decoder rows removed, Adam with its linear
warm-up schedule, firing bookkeeping from the top-k indices.

All train from the same initial weights (ours' SAELens init, copied into
sparsify's layout) on the same activation batches held in memory, in one
process; the trainers are interleaved `--repeats` times (order rotated each
repeat) and the per-repeat values and medians are printed. Goals: standard
>= 1.0x SAELens; TopK (k=32) >= 2x SAELens and >= 1.2x sparsify at d_sae 8 and
32 d_in. Ours runs the standard SAE's step as one fused autograd function
(interp.sae.fused_standard) and TopK's with a sparse decode and encoder
backward (interp.sae.fused_topk).

Also reports the fraction of this machine's measured matmul peak that our SAE
training reaches, counting the FLOPs a step needs: standard, encode, decode and
three backward products = 10 B d_in d_sae; sparse TopK, the encoder forward
(2 B d_in d_sae) plus four O(B k d_in) sparse products (decode, the selected
values' gradient, grad W_dec, grad W_enc) = 8 B k d_in. The peak is the
sustained rate of the standard step's five matmuls (or of 2048^3 ones),
measured just before each repeat for about as long, since this shared
machine's speed drifts.

`--transcode` times TopK transcoders instead, plain and skip, on rows [x | y]
(x synthetic activations as below, y a fixed random GELU MLP of x): ours (the
sparse step, interp.sae.fused_topk; a skip path adds 2 B d_in^2 FLOPs forward
and 2 B d_in^2 for grad W_skip) against sparsify's SparseCoder with
transcode=True (and skip_connection), driven as its trainer drives a
transcoder (no decoder renormalisation nor gradient projection; FVU against
y), and against our task with SAELens's dense step (sparse_decode off).
SAELens's own trainer has no TopK transcoder. Goal: >= 1.2x sparsify.

`--archs matryoshka` times Matryoshka BatchTopK: SAELens's
MatryoshkaBatchTopKTrainingSAE in our task (its dense step: there is no sparse
one) against SAELens's trainer; its FLOPs are counted as the standard step's.

Quality at the same budget: after each timed run, the trained dictionary's FVU (of the target: the
input for an SAE, y for a transcoder) on a held-out batch is measured (not timed) and printed beside
its speed. Every trainer runs Adam at the same constant learning rate (3e-4) from the same weights on
the same batches, so equal FVUs mean the faster step does the same training; sparsify's own default
(a 1000-step linear warm-up to 2e-4 / sqrt(d_sae / 2^14)) would barely leave warm-up in a benchmark.
Use more `--steps` (e.g. 200) for FVUs that have moved away from the initial weights'. For SAEs (not
transcoders) sparsify's trainer sets the decoder rows to unit norm before its first step, while ours and
SAELens's start (and stay free) at SAELens's initial norm 0.1: their FVUs differ for that reason too.

Like train.py, the process allocates large tensors in huge pages
(interp/hugepages.py); every trainer runs under it. `THP_MEM_ALLOC_ENABLE=0`
in front of the command measures without.

    python benchmarks/sae_throughput.py [--d-in 512] [--expansion 8 32] [--batch 4096] [--steps 20] [--repeats 3]
                                        [--archs standard topk matryoshka] [--threads N] [--clock wall|cpu]
    python benchmarks/sae_throughput.py --transcode [--expansion 8 32] ...
"""

import interp.hugepages  # noqa: F401  (first: before torch loads, as in train.py)
import argparse
import os
import statistics
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch

from interp.sae.spec import build_training_sae
from interp.sae.task import SAETask

warnings.filterwarnings("ignore")
clock = time.perf_counter   # --clock cpu: time.process_time


def synthetic_activations(n_batches: int, batch: int, d_in: int, seed: int = 0) -> list[torch.Tensor]:
    """Sparse combinations of 4·d_in random unit directions plus noise: SAE-shaped data."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(4 * d_in, d_in, generator=g), dim=-1)
    out = []
    for _ in range(n_batches):
        codes = torch.rand(batch, 4 * d_in, generator=g) * (torch.rand(batch, 4 * d_in, generator=g) < 0.02)
        out.append(codes @ dirs + 0.05 * torch.randn(batch, d_in, generator=g))
    return out


def synthetic_transcoder_rows(n_batches: int, batch: int, d_in: int, seed: int = 0) -> list[torch.Tensor]:
    """Rows [x | y]: x as `synthetic_activations`, y = a fixed random GELU MLP (width 4 d_in) of x."""
    g = torch.Generator().manual_seed(seed + 1)
    w_in = torch.randn(d_in, 4 * d_in, generator=g) / d_in ** 0.5
    w_out = torch.randn(4 * d_in, d_in, generator=g) / (4 * d_in) ** 0.5
    return [torch.cat([x, torch.nn.functional.gelu(x @ w_in) @ w_out], 1)
            for x in synthetic_activations(n_batches, batch, d_in, seed)]


def spec_for(args, arch: str, fast_paths: bool, skip: bool | None = None) -> dict:
    """Our `sae` config of `arch`: an SAE, or with `skip` given a transcoder (with or without skip path)."""
    spec = {"architecture": arch, "expansion": args.expansion, "hook": "bench", "dead_feature_window": 1000,
            "feature_sampling_window": 2000, "dense_threshold": 0.1}
    if arch in ("topk", "batchtopk", "matryoshka"):
        spec.update(k=args.k, sparse_decode=fast_paths)   # matryoshka: no sparse step, the flag does nothing
    if arch == "standard":
        spec.update(fused=fast_paths)
    if skip is not None:
        spec.update(target_hook="bench_out", skip=skip, apply_b_dec_to_input=False)
    return spec


def fvu(predict, rows: torch.Tensor, d_in: int, transcode: bool) -> float:
    """Fraction of the target's variance left unexplained on held-out `rows` ([x | y] for a transcoder)."""
    x, y = (rows[:, :d_in], rows[:, d_in:]) if transcode else (rows, rows)
    with torch.no_grad():
        return float((y - predict(x)).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


def our_predict(sae):
    """A training SAE of ours (or SAELens's) as x -> its reconstruction of the target (skip path included)."""
    from interp.sae.sites import reconstruct

    return lambda x: reconstruct(sae, x, sae.encode(x))


def ours(args, spec: dict, init: dict, batches) -> tuple[float, object]:
    config = {"sae": spec, "optim": dict(name="Adam", lr=3e-4, betas=[0.9, 0.999], weight_decay=0.0, warmup_steps=0,
                                          schedule="constant", min_lr_ratio=1.0), "data": {}}
    task = SAETask(config, args.d_in)
    task.sae.load_state_dict(init)
    timer = Timer()
    with tempfile.TemporaryDirectory() as run_dir:   # the task saves its SAE there at the end (not into cwd)
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False, callbacks=[timer],
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             gradient_clip_val=1.0, limit_val_batches=0, num_sanity_val_steps=0,
                             log_every_n_steps=50, default_root_dir=run_dir)
        trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return timer.seconds, our_predict(task.sae.eval())


def saelens(args, spec: dict, init: dict, batches) -> tuple[float, object]:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    sae = build_training_sae(spec_for(args, spec["architecture"], fast_paths=False), args.d_in, "bench")
    sae.load_state_dict(init)
    cfg = SAETrainerConfig(total_training_samples=len(batches) * args.batch, train_batch_size_samples=args.batch,
                           lr=3e-4, lr_end=3e-4, device="cpu", logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg, sae, iter(batches))
    start = clock()
    import contextlib
    import io
    with contextlib.redirect_stderr(io.StringIO()):   # its tqdm bar
        trainer.fit()
    return clock() - start, our_predict(sae.eval())


def ours_dense(args, spec: dict, init: dict, batches) -> tuple[float, object]:
    """Our task with SAELens's own step (the fast paths off)."""
    return ours(args, {**spec, "sparse_decode": False, "fused": False}, init, batches)


def sparsify(args, spec: dict, init: dict, batches) -> tuple[float, object] | None:
    """sparsify's SparseCoder with its trainer's per-step work (trainer.py, fvu loss, adam); None if absent.
    A transcoder spec: transcode=True (skip_connection as spec's skip), rows [x | y]."""
    try:
        from sparsify import SparseCoder, SparseCoderConfig
        from transformers import get_constant_schedule
    except ImportError as e:
        print(f"  sparsify skipped: {e}. Fix: pip install \"interp[bench]\"")
        return None
    d_sae, d = init["W_dec"].shape[0], args.d_in
    transcode = "target_hook" in spec
    cfg = SparseCoderConfig(num_latents=d_sae, k=args.k, transcode=transcode, skip_connection=bool(spec.get("skip")))
    sae = SparseCoder(d, cfg, "cpu", dtype=torch.float32)
    with torch.no_grad():   # our initial weights in its layout (encoder: nn.Linear [d_sae, d_in])
        sae.encoder.weight.copy_(init["W_enc"].T)
        sae.encoder.bias.copy_(init["b_enc"])
        sae.W_dec.copy_(init["W_dec"])
        sae.b_dec.copy_(init["b_dec"])
        if sae.W_skip is not None:
            sae.W_skip.copy_(init["W_skip"])
    adam = torch.optim.Adam(sae.parameters(), lr=3e-4)   # as every trainer here (see the module's docstring)
    schedule = get_constant_schedule(adam)
    since_fired = torch.zeros(d_sae, dtype=torch.long)
    did_fire = torch.zeros(d_sae, dtype=torch.bool)
    auxk_alpha, dead_threshold = 0.0, 10_000_000     # its TrainConfig defaults
    start = clock()
    for rows in batches:
        x, y = (rows[:, :d], rows[:, d:]) if transcode else (rows, rows)
        total_variance = (y - y.mean(0)).pow(2).sum()
        if not transcode:   # its trainer keeps an autoencoder's decoder rows at unit norm, not a transcoder's
            sae.set_decoder_norm_to_unit_norm()
        dead = since_fired > dead_threshold if auxk_alpha > 0 else None
        out = sae(x=x, y=y, dead_mask=dead, total_variance=total_variance)
        did_fire[out.latent_indices.flatten()] = True
        float(out.fvu.detach())                      # its running FVU average (a sync)
        (out.fvu + auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8).backward()
        if not transcode:
            sae.remove_gradient_parallel_to_decoder_directions()
        adam.step()
        adam.zero_grad()
        schedule.step()
        with torch.no_grad():
            since_fired += x.shape[0]
            since_fired[did_fire] = 0
            did_fire.zero_()
    seconds = clock() - start
    return seconds, lambda x: sae(x).sae_out   # the skip path is in sae_out


class Timer(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.t0 = clock()

    def on_train_end(self, trainer, pl_module):
        self.seconds = clock() - self.t0


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
        start = clock()
        for _ in range(args.steps):
            for (a, b), o in zip(group, outs):
                torch.mm(a, b, out=o)
        flops = args.steps * sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in group)
        best = max(best, flops / (clock() - start))
    return best


def cases(args, d_sae: int):
    """(label, our spec, {name: trainer}, FLOPs per row of our step) of each thing timed at this width."""
    d, k = args.d_in, args.k
    sparse = 2 * d * d_sae + 8 * k * d   # encoder forward + four O(k d_in) sparse products
    if args.transcode:
        for skip in (False, True):
            peers = {"ours": ours, "sparsify": sparsify, "SAELens step": ours_dense}
            yield (f"topk {'skip ' if skip else ''}transcoder", spec_for(args, "topk", True, skip), peers,
                   sparse + (4 * d * d if skip else 0))   # + the skip path's forward and grad W_skip
        return
    for arch in args.archs:
        peers = {"ours": ours, "SAELens": saelens, **({"sparsify": sparsify} if arch == "topk" else {})}
        yield arch, spec_for(args, arch, True), peers, sparse if arch in ("topk", "batchtopk") else 10 * d * d_sae


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d-in", type=int, default=512)
    p.add_argument("--expansion", type=int, nargs="+", default=[8])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--archs", nargs="+", default=["standard", "topk"],
                   help="standard, topk, batchtopk, matryoshka (SAELens's dense step: it has no sparse one)")
    p.add_argument("--transcode", action="store_true",
                   help="TopK transcoders, plain and skip, against sparsify's (transcode=True); --archs is ignored")
    p.add_argument("--threads", type=int, default=0, help="torch threads for every trainer (0: torch's default)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: the process's CPU time, which leaves out time spent waiting for a core on a shared "
                        "machine; meaningful with --threads 1 only (with more it counts OpenMP's spin-waits)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        global clock
        clock = time.process_time
    torch.manual_seed(0)
    make_batches = synthetic_transcoder_rows if args.transcode else synthetic_activations
    *batches, held_out = make_batches(args.steps + 1, args.batch, args.d_in)   # the last: quality only
    print(f"d_in {args.d_in}, batch {args.batch}, {args.steps} steps, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, "
          f"THP_MEM_ALLOC_ENABLE={os.environ['THP_MEM_ALLOC_ENABLE']}, load average {os.getloadavg()[0]:.1f}")
    rows = args.steps * args.batch
    for expansion in args.expansion:
        args.expansion = expansion
        d_sae = args.d_in * expansion
        for arch, spec, peers, flops in cases(args, d_sae):
            init = build_training_sae(spec, args.d_in, "bench").state_dict()
            rates, fvus = {name: [] for name in peers}, {name: [] for name in peers}
            fractions, peaks = [], []
            for r in range(args.repeats):
                peaks.append(matmul_peak(args))   # just before the runs: the same machine speed
                names = list(peers)[r % len(peers):] + list(peers)[:r % len(peers)]   # rotate the order
                for name in names:
                    trained = peers[name](args, spec, init, batches)
                    if trained is None:
                        del peers[name], rates[name], fvus[name]
                        continue
                    rates[name].append(rows / trained[0])
                    fvus[name].append(fvu(trained[1], held_out, args.d_in, transcode=args.transcode))
                fractions.append(flops * rates["ours"][-1] / peaks[-1])
                print(f"  {arch} d_sae {d_sae} repeat {r} (order {', '.join(names)}): " + ", ".join(
                    f"{name} {v[-1]:,.0f} (FVU {fvus[name][-1]:.4f})" for name, v in rates.items())
                    + f" rows/s; ours {fractions[-1]:.2f} of "
                    f"the {peaks[-1] / 1e9:.1f} GFLOP/s matmul peak measured just before")
            med = {name: statistics.median(v) for name, v in rates.items()}
            ratios = {name: [a / b for a, b in zip(rates["ours"], v)] for name, v in rates.items() if name != "ours"}
            ratios = "; ".join(f"ours / {name}: median {statistics.median(r):.2f} (per repeat "
                               f"{', '.join(f'{x:.2f}' for x in r)})" for name, r in ratios.items())
            print(f"{arch} d_sae {d_sae}: median rows/s " + ", ".join(
                f"{n} {m:,.0f} (held-out FVU {statistics.median(fvus[n]):.4f})" for n, m in med.items())
                  + f"; {ratios}; fraction of matmul peak: median {statistics.median(fractions):.2f} (per repeat "
                  f"{', '.join(f'{f:.2f}' for f in fractions)}), against the best peak of all repeats "
                  f"({max(peaks) / 1e9:.1f} GFLOP/s) {flops * med['ours'] / max(peaks):.2f}")


if __name__ == "__main__":
    main()
