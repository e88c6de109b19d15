"""`hf`: token-stream LM data from a Hugging Face dataset's text column.

`path` is a hub id (e.g. roneneldan/TinyStories) or a local builder
("json", "text", "csv", "parquet") together with `data_files`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

from interp import hub
from interp.data.token_stream import TokenStreamConfig, TokenStreamDataModule
from interp.errors import DataError

LOCAL_BUILDERS = ("json", "text", "csv", "parquet", "arrow", "pandas", "imagefolder", "audiofolder")


@dataclass
class HFConfig(TokenStreamConfig):
    name: str = "hf"
    path: str = "roneneldan/TinyStories"
    config_name: Optional[str] = None
    split: str = "train"  # datasets slicing works too, e.g. "train[:10%]"
    data_files: Any = None  # str | list | dict, for local builders
    text_column: str = "text"
    max_examples: Optional[int] = 100_000  # first N rows of the split
    val_fraction: float = 0.1  # every round(1/val_fraction)-th row is validation


class HFDataModule(TokenStreamDataModule):
    @cached_property
    def dataset(self):
        import datasets  # heavy import, only needed here

        c = self.cfg
        # A hub dataset with the hub unreachable: read the local cache only, at once, instead of retrying.
        offline = not _local(c.path) and not hub.hub_reachable()
        try:
            with hub.offline_mode() if offline else contextlib.nullcontext():
                ds = datasets.load_dataset(c.path, name=c.config_name, split=c.split, data_files=c.data_files)
        except (OSError, ValueError, ImportError) as e:  # ConnectionError/DatasetNotFoundError are OSErrors
            first_line = (str(e).strip().splitlines() or [""])[0]
            why = "the Hugging Face hub is unreachable and it is not in the local cache: " if offline else ""
            raise DataError(
                f"Could not load Hugging Face dataset '{c.path}' (config {c.config_name!r}, split {c.split!r}): "
                f"{why}{type(e).__name__}: {first_line}. Fix: check the network connection and that "
                f"HF_DATASETS_OFFLINE/HF_HUB_OFFLINE are unset (or that the dataset is already in the "
                f"local HF cache), and check data.path / data.config_name / data.split."
            ) from None
        if c.text_column not in ds.column_names:
            raise DataError(
                f"Dataset '{c.path}' has no column '{c.text_column}'. "
                f"Set data.text_column=<one of {ds.column_names}>."
            )
        if c.max_examples is not None:
            ds = ds.select(range(min(c.max_examples, len(ds))))
        self.summary["examples"] = len(ds)
        return ds

    def source(self) -> dict:
        # datasets' fingerprint changes with the data files and every transform applied.
        return {"fingerprint": self.dataset._fingerprint, "column": self.cfg.text_column, "k": self._every()}

    def _every(self) -> int:
        f = self.cfg.val_fraction
        if not 0 < f <= 0.5:
            raise DataError(f"data.val_fraction={f} must be in (0, 0.5].")
        return round(1 / f)

    def documents(self) -> tuple[list[str], list[str]]:
        texts, k = self.dataset[self.cfg.text_column], self._every()
        train = [t for i, t in enumerate(texts) if i % k != k - 1]
        val = [t for i, t in enumerate(texts) if i % k == k - 1]
        return train, val


def _local(path: str) -> bool:
    """A packaged builder with local files, or a folder / script on disk: no hub involved."""
    return path in LOCAL_BUILDERS or Path(path).expanduser().exists()

