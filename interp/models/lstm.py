"""LSTM language model with one hook per layer.

Layers are separate single-layer `nn.LSTM`s so that every layer's hidden
states are observable (a multi-layer `nn.LSTM` only exposes the last one).

Hook points (B batch, T positions):
    hook_embed              [B, T, d_embed]   token embeddings
    blocks.{i}.hook_hidden  [B, T, d_hidden]  hidden state h_t of layer i
"""

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint


class LSTMLayer(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(d_in, d_hidden, batch_first=True)
        self.hook_hidden = HookPoint()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        return self.dropout(self.hook_hidden(h))


class LSTMLM(HookedRootModule):
    def __init__(self, d_vocab: int, d_embed: int = 128, d_hidden: int = 256,
                 n_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(d_vocab, d_embed)
        self.hook_embed = HookPoint()
        widths = [d_embed] + [d_hidden] * n_layers
        self.blocks = nn.ModuleList(LSTMLayer(a, b, dropout) for a, b in zip(widths[:-1], widths[1:]))
        self.unembed = nn.Linear(d_hidden, d_vocab)
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.hook_embed(self.embed(tokens))
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)
