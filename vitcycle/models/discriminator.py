"""PatchDiscriminator: the 70x70 PatchGAN of Isola et al. 2017 (pix2pix), used by CycleGAN.

With n_layers=3 every output logit sees a 70x70 patch of the input:
C64 (no norm) - C128 - C256 - C512 (stride 1) - conv to 1 channel (stride 1); all convs 4x4,
LeakyReLU(0.2). A 256x256 input gives a (B, 1, 30, 30) map of real/fake logits.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm
from torch.nn.utils.parametrize import is_parametrized

from vitcycle.errors import VitcycleError

__all__ = ["PatchDiscriminator", "NLayerDiscriminator"]


class NLayerDiscriminator(nn.Module):
    """One PatchGAN: `n_layers` stride-2 convs, one stride-1 conv, a 1-channel conv; logits (B, 1, h, w).

    Args:
        n_layers: stride-2 conv layers; 3 gives the 70x70 receptive field.
        ndf: filters of the first layer; doubled per layer up to 8 * ndf.
        norm: "instance" (InstanceNorm2d without affine, as in CycleGAN) or "none".
        spectral_norm: wrap every conv in spectral normalisation (Miyato et al. 2018).
    """

    def __init__(
        self,
        n_layers: int = 3,
        ndf: int = 64,
        norm: Literal["instance", "none"] = "instance",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if norm not in ("instance", "none"):
            raise VitcycleError(f"discriminator norm must be 'instance' or 'none', got {norm!r}")
        if n_layers < 1:
            raise VitcycleError(f"discriminator n_layers must be >= 1, got {n_layers}")

        def conv(c_in: int, c_out: int, stride: int) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)
            return _spectral_norm(layer) if spectral_norm else layer

        def norm_layer(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c) if norm == "instance" else nn.Identity()

        layers: list[nn.Module] = [conv(3, ndf, 2), nn.LeakyReLU(0.2, inplace=True)]  # C64: no norm
        c = ndf
        for i in range(1, n_layers + 1):
            c_out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1  # the last feature layer keeps the resolution
            layers += [conv(c, c_out, stride), norm_layer(c_out), nn.LeakyReLU(0.2, inplace=True)]
            c = c_out
        layers.append(conv(c, 1, 1))  # one real/fake logit per patch
        self.model = nn.Sequential(*layers)
        self.init_weights()

    def init_weights(self) -> None:
        """CycleGAN's init: conv weights N(0, 0.02), biases 0 (before spectral normalisation)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                w = m.parametrizations.weight.original if is_parametrized(m, "weight") else m.weight
                nn.init.normal_(w, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, 1, h, w)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN, optionally multi-scale (pix2pixHD): one PatchGAN per scale, separate weights.

    Scale i sees the input average-pooled i times by 2 (3x3, stride 2).

    Returns:
        `num_scales == 1`: one logit map (B, 1, h, w), exactly CycleGAN's discriminator.
        `num_scales > 1`: a list of logit maps, full resolution first. Losses should accept both.

    Args:
        n_layers: stride-2 conv layers per PatchGAN; 3 gives the 70x70 receptive field.
        ndf: filters of the first layer.
        norm: "instance" (CycleGAN) or "none" (common with spectral_norm).
        spectral_norm: spectral normalisation on every conv.
        num_scales: number of PatchGANs at successively halved resolutions.
    """

    def __init__(
        self,
        n_layers: int = 3,
        ndf: int = 64,
        norm: Literal["instance", "none"] = "instance",
        spectral_norm: bool = False,
        num_scales: int = 1,
    ) -> None:
        super().__init__()
        if num_scales < 1:
            raise VitcycleError(f"discriminator num_scales must be >= 1, got {num_scales}")
        self.num_scales = num_scales
        self.scales = nn.ModuleList(
            NLayerDiscriminator(n_layers=n_layers, ndf=ndf, norm=norm, spectral_norm=spectral_norm)
            for _ in range(num_scales)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        outs = []
        for i, disc in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(
                    x, 3, stride=2, padding=1, count_include_pad=False
                )  # (B, 3, H / 2**i, W / 2**i)
            outs.append(disc(x))  # (B, 1, h_i, w_i)
        return outs[0] if self.num_scales == 1 else outs
