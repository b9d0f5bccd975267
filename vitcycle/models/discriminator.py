"""Discriminators: a map of real/fake logits per image, one logit per patch.

PatchDiscriminator is the 70x70 PatchGAN of Isola et al. 2017 (pix2pix), used by CycleGAN. With
n_layers=3 every output logit sees a 70x70 patch of the input: C64 (no norm) - C128 - C256 - C512
(stride 1) - conv to 1 channel (stride 1); all convs 4x4, LeakyReLU(0.2). A 256x256 input gives a
(B, 1, 30, 30) map of real/fake logits.

ViTDiscriminator is a transformer over overlapping patches with a logit per token, after ViTGAN
(Lee et al. 2022), which found a plain ViT discriminator unstable and made it train with overlapping
patches and spectral normalisation (both here) and L2 attention (not here: timm's dot-product
attention, kept Lipschitz-bounded in practice by the spectral norm on its projections).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm
from torch.nn.utils.parametrize import is_parametrized

from vitcycle.errors import VitcycleError

__all__ = ["PatchDiscriminator", "NLayerDiscriminator", "ViTDiscriminator"]


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


class ViTDiscriminator(nn.Module):
    """Transformer discriminator: overlapping patch tokens, `depth` timm blocks, a real/fake logit per token.

    Patches of `patch_size` are embedded by a convolution of kernel 1.5x the patch and stride the patch
    (neighbouring patches overlap by a quarter on each side, so no logit sees a hard patch border); a
    learned position embedding for the grid of `img_size`, resized for other sizes; pre-norm blocks; a
    per-token linear logit. Every image is judged on its own (LayerNorm, attention within an image), as
    the CycleGAN's batched real/fake passes require. A 64x64 input with patch 8 gives (B, 1, 8, 8).

    Args:
        img_size: the size the position grid is made for (other sizes are interpolated).
        patch_size: pixels per token side; the input's sides should be multiples of it.
        dim: token width.
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width over `dim`.
        spectral_norm: spectral normalisation on every linear and conv layer (ViTGAN; Miyato et al. 2018).
    """

    def __init__(
        self,
        img_size: int = 64,
        patch_size: int = 8,
        dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        if patch_size < 4 or patch_size % 4:
            raise VitcycleError(f"ViTDiscriminator patch_size must be a multiple of 4, got {patch_size}")
        if dim % num_heads:
            raise VitcycleError(f"ViTDiscriminator dim {dim} is not divisible by num_heads {num_heads}")
        self.patch_size = patch_size
        overlap = patch_size // 4
        self.patch_embed = nn.Conv2d(3, dim, patch_size + 2 * overlap, stride=patch_size, padding=overlap)
        grid = max(1, img_size // patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, grid, grid))
        self.blocks = nn.Sequential(*(Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.logit = nn.Linear(dim, 1)
        self.init_weights()
        if spectral_norm:
            for module in [m for m in self.modules() if isinstance(m, nn.Linear | nn.Conv2d)]:
                _spectral_norm(module)

    def init_weights(self) -> None:
        """timm's ViT init: truncated normal (std 0.02) for linear layers and the position embedding."""
        trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)  # (B, D, h, w)
        h, w = tokens.shape[-2:]
        pos = self.pos_embed
        if pos.shape[-2:] != (h, w):
            pos = F.interpolate(pos, size=(h, w), mode="bilinear", align_corners=False)  # (1, D, h, w)
        tokens = (tokens + pos).flatten(2).transpose(1, 2)  # (B, h * w, D)
        tokens = self.norm(self.blocks(tokens))  # (B, h * w, D)
        return self.logit(tokens).transpose(1, 2).reshape(x.shape[0], 1, h, w)  # (B, 1, h, w)
