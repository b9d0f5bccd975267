"""ResnetGenerator: the CycleGAN ResNet generator of Zhu et al. 2017, written from the paper's appendix.

Network with 9 residual blocks (256x256 images):
    c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3
c7s1-k: 7x7 conv, stride 1, k filters, InstanceNorm, ReLU (reflection padding);
dk: 3x3 conv, stride 2, InstanceNorm, ReLU; Rk: two 3x3 convs of k filters with a skip;
uk: 3x3 fractional-strided conv (stride 1/2), InstanceNorm, ReLU. The last layer ends in tanh.
Like the authors' code, InstanceNorm has no affine parameters and every conv has a bias:
with ngf=64 and 9 blocks that is 11,378,179 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from vitcycle.errors import VitcycleError
from vitcycle.models._init_args import InitArgsMixin

__all__ = ["ResnetGenerator", "ResnetBlock"]


class ResnetBlock(nn.Module):
    """Rk: x + IN(conv3x3(ReLU(IN(conv3x3(x))))), reflection padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(InitArgsMixin, nn.Module):
    """The CycleGAN ResNet generator: two downsamplings, `n_blocks` residual blocks, two upsamplings.

    Args:
        ngf: filters of the first layer (64 in the paper).
        n_blocks: residual blocks at 1/4 resolution (9 for 256x256 images, 6 for 128x128).
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()

        def conv_norm_relu(conv: nn.Module, c_out: int) -> list[nn.Module]:
            return [conv, nn.InstanceNorm2d(c_out), nn.ReLU(inplace=True)]

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            *conv_norm_relu(nn.Conv2d(3, ngf, 7), ngf),
        ]  # c7s1-64
        layers += conv_norm_relu(nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), 2 * ngf)  # d128
        layers += conv_norm_relu(nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1), 4 * ngf)  # d256
        layers += [ResnetBlock(4 * ngf) for _ in range(n_blocks)]  # R256 x n_blocks
        layers += conv_norm_relu(
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1), 2 * ngf
        )  # u128
        layers += conv_norm_relu(
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1), ngf
        )  # u64
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]  # c7s1-3
        self.model = nn.Sequential(*layers)
        self.init_weights()

    def init_weights(self) -> None:
        """CycleGAN's init: conv weights N(0, 0.02), biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Translate (B, 3, H, W) in [-1, 1], H and W multiples of 4; `style` is not supported (None)."""
        if style is not None:
            raise VitcycleError("ResnetGenerator has no style input; use ViTTranslator(style_encoder=True)")
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise VitcycleError(
                f"ResnetGenerator needs H and W multiples of 4, got {x.shape[-2]}x{x.shape[-1]}"
            )
        return self.model(x)  # (B, 3, H, W)
