"""Errors a user can cause and fix. The CLI prints them as one line, without a traceback."""

from __future__ import annotations

import os
from pathlib import Path


class VitcycleError(Exception):
    """Base class: the message names the file or flag at fault and the fix."""


class DataError(VitcycleError):
    """A data folder, manifest or data option is missing or unusable."""


class ImageReadError(DataError):
    """An image file cannot be read or decoded (missing, truncated, not an image)."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        # One positional message argument, so DataLoader workers can re-raise it as this type.
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class ImageTooLargeError(ImageReadError):
    """An image whose header gives more pixels than the caller's limit (refused before decoding)."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, limit: float):
        self.width, self.height, self.limit = width, height, limit
        super().__init__(
            f"cannot read image {path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit "
            f"of {limit / 1e6:g}; shrink the image or raise the limit",
            path,
        )

    def __reduce__(self):  # DataLoader workers re-raise errors by pickling them
        return type(self), (self.path, self.width, self.height, self.limit)


class ImageWriteError(VitcycleError):
    """An image cannot be encoded or written (unsupported extension, unwritable place)."""


class CheckpointError(VitcycleError):
    """A checkpoint file is missing, unreadable, or not a vitcycle CycleGAN checkpoint."""


class StyleError(VitcycleError):
    """A style reference was given to a generator without a style encoder."""


class TranslateError(VitcycleError):
    """An input/output path combination `vitcycle translate` refuses (overwrite, nesting, format)."""


class VitcycleWarning(UserWarning):
    """Something was skipped or fell back; the run goes on."""


class NonFiniteLossError(VitcycleError):
    """A loss became NaN or infinite; training stops instead of going on silently."""


class InceptionWeightsError(VitcycleError):
    """The Inception weights for FID/KID are neither cached, nor given, nor downloadable."""


class ExportError(VitcycleError):
    """Export is impossible here (missing packages, bad size) or its result differs from PyTorch."""


class JudgeError(VitcycleError):
    """A judge file or judge option is unusable."""


class TrainingInterrupted(Exception):
    """Training stopped on a signal (a scheduler's SIGTERM, SIGUSR1, Ctrl+C) after saving a resumable checkpoint.

    Not a user error: the CLI prints `message` (how to resume) and exits 128 + `signum`, as a process
    killed by that signal would, so a scheduler sees the job as interrupted and can requeue it.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
