"""Tiny networks, configs and checkpoint edits shared by the tests (CPU-sized: seconds per fit)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

SIZE = 32  # training size of the test checkpoints
TINY_VIT = {
    "encoder": "vit_tiny_patch16_224",
    "img_size": SIZE,
    "encoder_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 1},
    "encoder_indices": [0, 1],
    "decoder_depth": 1,
    "head_dim": 16,
    "num_style_tokens": 2,
}


def edited_checkpoint(src: Path, dst: Path, edit: Callable[[dict], object]) -> Path:
    """A copy at `dst` of the real checkpoint `src`, changed by `edit`: an older, broken or hostile file."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint, with the image pools' extra state as tensors too (to compare runs)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v["images"] if k.endswith("_extra_state") else v for k, v in state.items()}


def legacy_checkpoint(src: Path, dst: Path) -> Path:
    """`src` as vitcycle wrote it before checkpoint format 1: LightningCLI's hyperparameters, no `vitcycle` entry."""
    return edited_checkpoint(src, dst, lambda ckpt: ckpt.pop("vitcycle"))


TINY_DISC = {"n_layers": 2, "ndf": 8}
JUDGE_ARGS = {"size": 32, "width": 16, "steps": 150, "batch_size": 16, "log_every": 0}
"""A judge small enough to train in seconds on the 32 px built-in data."""


def tiny_config(tmp_path: Path, data: Path, **model_overrides) -> Path:
    """configs/quickstart.yaml shrunk to 32 px, tiny networks, one CPU epoch; written to tmp_path."""
    config = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    config["trainer"].update(
        accelerator="cpu",
        max_epochs=1,
        check_val_every_n_epoch=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path / "run"),
        logger={
            "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(tmp_path / "run"), "name": "tb", "version": 0},
        },
    )
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["dirpath"] = str(tmp_path / "ckpt")
        else:
            callback["init_args"]["every_n_batches"] = 2
    gen = {"class_path": "vitcycle.models.ViTTranslator", "init_args": dict(TINY_VIT)}
    disc = {"class_path": "vitcycle.models.PatchDiscriminator", "init_args": dict(TINY_DISC)}
    config["model"].update({"gen_ab": gen, "gen_ba": gen, "disc_a": disc, "disc_b": disc, **model_overrides})
    config["data"].update(
        dir_a=str(data / "trainA"),
        dir_b=str(data / "trainB"),
        val_pairs=str(data / "pairs_val.csv"),
        image_size=SIZE,
        batch_size=4,
        num_workers=0,
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------- images


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB uint8 image (random low-frequency colours), so resizing barely changes it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def tiny_cyclegan(gen: dict | None = None, gen_ba: object = None, **options):
    """A CycleGAN of tiny ViT generators (`TINY_VIT`, updated by `gen`) and PatchGAN discriminators, for 32 px
    batches built in Python. `options` as CycleGAN takes them; option groups may be given as dicts
    (`cycle_b={"space": "luma"}`); `gen_ba` replaces the second generator (a ResNet, say)."""
    from vitcycle.models import PatchDiscriminator, ViTTranslator
    from vitcycle.training.cyclegan import CycleGAN
    from vitcycle.training.options import (
        Compile,
        CycleLoss,
        DiscriminatorInput,
        GradientPenalty,
        IdentityLoss,
        Schedule,
    )

    groups = {"cycle_a": CycleLoss, "cycle_b": CycleLoss, "identity": IdentityLoss, "disc_input": DiscriminatorInput,
              "gradient_penalty": GradientPenalty, "schedule": Schedule, "compile": Compile}
    options = {k: groups[k](**v) if k in groups and isinstance(v, dict) else v for k, v in options.items()}
    vit = {**TINY_VIT, **(gen or {})}
    return CycleGAN(ViTTranslator(**vit), gen_ba if gen_ba is not None else ViTTranslator(**vit),
                    PatchDiscriminator(**TINY_DISC), PatchDiscriminator(**TINY_DISC), **options)


class SignalAt(pl.Callback):
    """A callback (YAML `class_path: tiny.SignalAt`) that sends `signal_name` to its own process at the start of
    training batch `batch` (counted from 0 over the run), or, with `during_validation`, in the first
    validation after that batch."""

    def __init__(self, signal_name: str = "SIGTERM", batch: int = 1, during_validation: bool = False) -> None:
        self.signum = getattr(signal, signal_name)
        self.batch, self.during_validation, self.sent = batch, during_validation, False

    def _send(self) -> None:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step // 2 == self.batch and not self.during_validation:
            self._send()

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.during_validation and trainer.global_step // 2 > self.batch and not trainer.sanity_checking:
            self._send()
