"""MLP for the pointer-arithmetic task: one-hot digits in, one number out.

Input rows are `[col1 (n values), ptr1, col2 (n values), ptr2]` of integers in
0..n_classes-1. One-hot inputs (rather than raw numbers, as in the seed
experiment) make "which digit is at the pointer" a linear lookup.

Hook points (B batch, I = n_inputs * n_classes):
    hook_input            [B, I]  one-hot input
    blocks.{i}.hook_pre   [B, H_i]  hidden layer i before the nonlinearity
    blocks.{i}.hook_post  [B, H_i]  hidden layer i after the nonlinearity
    hook_out              [B]     predicted target
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from interp.models.mlp_block import MLPBlock


class ArithmeticMLP(HookedRootModule):
    def __init__(self, n_values: int = 4, n_classes: int = 10, d_hidden: list[int] = (512, 64),
                 act_fn: str = "relu"):
        super().__init__()
        self.n_classes = n_classes
        self.n_inputs = 2 * n_values + 2
        self.hook_input = HookPoint()
        widths = [self.n_inputs * n_classes, *d_hidden]
        self.blocks = nn.ModuleList(MLPBlock(a, b, act_fn) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], 1)
        self.hook_out = HookPoint()
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_input(F.one_hot(x, self.n_classes).float().flatten(1))
        for block in self.blocks:
            h = block(h)
        return self.hook_out(self.out(h).squeeze(-1))
