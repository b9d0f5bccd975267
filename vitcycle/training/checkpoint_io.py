"""Checkpoints written beside their destination, flushed to the disk, then renamed over it.

Lightning's `TorchCheckpointIO` writes through fsspec, whose local transaction writes into the system's
temporary folder and then moves the file: where the run folder is on another filesystem, the move is a
copy that truncates the destination first, so a full disk destroyed the previous good `best.ckpt`.
Here the bytes go to a temporary file in the checkpoint's own folder (`outputs.replaced_atomically`,
fsync), and only a complete file takes the old one's place; a full disk is one line naming the folder.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from vitcycle.outputs import replaced_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` (reading unchanged) whose saves replace a checkpoint only with a complete one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # in memory first: the bytes to write, and their size for the message
        with replaced_atomically(path, durable=True, size=buffer.getbuffer().nbytes) as tmp, open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
