"""`code`: the running interpreter's standard-library `.py` sources (real code + English docstrings)."""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from interp.data.text_files import FileStreamConfig, FileStreamDataModule


@dataclass
class CodeConfig(FileStreamConfig):
    name: str = "code"
    # Directory names skipped anywhere below stdlib. The test suites are excluded by
    # default: 17 of 31 MB, dominated by test data rather than ordinary code.
    exclude_dirs: List[str] = field(
        default_factory=lambda: ["site-packages", "dist-packages", "test", "tests", "idle_test"]
    )


class CodeDataModule(FileStreamDataModule):
    def files(self) -> list[Path]:
        root, skip = sysconfig.get_paths()["stdlib"], set(self.cfg.exclude_dirs)
        found = []
        for d, subdirs, names in os.walk(root):
            subdirs[:] = [s for s in subdirs if s not in skip]  # prune instead of filtering after
            found += [Path(d, n) for n in names if n.endswith(".py")]
        return sorted(found)
