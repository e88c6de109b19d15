"""Training and validation data of an SAE run.

Training batches are activation rows [batch_size, d_in] ([batch_size, d_in + d_out] for a transcoder:
its input beside its target, interp.sae.sites; every hook of a run of several dictionaries side by side,
interp.sae.dictionaries):
- `source=cache`: harvested once into the shared on-disk cache (see cache.py),
  then read block by block (`buffer_tokens` rows in memory), blocks in random
  order and rows shuffled within a block, epoch after epoch.
- `source=stream`: harvested while training into a shuffle buffer of
  `buffer_tokens` rows; when full it is shuffled, half is served, half kept
  and mixed with fresh rows (as SAELens's mixing buffer).
Validation batches are the base data's own validation batches: the task runs
the base model on them, so downstream metrics use real inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cached_property
from itertools import islice

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from interp.errors import ConfigError
from interp.models.hooks import to_device
from interp.sae import harvest
from interp.sae.cache import CacheReader, CacheWriter, get_or_build
from interp.sae.sites import Sites
from interp.sae.spec import SAESpec, sites

log = logging.getLogger(__name__)


def endless(loader) -> Iterator[dict]:
    while True:
        yield from loader


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class CacheStream(IterableDataset):
    def __init__(self, acts_path, batch_size: int, block_rows: int, seed: int, shard: bool = True):
        self.reader = CacheReader(acts_path)
        self.batch_size, self.seed, self.shard = batch_size, seed, shard
        self.block_rows = max(batch_size, block_rows // batch_size * batch_size)
        if self.reader.n_rows < batch_size:
            raise ConfigError(f"the activation cache has {self.reader.n_rows} rows, fewer than sae.batch_size="
                              f"{batch_size}. Fix: raise sae.harvest_tokens or lower sae.batch_size.")

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = _rank_and_world() if self.shard else (0, 1)
        order = np.random.default_rng(self.seed)           # the same block order on every DDP rank ...
        rows = np.random.default_rng([self.seed, rank])
        while True:   # epochs; Lightning stops at max_steps
            for block in self.reader.blocks(self.block_rows, order, rank, world):   # ... each rank its own blocks
                perm = rows.permutation(len(block))
                for j in range(0, len(block) - self.batch_size + 1, self.batch_size):
                    yield torch.from_numpy(block[perm[j:j + self.batch_size]]).float()


class StreamBuffer(IterableDataset):
    def __init__(self, base_model, loader, sites: Sites, batch_size: int, buffer_rows: int, seed: int,
                 shard: bool = True):
        self.base_model, self.loader, self.sites, self.shard = base_model, loader, sites, shard
        self.batch_size, self.buffer_rows, self.seed = batch_size, max(2 * batch_size, buffer_rows), seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = _rank_and_world() if self.shard else (0, 1)
        g = torch.Generator().manual_seed(self.seed + rank)
        base_batches = islice(endless(self.loader), rank, None, world)   # each DDP rank its own base batches
        source = harvest.stream(self.base_model, base_batches, self.sites)
        buffer = torch.empty(0)
        while True:
            parts = [buffer]
            n = len(buffer)
            while n < self.buffer_rows:
                rows = next(source).cpu().float()
                parts.append(rows)
                n += len(rows)
            buffer = torch.cat(parts)[: self.buffer_rows]
            buffer = buffer[torch.randperm(len(buffer), generator=g)]
            half = len(buffer) // 2 // self.batch_size * self.batch_size
            for i in range(0, half, self.batch_size):
                yield buffer[i:i + self.batch_size]
            buffer = buffer[half:]


class FirstBatches:
    """The first n batches of a loader: one evaluation "dataloader" of fixed, cheap size."""

    def __init__(self, loader, n: int):
        self.loader, self.n = loader, n

    def __iter__(self):
        return islice(iter(self.loader), self.n)

    def __len__(self) -> int:
        return min(self.n, len(self.loader))


class ActivationDataModule(pl.LightningDataModule):
    def __init__(self, base_model, base_dm, spec: SAESpec, cache_fields: dict, seed: int, where=None):
        """`where`: the hooks harvested (a Sites, or the Layout of several dictionaries); default: the spec's."""
        super().__init__()
        self.base_model, self.base_dm, self.spec = base_model, base_dm, spec
        self.sites = where if where is not None else sites(spec)
        self.cache_fields, self.seed = cache_fields, seed
        self.cache = None       # CacheHandle once set up (source=cache)
        self.tokenizer = getattr(base_dm, "tokenizer", None)
        self.summary: dict = {}

    def setup(self, stage: str | None = None) -> None:
        self.base_dm.setup(stage or "fit")
        if self.spec.source == "cache" and self.cache is None and stage in (None, "fit"):
            c = self.spec.cache
            self.cache = get_or_build(c.root, self.cache_fields, sum(self.widths), self._harvest,
                                      path=c.path, verify_hash=c.verify)
            harvested = torch.tensor(int(self.cache.harvested))
            if self.trainer is not None:   # under DDP the ranks race for the cache lock: count the run's harvests
                strategy = self.trainer.strategy
                harvested = strategy.reduce(harvested.to(strategy.root_device), reduce_op="sum")
            self.summary.update(cache=str(self.cache.path), cache_harvested=int(harvested))

    @cached_property
    def widths(self) -> tuple[int, ...]:   # one forward of the base model: each hook's width (input, target)
        return harvest.hook_widths(self.base_model, next(iter(self.base_dm.val_dataloader())), self.sites)

    @property
    def d_in(self) -> int:
        return self.widths[0]

    def _harvest(self, writer: CacheWriter) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        to_device(self.base_model, device)
        log.info("harvesting %d activations at %s", writer.n_rows, self.sites.describe())
        with tqdm(total=writer.n_rows, desc=f"harvest {self.sites.describe()}", unit="tok", leave=False) as bar:
            for rows in harvest.stream(self.base_model, endless(self.base_dm.train_dataloader()), self.sites):
                before = writer.written
                left = writer.write(rows)
                bar.update(writer.written - before)
                if left == 0:
                    break

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._training_rows(shard=True), batch_size=None, num_workers=0)

    def norm_batches(self) -> Iterator[torch.Tensor]:
        """Training batches for estimating activation statistics: the same ones on every DDP rank."""
        return iter(self._training_rows(shard=False))

    def _training_rows(self, shard: bool) -> IterableDataset:
        s = self.spec
        if s.source == "cache":
            return CacheStream(self.cache.acts_path, s.batch_size, s.buffer_tokens, self.seed, shard)
        if s.source == "stream":
            return StreamBuffer(self.base_model, self.base_dm.train_dataloader(), self.sites, s.batch_size,
                                s.buffer_tokens, self.seed, shard)
        raise ConfigError(f"sae.source={s.source!r}; choose cache or stream.")

    def val_dataloader(self):
        return FirstBatches(self.base_dm.val_dataloader(), self.spec.eval_batches)

    def test_dataloader(self):
        return self.val_dataloader()
