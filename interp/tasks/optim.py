"""The optimiser and learning-rate schedule of every task, from the `optim` config group."""

from __future__ import annotations

import math

import torch

from interp.errors import ConfigError

SCHEDULES = ("constant", "cosine", "linear")


def build_optimizers(params, optim: dict, total_steps: int) -> dict:
    """`torch.optim.<optim.name>` over `params` (tensors, or parameter groups each with its
    "lr" when optim.lr is null) with linear warm-up then a constant, cosine or linear schedule
    (down to `min_lr_ratio` of the peak at `total_steps`), in Lightning's configure_optimizers form."""
    o = dict(optim)
    name = o.pop("name")
    warmup = o.pop("warmup_steps", 0)
    schedule = o.pop("schedule", "constant")
    min_lr_ratio = o.pop("min_lr_ratio", 0.0)
    opt_cls = getattr(torch.optim, name, None)
    if opt_cls is None or not isinstance(opt_cls, type):
        raise ConfigError(f"optim.name={name!r} is not a torch.optim optimizer (e.g. AdamW, Adam, SGD).")
    if o.get("lr", 0) is None:   # the parameter groups carry their own (the SAE task's per-dictionary rule)
        if not (isinstance(params, list) and all(isinstance(g, dict) and "lr" in g for g in params)):
            raise ConfigError("optim.lr is null. Fix: set optim.lr to a number (e.g. optim.lr=1e-3).")
        o.pop("lr")
    if "betas" in o:
        o["betas"] = tuple(o["betas"])
    try:
        optimizer = opt_cls(params, **o)
    except TypeError as e:
        raise ConfigError(f"optim: {e}. Remove or rename that field for {name}.") from e
    except ValueError as e:   # torch's own checks: a negative lr, betas outside [0, 1), ...
        raise ConfigError(f"optim: {e}. Fix: set that optim field within its range.") from e
    total = max(1, int(total_steps))
    if schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule={schedule!r}; choose one of {', '.join(SCHEDULES)}.")

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1 - (1 - min_lr_ratio) * progress
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
