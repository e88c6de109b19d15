"""LM training tokens/s through our Lightning task ÷ a plain PyTorch loop.

Same HookedTransformer config, same batches, same AdamW and gradient
clipping, in one process (the plain loop skips the LR scheduler, whose
per-step cost is negligible); the two are interleaved `--repeats` times
and the median ratio is reported. Goal: >= 0.95.

    python benchmarks/lightning_overhead.py [--steps 40] [--repeats 3]
"""

import interp.hugepages  # noqa: F401  (first: before torch loads, as in train.py)
import argparse
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from interp.data.batch import IGNORE_INDEX
from interp.models import build_model
from interp.tasks import LMTask

warnings.filterwarnings("ignore")


def make_config(args) -> dict:
    model = dict(arch="transformer", kind="lm", n_layers=args.layers, d_model=args.d_model, n_heads=4,
                 d_head=args.d_model // 4, n_ctx=args.ctx, d_vocab=args.vocab, attn_only=True,
                 normalization_type="LN", positional_embedding_type="shortformer")
    optim = dict(name="AdamW", lr=1e-3, betas=[0.9, 0.99], weight_decay=0.01, warmup_steps=10,
                 schedule="cosine", min_lr_ratio=0.1)
    return {"model": model, "optim": optim, "task": {"name": "lm", "kind": "lm"}}


def plain_loop(config, batches) -> float:
    torch.manual_seed(0)
    model = build_model(config["model"])
    o = dict(config["optim"])
    opt = torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])
    model.train()
    start = time.perf_counter()
    for batch in batches:
        logits = model(batch["tokens"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - start


def lightning_loop(config, batches) -> float:
    torch.manual_seed(0)
    task = LMTask(config)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=1.0, limit_val_batches=0, num_sanity_val_steps=0)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    start = time.perf_counter()
    trainer.fit(task, train_dataloaders=loader)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    args = p.parse_args()

    config = make_config(args)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps):
        chunk = torch.randint(0, args.vocab, (args.batch, args.ctx + 1), generator=g)
        batches.append({"tokens": chunk[:, :-1], "targets": chunk[:, 1:]})
    tokens = args.steps * args.batch * args.ctx

    lightning_loop(config, batches[:3])  # warm up both code paths once
    plain_loop(config, batches[:3])
    ratios = []
    for r in range(args.repeats):
        t_plain = plain_loop(config, batches)
        t_light = lightning_loop(config, batches)
        ratios.append(t_plain / t_light)
        print(f"repeat {r}: plain {tokens / t_plain:,.0f} tok/s, lightning {tokens / t_light:,.0f} tok/s, "
              f"ratio {ratios[-1]:.3f}")
    print(f"median ratio (lightning / plain tokens/s): {statistics.median(ratios):.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
