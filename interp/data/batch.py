"""The batch format: what every dataloader yields and every task, analysis and SAE reads.

Language-model batches (`LMBatch`): `tokens` [B, T] input ids, `targets` [B, T] next-token
ids with IGNORE_INDEX where no loss is taken (prompt parts, padding), and, for padded data
only, `attention_mask` [B, T] (False on padding). Regression batches (`RegressionBatch`):
`x` [B, n] inputs and `y` [B] targets. Other keys (e.g. a category id) may ride along;
consumers ignore keys they do not know.
"""

from __future__ import annotations

from typing import TypedDict

import torch

IGNORE_INDEX = -100   # torch.nn.functional.cross_entropy's default ignore_index


class LMBatch(TypedDict, total=False):
    tokens: torch.Tensor
    targets: torch.Tensor
    attention_mask: torch.Tensor


class RegressionBatch(TypedDict):
    x: torch.Tensor
    y: torch.Tensor


def model_inputs(batch: dict) -> torch.Tensor:
    """The model's input: `tokens` of a language-model batch, `x` of a regression batch."""
    return batch["tokens"] if "tokens" in batch else batch["x"]


def is_lm_batch(batch: dict) -> bool:
    return "targets" in batch


def padding_mask(batch: dict) -> torch.Tensor | None:
    """Bool [B, T] of real (non-padding) positions, or None when the data is never padded."""
    return batch.get("attention_mask")


def scored(targets: torch.Tensor) -> torch.Tensor:
    """Bool [B, T]: positions whose next token is scored."""
    return targets != IGNORE_INDEX


def through_last_target(targets: torch.Tensor) -> torch.Tensor:
    """Bool [B, T]: positions up to each row's last scored target (what follows is padding)."""
    s = scored(targets)
    last = torch.where(s.any(1), s.shape[1] - 1 - s.flip(1).int().argmax(1), -1)
    return torch.arange(targets.shape[1]) <= last[:, None]
