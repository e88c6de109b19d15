"""`text_files`: token-stream LM data from local files matched by glob patterns."""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import List, Optional

from interp.data.token_stream import TokenStreamConfig, TokenStreamDataModule
from interp.errors import DataError


@dataclass
class FileStreamConfig(TokenStreamConfig):
    val_every: int = 10  # every val_every-th file (sorted order) is validation
    max_files: Optional[int] = None  # first N files after sorting (fast runs/tests)


@dataclass
class TextFilesConfig(FileStreamConfig):
    name: str = "text_files"
    paths: List[str] = field(default_factory=list)  # globs; `**` recurses


class FileStreamDataModule(TokenStreamDataModule):
    """Splits by file so no validation text is ever seen (even partly) in training."""

    def files(self) -> list[Path]:
        raise NotImplementedError

    @cached_property
    def split_files(self) -> tuple[list[Path], list[Path]]:
        files = self.files()[: self.cfg.max_files]
        k = self.cfg.val_every
        if k < 2:
            raise DataError(f"data.val_every={k} leaves no training files; use a value >= 2.")
        train = [p for i, p in enumerate(files) if i % k != k - 1]
        val = [p for i, p in enumerate(files) if i % k == k - 1]
        if not train or not val:
            raise DataError(
                f"{len(files)} files give an empty {'val' if train else 'train'} split with "
                f"data.val_every={k}: use at least {k} files (raise data.max_files)."
            )
        return train, val

    def source(self) -> dict:
        train, val = self.split_files
        stat = lambda p: (str(p), p.stat().st_size, p.stat().st_mtime_ns)  # noqa: E731
        return {"python": sys.version, "train": [stat(p) for p in train], "val": [stat(p) for p in val]}

    def documents(self) -> tuple[list[str], list[str]]:
        # errors="replace": a few files are deliberately not UTF-8 (encoding tests).
        read = lambda ps: [p.read_bytes().decode("utf-8", errors="replace") for p in ps]  # noqa: E731
        train, val = self.split_files
        return read(train), read(val)

    def build(self):
        train, val = self.split_files
        self.summary.update(train_files=len(train), val_files=len(val))
        return super().build()


class TextFilesDataModule(FileStreamDataModule):
    def files(self) -> list[Path]:
        matched = {
            Path(p).resolve()
            for pattern in self.cfg.paths
            for p in glob.glob(os.path.expanduser(pattern), recursive=True)
            if os.path.isfile(p)
        }
        if not matched:
            raise DataError(
                f"data.paths matched no files: {list(self.cfg.paths)} (cwd: {os.getcwd()}). "
                f"Use absolute paths or globs such as '/data/corpus/**/*.txt'."
            )
        return sorted(matched)
