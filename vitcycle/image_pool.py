"""History buffer of generated images (Shrivastava et al. 2017), as used by CycleGAN.

The discriminators see a mix of the newest fakes and older ones, which damps oscillation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ImagePool(nn.Module):
    """Keeps up to `size` past fakes; `query` returns a batch of the same shape.

    For each incoming image: while the pool is not full it is stored and returned; afterwards, with
    probability 0.5 a random stored image is returned and replaced by the new one, otherwise the new
    image is returned. `size=0` disables the pool. The buffer is a (non-persistent-size) module
    buffer so it lives on the module's device and is saved in checkpoints, and randomness comes from
    the `generator` passed in, so a resumed run draws exactly what a straight run would.
    """

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.empty(0), persistent=True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The buffer grows as it fills: adopt the saved shape before the default copy.
        key = prefix + "images"
        if key in state_dict:
            self.images = torch.empty_like(state_dict[key], device=self.images.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def query(self, fakes: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return a batch (B, C, H, W) mixing `fakes` with stored history; updates the history."""
        if self.size == 0:
            return fakes
        fakes = fakes.detach()
        out = []
        for image in fakes:  # image: (C, H, W)
            n = self.images.shape[0]
            if n < self.size:
                self.images = torch.cat([self.images.reshape(n, *image.shape), image[None]])
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
