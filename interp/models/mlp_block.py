"""A Linear + nonlinearity block with hooks before and after the nonlinearity."""

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class MLPBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, act_fn: str):
        super().__init__()
        if act_fn not in ACTIVATIONS:
            raise ConfigError(f"unknown act_fn {act_fn!r}; choose one of {sorted(ACTIVATIONS)}.")
        self.linear = nn.Linear(d_in, d_out)
        self.hook_pre = HookPoint()
        self.act = ACTIVATIONS[act_fn]()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_post(self.act(self.hook_pre(self.linear(x))))
