"""Differentiable augmentation of the discriminators' inputs (DiffAugment, Zhao et al. 2020).

Each discriminator sees every input, real or fake, through random transforms: in its own step and
in the generators' step, where the generators' gradient flows back through the transform. So a
discriminator cannot learn the few real images of a small set by heart, and the generators are
pushed towards the real images, not towards their augmented versions (the transforms act on both).

Transforms (the paper's policies, images in [-1, 1], each image drawn on its own):
- "color": brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5);
- "translation": an integer shift of up to 1/8 of the size each way, zero-filled;
- "cutout": a zeroed square half the size, at a random centre (cut off at the border).

Written by hand: albumentations works on NumPy images (no gradient), and kornia is not a
dependency; each transform is a few whole-batch tensor operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from vitcycle.errors import VitcycleError

DiffAugmentName = Literal["color", "translation", "cutout"]

TRANSLATION_RATIO = 1 / 8  # the largest shift, as a share of the size (the paper's)
CUTOUT_RATIO = 1 / 2  # the square's side, as a share of the size (the paper's)


def check_policy(policy: Sequence[str]) -> None:
    """Raise a VitcycleError naming the transform if `policy` has one that is not a DiffAugmentName, or one twice."""
    names = get_args(DiffAugmentName)
    unknown = [name for name in policy if name not in names]
    if unknown:
        raise VitcycleError(f"disc_input.augment: unknown transform {unknown[0]!r}; choose from {', '.join(map(repr, names))}")
    if len(set(policy)) != len(policy):
        raise VitcycleError(f"disc_input.augment names a transform twice: {list(policy)}")


def diff_augment(x: Tensor, policy: Sequence[DiffAugmentName], rng: torch.Generator) -> Tensor:
    """`x` (N, C, H, W) through each transform of `policy` in turn, drawn from `rng` (on x's device)."""
    for name in policy:
        x = TRANSFORMS[name](x, rng)
    return x


def _uniform(x: Tensor, low: float, high: float, rng: torch.Generator) -> Tensor:
    """One draw of U(low, high) per image of `x`, shaped to broadcast: (N, 1, 1, 1)."""
    u = torch.rand((len(x), 1, 1, 1), generator=rng, device=x.device, dtype=x.dtype)  # (N, 1, 1, 1)
    return low + (high - low) * u


def color(x: Tensor, rng: torch.Generator) -> Tensor:
    """Random brightness, saturation and contrast, per image (the paper's ranges)."""
    x = x + _uniform(x, -0.5, 0.5, rng)  # brightness
    gray = x.mean(1, keepdim=True)  # (N, 1, H, W)
    x = gray + (x - gray) * _uniform(x, 0.0, 2.0, rng)  # saturation
    mean = x.mean((1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    return mean + (x - mean) * _uniform(x, 0.5, 1.5, rng)  # contrast


def _max_offset(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def shift(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Image i moved down by dy[i] and right by dx[i] pixels (integers, (N,) each), zero-filled."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device) - dy[:, None]  # (N, H): the source row of each output row
    cols = torch.arange(w, device=x.device) - dx[:, None]  # (N, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, H, W)
    index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (N, H, W)
    moved = x.flatten(2).gather(2, index.flatten(1)[:, None].expand(n, c, h * w))  # (N, C, H * W)
    return moved.view(n, c, h, w) * inside[:, None]


def translation(x: Tensor, rng: torch.Generator) -> Tensor:
    """Each image shifted by up to TRANSLATION_RATIO of its size each way (the gradient is a gather)."""
    h, w = x.shape[-2:]
    max_y, max_x = _max_offset(h, TRANSLATION_RATIO), _max_offset(w, TRANSLATION_RATIO)
    dy = torch.randint(-max_y, max_y + 1, (len(x),), generator=rng, device=x.device)  # (N,)
    dx = torch.randint(-max_x, max_x + 1, (len(x),), generator=rng, device=x.device)  # (N,)
    return shift(x, dy, dx)


def cutout(x: Tensor, rng: torch.Generator) -> Tensor:
    """Each image with a zeroed square of CUTOUT_RATIO of its size, centred anywhere in it."""
    h, w = x.shape[-2:]
    size_y, size_x = _max_offset(h, CUTOUT_RATIO), _max_offset(w, CUTOUT_RATIO)
    top = torch.randint(0, h + 1, (len(x),), generator=rng, device=x.device) - size_y // 2  # (N,)
    left = torch.randint(0, w + 1, (len(x),), generator=rng, device=x.device) - size_x // 2  # (N,)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_y)  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_x)  # (N, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (N, H, W)
    return x * keep[:, None]


TRANSFORMS: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}
