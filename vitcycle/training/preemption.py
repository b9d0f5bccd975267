"""Preemption: on SIGTERM, SIGUSR1 or SIGINT, training finishes its batch, saves a resumable `last.ckpt`
and stops with `TrainingInterrupted` (the CLI exits 128 + the signal's number, e.g. 143 for SIGTERM).

Lightning turns SIGTERM into a stop at the end of the batch (or in the middle of a validation) but saves
nothing and exits 0, so a scheduler never requeues the job; SIGINT raises in the middle of a batch. Here
the three signals only set a flag, read at the end of each training batch: the checkpoint is written
there, as a periodic one is, so resuming from it gives the weights of an uninterrupted run. A second
Ctrl+C stops at once, without a checkpoint.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from vitcycle.errors import TrainingInterrupted

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGINT") if hasattr(signal, name))


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where `last.ckpt` goes: the folder of the run's ModelCheckpoint named "last", else of its first one."""
    callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
    named = [c for c in callbacks if c.filename == "last"] or callbacks
    folder = Path(named[0].dirpath) if named else Path(trainer.default_root_dir) / "checkpoints"
    return folder / "last.ckpt"


class Preemption(pl.Callback):
    """Save `last.ckpt` and stop after the current batch when a stop signal arrives (see the module)."""

    def __init__(self) -> None:
        self._signum: int | None = None
        self._previous: dict[int, object] = {}

    def _note(self, signum: int, frame: object) -> None:
        if self._signum is not None and signum == signal.SIGINT:  # Ctrl+C again: stop now
            raise KeyboardInterrupt
        self._signum = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning registered its SIGTERM handler, which this one replaces while training: Lightning's
        # teardown puts back the handlers of before the fit, however the fit ends.
        self._signum = None
        for signum in STOP_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._note)
            except ValueError:  # not the main thread (a notebook's worker, say): the signal stays as it was
                pass

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        stop = self._signum is not None
        if trainer.world_size > 1:  # every rank stops after the same batch (a collective only under DDP)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)  # every rank calls it; rank 0 writes
        signum = self._signum or signal.SIGTERM  # another rank's signal
        batches = getattr(pl_module, "batches_seen", trainer.global_step)
        raise TrainingInterrupted(signum, f"stopped by {signal.Signals(signum).name} after {batches} batches, "
                                          f"saved to {path}; resume with the same command and --ckpt_path {path}")
