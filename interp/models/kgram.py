"""k-gram MLP language model: predicts the next token from the last k tokens.

Hook points (B batch, T positions, E d_embed, H d_hidden):
    hook_embed            [B, T, E]    token embeddings
    hook_window           [B, T, k*E]  embeddings of tokens t-k+1..t, oldest first
                                       (zeros before the start of the sequence)
    blocks.{i}.hook_pre   [B, T, H]    hidden layer i before the nonlinearity
    blocks.{i}.hook_post  [B, T, H]    hidden layer i after the nonlinearity
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from interp.models.mlp_block import MLPBlock


class KGramMLP(HookedRootModule):
    def __init__(self, d_vocab: int, k: int = 3, d_embed: int = 64, d_hidden: int = 512,
                 n_layers: int = 1, act_fn: str = "gelu"):
        super().__init__()
        self.k = k
        self.embed = nn.Embedding(d_vocab, d_embed)
        self.hook_embed = HookPoint()
        self.hook_window = HookPoint()
        widths = [k * d_embed] + [d_hidden] * n_layers
        self.blocks = nn.ModuleList(MLPBlock(a, b, act_fn) for a, b in zip(widths[:-1], widths[1:]))
        self.unembed = nn.Linear(widths[-1], d_vocab)
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.hook_embed(self.embed(tokens))                       # [B, T, E]
        padded = F.pad(e, (0, 0, self.k - 1, 0))                      # zeros before position 0
        window = padded.unfold(1, self.k, 1)                          # [B, T, E, k]
        x = self.hook_window(window.transpose(-1, -2).flatten(-2))    # [B, T, k*E]
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)
