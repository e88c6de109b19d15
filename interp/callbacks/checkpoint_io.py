"""Checkpoints that survive any kill or full disk.

Lightning saves through fsspec: a temporary file in `$TMPDIR`, then `shutil.move` onto the target.
When the run directory is on another filesystem than `$TMPDIR` (a tmpfs /tmp; NFS or Lustre outputs
on a cluster) that move truncates `last.ckpt` and copies into it, so a kill during the copy leaves a
0-byte checkpoint, and a disk that fills cuts a good `best.ckpt` short. Here a local checkpoint is
written as a temporary file beside it, fsynced, then renamed over it (interp.files.atomic_writer): the
old checkpoint stays loadable until the new one is whole, and a full disk is one clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.plugins.io import TorchCheckpointIO

from interp.files import atomic_writer


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic; remote URLs (s3://, gs://) keep Lightning's way."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        last = Path(path).parent / "last.ckpt"
        fix = "or set hydra.run.dir to another disk" + (
            f"; resume from the last checkpoint with python train.py ckpt_path={last}" if last.is_file() else "")
        with atomic_writer(path, "wb", fix=fix) as f:
            torch.save(checkpoint, f)
