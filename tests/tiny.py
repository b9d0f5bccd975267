"""Tiny networks, configs and checkpoints shared by the tests (CPU-sized: seconds per fit)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from vitcycle.models import ResnetGenerator, ViTTranslator

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


def _perturbed(gen: nn.Module, scale: float, seed: int) -> dict[str, torch.Tensor]:
    """The generator's state dict plus Gaussian noise (so it is not the identity map)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
        for k, v in gen.state_dict().items()
    }


def write_checkpoint(
    path: Path,
    *,
    ema: bool = True,
    style_encoder: bool = False,
    resnet: bool = False,
    class_path: str | None = None,
) -> Path:
    """A file shaped like a CycleGAN checkpoint of LightningCLI, EMA weights different from the raw ones."""
    if resnet:
        init, cls, default_path = {"ngf": 8, "n_blocks": 1}, ResnetGenerator, "vitcycle.models.baselines.ResnetGenerator"
    else:
        init = {**TINY_VIT, "style_encoder": style_encoder, "style_dim": 32, "style_depth": 1}
        cls, default_path = ViTTranslator, "vitcycle.models.generator.ViTTranslator"
    state: dict[str, torch.Tensor] = {}
    hparams: dict = {"lambda_cycle": 10.0, "gan_loss": "lsgan"}
    for i, name in enumerate(("gen_ab", "gen_ba")):
        torch.manual_seed(i)
        gen = cls(**init)
        state |= {f"{name}.{k}": v for k, v in _perturbed(gen, 0.05, seed=10 + i).items()}
        if ema:
            state |= {f"{name}_ema.module.{k}": v for k, v in _perturbed(gen, 0.05, seed=20 + i).items()}
            state[f"{name}_ema.n_averaged"] = torch.tensor(2)
        hparams[name] = {"class_path": class_path or default_path, "init_args": dict(init)}
    state["disc_a.model.0.weight"] = torch.zeros(4, 3, 4, 4)
    state["disc_b.model.0.weight"] = torch.zeros(4, 3, 4, 4)
    ckpt = {
        "epoch": 0,
        "global_step": 2,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": state,
        "hyper_parameters": hparams,
        "datamodule_hyper_parameters": {"image_size": SIZE, "batch_size": 2},
    }
    torch.save(ckpt, path)
    return path


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
