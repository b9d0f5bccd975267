"""CycleGAN losses as pure functions: tensors in, a scalar tensor out, no side effects.

Adversarial losses come in (discriminator, generator) pairs. A discriminator may return one
tensor of patch logits or a list of them (multi-scale); every adversarial loss averages over
the scales. Cycle and identity losses are L1 (`torch.nn.functional.l1_loss`); a cycle may compare
luminance alone (`cycle_l1(..., space="luma")`) and at a lower resolution (`downsample`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DiscOutput = Tensor | Sequence[Tensor]
GanLossName = Literal["lsgan", "hinge", "vanilla"]
CycleSpace = Literal["rgb", "luma"]
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601


def scales(pred: DiscOutput) -> list[Tensor]:
    """A discriminator's output as a list of logit maps (one per scale)."""
    return [pred] if isinstance(pred, Tensor) else list(pred)


def _mean_overscales(fn: Callable[[Tensor], Tensor], pred: DiscOutput) -> Tensor:
    losses = [fn(p) for p in scales(pred)]
    return torch.stack(losses).mean()


def lsgan_d_loss(pred_real: DiscOutput, pred_fake: DiscOutput) -> Tensor:
    """Least-squares GAN (Mao et al. 2017): 0.5 * (E[(D(x)-1)^2] + E[D(G(z))^2])."""
    real = _mean_overscales(lambda p: (p - 1).pow(2).mean(), pred_real)
    fake = _mean_overscales(lambda p: p.pow(2).mean(), pred_fake)
    return 0.5 * (real + fake)


def lsgan_g_loss(pred_fake: DiscOutput) -> Tensor:
    """Least-squares GAN, generator side: E[(D(G(z))-1)^2]."""
    return _mean_overscales(lambda p: (p - 1).pow(2).mean(), pred_fake)


def hinge_d_loss(pred_real: DiscOutput, pred_fake: DiscOutput) -> Tensor:
    """Hinge loss (Lim & Ye 2017): 0.5 * (E[relu(1-D(x))] + E[relu(1+D(G(z)))])."""
    real = _mean_overscales(lambda p: F.relu(1 - p).mean(), pred_real)
    fake = _mean_overscales(lambda p: F.relu(1 + p).mean(), pred_fake)
    return 0.5 * (real + fake)


def hinge_g_loss(pred_fake: DiscOutput) -> Tensor:
    """Hinge loss, generator side: -E[D(G(z))]."""
    return _mean_overscales(lambda p: -p.mean(), pred_fake)


def vanilla_d_loss(pred_real: DiscOutput, pred_fake: DiscOutput) -> Tensor:
    """Original GAN (Goodfellow et al. 2014) on logits: 0.5 * (BCE(D(x), 1) + BCE(D(G(z)), 0))."""
    real = _mean_overscales(lambda p: F.binary_cross_entropy_with_logits(p, torch.ones_like(p)), pred_real)
    fake = _mean_overscales(lambda p: F.binary_cross_entropy_with_logits(p, torch.zeros_like(p)), pred_fake)
    return 0.5 * (real + fake)


def vanilla_g_loss(pred_fake: DiscOutput) -> Tensor:
    """Non-saturating generator loss: BCE(D(G(z)), 1)."""
    return _mean_overscales(lambda p: F.binary_cross_entropy_with_logits(p, torch.ones_like(p)), pred_fake)


def luma(x: Tensor) -> Tensor:
    """Luminance (B, 1, H, W) of RGB images (B, 3, H, W), BT.601 weights; [-1, 1] stays [-1, 1]."""
    return (x * x.new_tensor(_LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)  # (B, 1, H, W)


def cycle_l1(rec: Tensor, real: Tensor, space: CycleSpace = "rgb", downsample: int = 1) -> Tensor:
    """Cycle L1 between a reconstruction and its input: in RGB, or on luminance alone ("luma"),
    which leaves hues free (an anime face's pink hair need not survive a photo to be rebuilt);
    with `downsample` > 1, between `downsample` x `downsample` block means, which leaves detail
    finer than a block free (an anime face's outlined eyes need not survive as outlines)."""
    if downsample > 1:
        rec, real = F.avg_pool2d(rec, downsample), F.avg_pool2d(real, downsample)  # (B, 3, H / d, W / d)
    if space == "luma":
        return F.l1_loss(luma(rec), luma(real))
    return F.l1_loss(rec, real)


# (discriminator loss, generator loss) by the name used in YAML (`model.gan_loss`).
GAN_LOSSES: dict[str, tuple[Callable[..., Tensor], Callable[..., Tensor]]] = {
    "lsgan": (lsgan_d_loss, lsgan_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
    "vanilla": (vanilla_d_loss, vanilla_g_loss),
}


def gradient_penalty(
    disc: nn.Module, real: Tensor, fake: Tensor, center: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Gradient penalty on random interpolates of real and fake (Gulrajani et al. 2017).

    E[(||grad_x D(x_hat)||_2 - center)^2] with x_hat = eps * real + (1 - eps) * fake. `center=1` is
    WGAN-GP; `center=0` the zero-centred variant. Multi-scale outputs are summed before the gradient.
    `generator` (a CPU generator) draws the interpolation weights.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real)  # (B, 1, 1, 1)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # (B, C, H, W)
    out = sum(p.float().sum() for p in scales(disc(x_hat)))
    (grad,) = torch.autograd.grad(out, x_hat, create_graph=True)  # (B, C, H, W)
    norm = grad.flatten(1).norm(2, dim=1)  # (B,)
    return (norm - center).pow(2).mean()
