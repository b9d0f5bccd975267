"""Training callbacks: image grids of fixed validation samples in TensorBoard."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torchvision.utils import make_grid


class ImageGridLogger(pl.Callback):
    """Every `every_n_batches` training batches, logs the module's `grid_rows` of fixed samples:
    `real_a | fake_b | rec_a` and `real_b | fake_a | rec_b` for a CycleGAN, masked | filled |
    original for pretraining.

    The samples are the first `num_images` items of the validation set (of the training set when
    there is none), fixed for the whole run and translated by the EMA generators, so successive
    grids show progress on the same faces. Grids are logged at the same x-axis as the scalars
    (batches; Lightning's `global_step` counts both optimizer steps of a batch).

    Args:
        every_n_batches: training batches between grids (a grid is also logged after each validation).
        num_images: rows per grid.
    """

    def __init__(self, every_n_batches: int = 500, num_images: int = 4) -> None:
        self.every_n_batches = every_n_batches
        self.num_images = num_images
        self._samples: dict[str, torch.Tensor] | None = None

    def _fixed_samples(self, trainer: pl.Trainer) -> dict[str, torch.Tensor] | None:
        if self._samples is None:
            datamodule = trainer.datamodule
            dataset = getattr(datamodule, "val_set", None) or getattr(datamodule, "train_set", None)
            if dataset is None or len(dataset) == 0:
                return None
            items = [dataset[i] for i in range(min(self.num_images, len(dataset)))]
            self._samples = {k: torch.stack([item[k] for item in items]) for k in ("a", "b")}  # (N, 3, H, W)
        return self._samples

    @torch.no_grad()
    def log_grids(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Translate the fixed samples and add both grids to every TensorBoard logger."""
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        samples = self._fixed_samples(trainer) if loggers and trainer.is_global_zero else None
        if samples is None:
            return
        real_a, real_b = samples["a"].to(module.device), samples["b"].to(module.device)  # (N, 3, H, W)
        step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the scalars' x-axis
        for name, row in module.grid_rows(real_a, real_b).items():
            images = torch.stack(row, dim=1).flatten(0, 1).float()  # (N*k, 3, H, W): one row of k per sample
            grid = make_grid(images, nrow=len(row), normalize=True, value_range=(-1, 1))  # (3, H', W')
            for logger in loggers:
                logger.experiment.add_image(f"grid/{name}", grid, global_step=step)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        batches = trainer.fit_loop.epoch_loop._batches_that_stepped
        if self.every_n_batches > 0 and batches % self.every_n_batches == 0:
            self.log_grids(trainer, module)

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.log_grids(trainer, module)
