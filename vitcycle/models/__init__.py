"""Generators and discriminators, and the named generator sizes.

Each named size is a function returning a `ViTTranslator`, with that size's values as its defaults
(the one place they are written, as timm's model functions do); any other `ViTTranslator`
argument passes through, and `encoder_kwargs` is merged into the size's. YAML configs name a size
as the class: `class_path: vitcycle.models.vit_tiny_p8`, `init_args` holding only what differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vitcycle.models.baselines import ResnetGenerator
from vitcycle.models.discriminator import PatchDiscriminator, ViTDiscriminator
from vitcycle.models.generator import ViTTranslator

__all__ = [
    "GENERATORS",
    "PatchDiscriminator",
    "ResnetGenerator",
    "ViTDiscriminator",
    "ViTTranslator",
    "swin_mini_p4",
    "swin_tiny_p4",
    "vit_base_p16",
    "vit_small_p16",
    "vit_tiny_p8",
]


def vit_tiny_p8(
    encoder: str = "vit_tiny_patch16_224",
    img_size: int = 64,
    patch_size: int = 8,
    encoder_kwargs: dict | None = None,
    encoder_indices: tuple[int, ...] = (1, 3, 5),
    decoder_depth: int = 2,
    head_dim: int = 128,
    **kwargs: Any,
) -> ViTTranslator:
    """64 px CPU size, ~4M parameters: ViT-Ti/8 encoder cut to its first 6 blocks, 2 decoder blocks.

    Patch 8 at 64 px gives an 8x8 token grid; skips from blocks 1, 3, 5 make the blocks after 5
    unused, and timm prunes them (hub weights of the full ViT-Ti still load).
    """
    return ViTTranslator(
        encoder=encoder,
        img_size=img_size,
        encoder_kwargs={"patch_size": patch_size, **(encoder_kwargs or {})},
        encoder_indices=list(encoder_indices),
        decoder_depth=decoder_depth,
        head_dim=head_dim,
        **kwargs,
    )


def vit_small_p16(
    encoder: str = "vit_small_patch16_224",
    img_size: int = 256,
    decoder_depth: int = 4,
    head_dim: int = 256,
    **kwargs: Any,
) -> ViTTranslator:
    """256 px default, ~34M parameters (UVCGAN-sized): ViT-S/16 encoder, 4 decoder blocks."""
    return ViTTranslator(encoder=encoder, img_size=img_size, decoder_depth=decoder_depth, head_dim=head_dim, **kwargs)


def vit_base_p16(
    encoder: str = "vit_base_patch16_224",
    img_size: int = 256,
    decoder_depth: int = 4,
    head_dim: int = 256,
    **kwargs: Any,
) -> ViTTranslator:
    """256 px, ~125M parameters: ViT-B/16 encoder, 4 decoder blocks of width 768."""
    return ViTTranslator(encoder=encoder, img_size=img_size, decoder_depth=decoder_depth, head_dim=head_dim, **kwargs)


def swin_mini_p4(
    encoder: str = "swin_tiny_patch4_window7_224",
    img_size: int = 64,
    encoder_kwargs: dict | None = None,
    decoder_depth: int = 2,
    head_dim: int = 256,
    **kwargs: Any,
) -> ViTTranslator:
    """64 px CPU size, ~6M parameters, the step time of vit_tiny_p8: a 3-stage Swin (widths 64-128-256,
    2 blocks each, 4-token windows) whose 1/4, 1/8 and 1/16 maps all reach the head; 2 decoder blocks."""
    swin = {"embed_dim": 64, "depths": [2, 2, 2], "num_heads": [2, 4, 8], "window_size": 4}
    return ViTTranslator(
        encoder=encoder,
        img_size=img_size,
        encoder_kwargs={**swin, **(encoder_kwargs or {})},
        decoder_depth=decoder_depth,
        head_dim=head_dim,
        **kwargs,
    )


def swin_tiny_p4(
    encoder: str = "swin_tiny_patch4_window7_224",
    img_size: int = 256,
    encoder_kwargs: dict | None = None,
    decoder_depth: int = 4,
    decoder_dim: int = 384,
    head_dim: int = 256,
    head_min_channels: int = 16,
    **kwargs: Any,
) -> ViTTranslator:
    """256 px, ~40M parameters: Swin-T (4 stages, strides 4-32; 8-token windows, which divide its
    64-32-16-8 grids; timm resamples the hub's 7-token position biases), 4 decoder blocks of width 384;
    16 channels at full resolution, as vit_small_p16 has."""
    return ViTTranslator(
        encoder=encoder,
        img_size=img_size,
        encoder_kwargs={"window_size": 8, **(encoder_kwargs or {})},
        decoder_depth=decoder_depth,
        decoder_dim=decoder_dim,
        head_dim=head_dim,
        head_min_channels=head_min_channels,
        **kwargs,
    )


GENERATORS: dict[str, Callable[..., ViTTranslator]] = {
    "vit_tiny_p8": vit_tiny_p8,
    "vit_small_p16": vit_small_p16,
    "vit_base_p16": vit_base_p16,
    "swin_mini_p4": swin_mini_p4,
    "swin_tiny_p4": swin_tiny_p4,
}
