"""Training wall time and throughput (tokens/s for LMs, rows/s otherwise: examples, SAE activations).

Tokens are input positions, padding included (qa pads to data.seq_len). Two rates: per training step
(`throughput/<unit>_per_s`: the steps alone) and over the training loop (`..._per_s_loop`: the steps and
the data they wait for, e.g. activations harvested while training; validation left out), the rate to
compare with a trainer timed end to end.
"""

import time

import pytorch_lightning as pl


class Throughput(pl.Callback):
    def __init__(self):
        self.items = 0
        self.unit = "rows"
        self.seconds = 0.0
        self._t0 = None
        self.loop_seconds = 0.0
        self._loop_t0 = None

    def _loop_start(self, *_):
        self._loop_t0 = time.perf_counter()

    def _loop_stop(self, *_):
        if self._loop_t0 is not None:
            self.loop_seconds += time.perf_counter() - self._loop_t0
            self._loop_t0 = None

    on_train_start = on_validation_end = _loop_start
    on_train_end = on_validation_start = _loop_stop

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
        out = {"time/train_step_s": self.seconds,
               f"throughput/{self.unit}_per_s": world_size * self.items / self.seconds}
        if self.loop_seconds > 0:
            out |= {"time/train_loop_s": self.loop_seconds,
                    f"throughput/{self.unit}_per_s_loop": world_size * self.items / self.loop_seconds}
        return out
