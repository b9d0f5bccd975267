"""Self-supervised generator pretraining by masked-patch inpainting, as UVCGAN does (Torbunov et al.,
WACV 2023), on the translation data itself: no downloaded weights needed.

One generator sees images of both domains with a share of square patches blanked out (set to 0,
mid-grey in [-1, 1]) and learns to fill them in; L1 on the masked patches (or the whole image).
UVCGAN's recipe at 256 px: 32x32 patches, 40% masked, AdamW lr = batch * 5e-3 / 512, weight decay
0.05, cosine warm restarts. The mask patch is a multiple of the encoder's patch and scales with
the image (32 px at 256, 8 px at 64). The mask of a step is a function of (seed, step), so a
resumed run draws the same masks. `CycleGAN(pretrained_generator=...)` starts both generators
(and their EMA copies) from the result.
"""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from timm.optim import param_groups_weight_decay
from torch import Tensor, nn
from torchmetrics import MeanMetric

from vitcycle.errors import VitcycleError

_FIXED_STEP = 2**40
"""Mask "step" of validation and grids: fixed, and far from any training step."""


def mask_patch_size(image_size: int, encoder_patch: int, mask_patch: int | None = None) -> int:
    """The side of a masked square: `mask_patch` if given, else image_size / 8 rounded to a multiple
    of the encoder's patch (32 at 256 px with patch 16, 8 at 64 px with patch 8)."""
    if mask_patch is None:
        mask_patch = max(encoder_patch, round(image_size / 8 / encoder_patch) * encoder_patch)
    if mask_patch < 1 or mask_patch % encoder_patch:
        raise VitcycleError(f"mask_patch {mask_patch} must be a positive multiple of the encoder patch {encoder_patch}")
    return mask_patch


def random_patch_mask(
    batch: int, height: int, width: int, patch: int, ratio: float, generator: torch.Generator
) -> Tensor:
    """A (batch, 1, height, width) float mask, 1 on round(ratio * cells) randomly chosen patch cells
    of each image (cells of patch x patch pixels; a partial last row/column counts as a cell)."""
    rows, cols = -(-height // patch), -(-width // patch)
    cells = rows * cols
    n_masked = round(ratio * cells)
    order = torch.argsort(torch.rand(batch, cells, generator=generator), dim=1)  # (B, cells)
    grid = torch.zeros(batch, cells)
    grid.scatter_(1, order[:, :n_masked], 1.0)
    grid = grid.view(batch, 1, rows, cols)
    return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)[:, :, :height, :width]  # (B, 1, H, W)


