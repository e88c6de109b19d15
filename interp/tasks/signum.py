"""Signum: sign descent with momentum (Bernstein et al. 2018, "signSGD: compressed optimisation for non-convex
problems", https://arxiv.org/abs/1802.04434). Every weight moves by exactly `lr` per step in the direction of
its gradient's running mean, so the step size does not depend on the gradient's scale; EleutherAI's sparsify
trains its SAEs with sign descent by default. torch has no such optimiser."""

from __future__ import annotations

import torch


class Signum(torch.optim.Optimizer):
    """p <- p * (1 - lr * weight_decay) - lr * sign(m),  m <- momentum * m + (1 - momentum) * grad."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"Signum needs lr > 0, 0 <= momentum < 1 and weight_decay >= 0; got lr={lr}, "
                             f"momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                m = state["momentum_buffer"]
                m.lerp_(p.grad, 1 - beta)
                if decay:
                    p.mul_(1 - lr * decay)
                p.add_(m.sign(), alpha=-lr)
        return loss
