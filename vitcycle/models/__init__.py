"""Generators and discriminators, and the named generator sizes.

Each named size is a plain function returning a `ViTTranslator`; keyword arguments override its
defaults (`encoder_kwargs` is merged, not replaced). YAML configs name the class itself
(`class_path: vitcycle.models.ViTTranslator`) and spell the same values out in `init_args`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vitcycle.models.baselines import ResnetGenerator
from vitcycle.models.discriminator import PatchDiscriminator
from vitcycle.models.generator import ViTTranslator

__all__ = [
    "GENERATORS",
    "PatchDiscriminator",
    "ResnetGenerator",
    "ViTTranslator",
    "vit_base_p16",
    "vit_small_p16",
    "vit_tiny_p8",
]


def _create(model_args: dict[str, Any], kwargs: dict[str, Any]) -> ViTTranslator:
    encoder_kwargs = {**model_args.pop("encoder_kwargs", {}), **(kwargs.pop("encoder_kwargs", None) or {})}
    return ViTTranslator(**{**model_args, **kwargs, "encoder_kwargs": encoder_kwargs})


def vit_tiny_p8(**kwargs: Any) -> ViTTranslator:
    """64 px CPU quickstart, ~4M parameters: ViT-Ti/8 encoder cut to its first 6 blocks, 2 decoder blocks."""
    # patch 8 at 64 px gives an 8x8 token grid; depth 6 of 12 keeps hub weights loadable (the rest is pruned)
    model_args = dict(
        encoder="vit_tiny_patch16_224",
        encoder_kwargs={"patch_size": 8},
        img_size=64,
        encoder_indices=[1, 3, 5],
        decoder_depth=2,
        head_dim=128,
    )
    return _create(model_args, kwargs)


def vit_small_p16(**kwargs: Any) -> ViTTranslator:
    """256 px default, ~34M parameters (UVCGAN-sized): ViT-S/16 encoder, 4 decoder blocks."""
    model_args = dict(encoder="vit_small_patch16_224", img_size=256, decoder_depth=4, head_dim=256)
    return _create(model_args, kwargs)


def vit_base_p16(**kwargs: Any) -> ViTTranslator:
    """256 px, ~125M parameters: ViT-B/16 encoder, 4 decoder blocks of width 768."""
    model_args = dict(encoder="vit_base_patch16_224", img_size=256, decoder_depth=4, head_dim=256)
    return _create(model_args, kwargs)


GENERATORS: dict[str, Callable[..., ViTTranslator]] = {
    "vit_tiny_p8": vit_tiny_p8,
    "vit_small_p16": vit_small_p16,
    "vit_base_p16": vit_base_p16,
}