class MaskedInpainting(pl.LightningModule):
    """Pretrains `generator` to inpaint masked patches of images from both domains.

    Args:
        generator: the generator to pretrain (e.g. `vitcycle.models.ViTTranslator`); its weights
            later start both CycleGAN generators.
        optimizer: optimizer of the generator (AdamW, weight decay 0.05 in the configs). Parameters
            named by the generator's `no_weight_decay()`, biases and norm weights get no decay.
        mask_ratio: share of patch cells masked in each image (UVCGAN: 0.4).
        mask_patch: side of a masked square in pixels, a multiple of the encoder patch; None:
            image size / 8 (see `mask_patch_size`).
        loss_on: "masked" (L1 on the masked pixels, the default) or "image" (L1 on the whole image).
        restart_epochs: epochs of the first cosine cycle of the warm-restart schedule; 0: constant rate.
        seed: seeds the masks (a function of seed and step, so resuming is exact).
    """

    def __init__(
        self,
        generator: nn.Module,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        mask_ratio: float = 0.4,
        mask_patch: int | None = None,
        loss_on: Literal["masked", "image"] = "masked",
        restart_epochs: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise VitcycleError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if loss_on not in ("masked", "image"):
            raise VitcycleError(f"loss_on must be 'masked' or 'image', not {loss_on!r}")
        self.save_hyperparameters(ignore=["generator"])
        self.generator = generator
        self.optimizer = optimizer
        self.val_l1 = MeanMetric()

    # ---------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        skip = self.generator.no_weight_decay() if hasattr(self.generator, "no_weight_decay") else ()
        # timm's rule splits the parameters (1-D, biases, the named ones: no decay); the decay group
        # then keeps the optimizer's own weight decay (the 1.0 here is only a marker).
        no_decay, decay = param_groups_weight_decay(self.generator, weight_decay=1.0, no_weight_decay_list=skip)
        opt = self.optimizer([{"params": no_decay["params"], "weight_decay": 0.0}, {"params": decay["params"]}])
        if self.hparams.restart_epochs <= 0:
            return opt
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=self.hparams.restart_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # ---------------------------------------------------------------- masking and loss
    def mask_for(self, images: Tensor, step: int) -> Tensor:
        """The (B, 1, H, W) mask of `images` at `step` (1 = masked); the same for the same seed and step."""
        patch = getattr(self.generator, "patch_size", (1, 1))[0]  # a ResNet generator has no patch grid
        size = mask_patch_size(images.shape[-1], patch, self.hparams.mask_patch)
        rng = torch.Generator().manual_seed(self.hparams.seed * 1_000_003 + step)
        B, _, H, W = images.shape
        return random_patch_mask(B, H, W, size, self.hparams.mask_ratio, rng).to(images)

    def inpaint(self, images: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """(masked input, generator output, mask) for images (B, 3, H, W) in [-1, 1]."""
        mask = self.mask_for(images, step)  # (B, 1, H, W)
        masked = images * (1 - mask)  # (B, 3, H, W): masked patches become 0 (mid-grey)
        return masked, self.generator(masked), mask

    def loss(self, filled: Tensor, images: Tensor, mask: Tensor) -> Tensor:
        """L1 on the masked pixels (`loss_on="masked"`) or on the whole image."""
        error = (filled - images).abs()  # (B, 3, H, W)
        if self.hparams.loss_on == "image":
            return error.mean()
        return (error * mask).sum() / (mask.sum() * images.shape[1]).clamp_min(1.0)

    @staticmethod
    def _images(batch: dict[str, Tensor]) -> Tensor:
        return torch.cat([batch["a"], batch["b"]])  # (2B, 3, H, W): both domains

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        images = self._images(batch)
        _, filled, mask = self.inpaint(images, self.global_step)
        loss = self.loss(filled, images, mask)
        self.log("loss/inpaint", loss, prog_bar=True, batch_size=len(images))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        images = self._images(batch)
        _, filled, mask = self.inpaint(images, _FIXED_STEP + batch_idx)  # the same masks every validation
        self.val_l1.update(self.loss(filled, images, mask), len(images))

    def on_validation_epoch_end(self) -> None:
        if self.val_l1.update_called:
            self.log("val/inpaint_l1", self.val_l1.compute())
        self.val_l1.reset()

    @torch.no_grad()
    def grid_rows(self, real_a: Tensor, real_b: Tensor) -> dict[str, tuple[Tensor, ...]]:
        """For `ImageGridLogger`: masked | filled | original, for the A and the B samples."""
        rows = {}
        for name, images in (("inpaint_a", real_a), ("inpaint_b", real_b)):
            masked, filled, _ = self.inpaint(images, step=_FIXED_STEP)
            rows[name] = (masked, filled, images)
        return rows


# ----------------------------------------------------------------------------------------------
# Starting a CycleGAN from a pretraining checkpoint


def load_pretrained_generator(path: str) -> dict[str, Tensor]:
    """The generator weights of a `vitcycle pretrain` checkpoint, read by the project's one safe loader."""
    from vitcycle.checkpoint import safe_load

    ckpt = safe_load(path, what="pretraining checkpoint", hint="pass a .ckpt written by `vitcycle pretrain`")
    state = ckpt.get("state_dict", {}) if isinstance(ckpt, dict) else {}
    weights = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
    if not weights:
        raise VitcycleError(f"{path} holds no generator weights; pass a .ckpt written by `vitcycle pretrain`")
    return weights


def load_generator_weights(generator: nn.Module, weights: dict[str, Tensor], source: str) -> None:
    """Copy `weights` into `generator`, refusing any missing, extra or differently shaped tensor."""
    own = generator.state_dict()
    missing, extra = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys())
    shapes = [f"{k}: {tuple(weights[k].shape)} in {source}, {tuple(v.shape)} here" for k, v in own.items()
              if k in weights and weights[k].shape != v.shape]
    if missing or extra or shapes:
        detail = "; ".join(
            part for part in (
                f"shapes differ ({', '.join(shapes[:3])})" if shapes else "",
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(extra[:3])}" if extra else "",
            ) if part
        )
        raise VitcycleError(
            f"the pretrained generator in {source} does not fit this generator: {detail}; pretrain with the "
            "same generator arguments as the CycleGAN's"
        )
    generator.load_state_dict(weights)
