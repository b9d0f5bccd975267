"""Training callbacks: image grids of fixed validation samples in TensorBoard."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid


class ImageGridLogger(pl.Callback):
    """Every `every_n_steps` training steps, logs `real_a | fake_b | rec_a` and `real_b | fake_a | rec_b`.

    The samples are the first `num_images` of the first validation batch, fixed for the whole run,
    translated by the EMA generators, so successive grids show progress on the same faces.

    Args:
        every_n_steps: training steps between grids (also logged once at the end of each validation).
        num_images: rows per grid.
    """

    def __init__(self, every_n_steps: int = 500, num_images: int = 4) -> None:
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self._samples: dict[str, torch.Tensor] | None = None

    def _fixed_samples(self, trainer: pl.Trainer) -> dict[str, torch.Tensor] | None:
        if self._samples is None:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "val_dataloader"):
                return None
            batch = next(iter(datamodule.val_dataloader()))
            self._samples = {k: batch[k][: self.num_images] for k in ("a", "b")}
        return self._samples

    @torch.no_grad()
    def log_grids(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Translate the fixed samples and add both grids to every TensorBoard logger."""
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        samples = self._fixed_samples(trainer) if loggers and trainer.is_global_zero else None
        if samples is None:
            return
        real_a, real_b = samples["a"].to(module.device), samples["b"].to(module.device)  # (N, 3, H, W)
        out = module.translate(real_a, real_b)
        for name, row in (("a2b", (real_a, out["fake_b"], out["rec_a"])), ("b2a", (real_b, out["fake_a"], out["rec_b"]))):
            images = torch.stack(row, dim=1).flatten(0, 1).float()  # (N*3, 3, H, W): one row per sample
            grid = make_grid(images, nrow=3, normalize=True, value_range=(-1, 1))  # (3, H', W')
            for logger in loggers:
                logger.experiment.add_image(f"grid/{name}", grid, global_step=trainer.global_step)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.log_grids(trainer, module)

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.log_grids(trainer, module)
