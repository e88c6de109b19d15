"""`arithmetic`: pointer arithmetic. Row = [col1 (n digits), ptr1, col2 (n digits), ptr2],
target |col1[ptr1] - col2[ptr2]|. The model must route by pointer, then subtract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interp.data.base import ArrayDataset, BaseDataConfig, BaseDataModule
from interp.errors import ConfigError

N_CLASSES = 10  # digits 0-9; pointers 0..n-1 share the same one-hot width


@dataclass
class ArithmeticConfig(BaseDataConfig):
    name: str = "arithmetic"
    kind: str = "regression"
    n_values: int = 4  # digits per column: rows have 2n+2 inputs
    num_train: int = 1_000_000
    num_val: int = 10_000
    num_test: int = 10_000
    batch_size: int = 512


def generate(n_rows: int, n_values: int, seed) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, 10, size=(n_rows, 2, n_values), dtype=np.int64)
    ptrs = rng.integers(0, n_values, size=(n_rows, 2, 1), dtype=np.int64)
    x = np.concatenate([cols, ptrs], axis=2).reshape(n_rows, 2 * n_values + 2)  # col1, ptr1, col2, ptr2
    picked = np.take_along_axis(cols, ptrs, axis=2)[..., 0]
    return {"x": x, "y": np.abs(picked[:, 0] - picked[:, 1]).astype(np.float32)}


def ground_truth(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-row latent variables of a batch `x` [B, 2n+2]: ptr1, ptr2, a=col1[ptr1], b=col2[ptr2], target."""
    n = (x.shape[1] - 2) // 2
    ptr1, ptr2 = x[:, n], x[:, 2 * n + 1]
    a = x[:, :n].gather(1, ptr1[:, None])[:, 0]
    b = x[:, n + 1 : 2 * n + 1].gather(1, ptr2[:, None])[:, 0]
    return {"ptr1": ptr1, "ptr2": ptr2, "a": a, "b": b, "target": (a - b).abs().float()}


class ArithmeticDataModule(BaseDataModule):
    kind = "regression"

    def __init__(self, cfg: ArithmeticConfig, seed: int):
        super().__init__(cfg, seed)
        if not 1 <= cfg.n_values <= N_CLASSES:
            raise ConfigError(
                f"data.n_values={cfg.n_values} must be in [1, {N_CLASSES}] (pointers share the digits' one-hot width)."
            )
        if min(cfg.num_train, cfg.num_val, cfg.num_test) < 1 or cfg.num_train < cfg.batch_size:
            raise ConfigError("data.num_train/num_val/num_test must be >= 1 and num_train >= data.batch_size.")
        self.n_inputs = 2 * cfg.n_values + 2
        self.n_classes = N_CLASSES
        self.seq_len = self.n_inputs
        self.summary.update(train_examples=cfg.num_train, val_examples=cfg.num_val, test_examples=cfg.num_test)

    def build(self):
        # Independent streams per split, so test rows are fresh draws, not a train prefix.
        seeds = np.random.SeedSequence([self.seed, 0xA7]).spawn(3)
        sizes = (self.cfg.num_train, self.cfg.num_val, self.cfg.num_test)
        return tuple(ArrayDataset(generate(n, self.cfg.n_values, s)) for n, s in zip(sizes, seeds))
