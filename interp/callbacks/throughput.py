"""Training wall time and throughput (tokens/s for LMs, rows/s otherwise: examples, SAE activations).

Tokens are input positions, padding included (qa pads to data.seq_len).
"""

import time

import pytorch_lightning as pl


class Throughput(pl.Callback):
    def __init__(self):
        self.items = 0
        self.unit = "rows"
        self.seconds = 0.0
        self._t0 = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Per-step timing leaves validation and checkpointing out of the rate.
        self.seconds += time.perf_counter() - self._t0
        if isinstance(batch, dict) and "tokens" in batch:
            self.unit = "tokens"
            self.items += batch["tokens"].numel()
        else:  # regression rows, or SAE activation rows (a tensor)
            self.items += len(batch["x"] if isinstance(batch, dict) else batch)

    def summary(self, world_size: int = 1) -> dict[str, float]:
        if self.seconds == 0:
            return {}
        return {"time/train_step_s": self.seconds,
                f"throughput/{self.unit}_per_s": world_size * self.items / self.seconds}
