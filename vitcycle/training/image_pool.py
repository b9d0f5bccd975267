"""History buffer of generated images (Shrivastava et al. 2017), as used by CycleGAN.

The discriminators see a mix of the newest fakes and older ones, which damps oscillation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class ImagePool(nn.Module):
    """Keeps up to `size` past fakes; `query` returns a batch of the same shape.

    For each incoming image: while the pool is not full it is stored and returned; afterwards, with
    probability 0.5 a random stored image is returned and replaced by the new one, otherwise the new
    image is returned. `size=0` disables the pool. The history is the module's "extra state": it is
    saved in checkpoints (and loads with `weights_only=True`) but is not a buffer, so DDP does not
    broadcast it every step and each rank keeps its own history. Randomness comes from the
    `generator` passed in, so a resumed run draws exactly what a straight run would.
    """

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        self.size = size
        self.images: Tensor | None = None  # (N, C, H, W), N <= size

    def get_extra_state(self) -> dict[str, Any]:
        return {"images": self.images}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        images = state["images"]
        self.images = None if images is None else images.clone()

    @torch.no_grad()
    def query(self, fakes: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return a batch (B, C, H, W) mixing `fakes` with stored history; updates the history."""
        fakes = fakes.detach()
        if self.size == 0:
            return fakes
        if self.images is not None and self.images.device != fakes.device:
            self.images = self.images.to(fakes.device)  # e.g. after loading a checkpoint on the CPU
        out = []
        for image in fakes:  # image: (C, H, W)
            n = 0 if self.images is None else self.images.shape[0]
            if n < self.size:
                self.images = image[None].clone() if self.images is None else torch.cat([self.images, image[None]])
                out.append(image)
                continue
            coin, slot = torch.rand(2, generator=generator).tolist()
            if coin < 0.5:
                index = int(slot * self.size)
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.stack(out)  # (B, C, H, W)
