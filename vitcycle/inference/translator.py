"""Translator: a checkpoint turned into a ready generator, with the one pre/post-processing of the project.

`Translator.from_checkpoint` rebuilds a generator from a CycleGAN checkpoint (no LightningModule,
no discriminators; the format and its safe reading are `vitcycle.checkpoint`). `translate`,
`eval`, `export` and the notebook all go through it.

Pre/post-processing (`Translator.translate_array`): resize the longer side to `size` (aspect ratio
kept), reflect-pad bottom/right to a multiple of the patch size, run the generator on [-1, 1]
tensors, crop the padding, resize back to the original size.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from vitcycle.checkpoint import build_generator, load_checkpoint, model_spec
from vitcycle.data.imageio import to_tensor
from vitcycle.errors import CheckpointError, StyleError, VitcycleError, VitcycleWarning

Direction = Literal["a2b", "b2a"]

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"`: CUDA when available, else CPU; anything else is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise VitcycleError(f"device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VitcycleError(f"device {device}: CUDA is not available here; use cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise VitcycleError(f"device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev



def _size_multiple(generator: nn.Module) -> tuple[int, int]:
    """Height/width multiple the generator needs: its `patch_size` (int or pair), else 4 (two stride-2 convs)."""
    patch = getattr(generator, "patch_size", None)
    if patch is None:
        return (4, 4)
    if isinstance(patch, int):
        return (patch, patch)
    return (int(patch[0]), int(patch[1]))


def _to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] float -> [0, 255] uint8, same shape."""
    return ((x.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def resize_image(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv2 resize to (height, width): area filter when shrinking, bicubic when enlarging."""
    if img.shape[:2] == (height, width):
        return img
    shrink = height * width < img.shape[0] * img.shape[1]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def fit_longer_side(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the longer side `size` and the aspect ratio kept (each side at least 1)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class Translator:
    """A generator in eval mode on a device, with the project's pre- and post-processing.

    Args:
        generator: image-to-image network mapping (B, 3, H, W) in [-1, 1] to the same shape.
        image_size: default processing size (the longer side of an image is resized to it).
        device: "auto", "cpu", "cuda", ...
        amp_dtype: run the generator under autocast with this dtype; "auto": bfloat16 on a CUDA
            device that supports it (the GPU fast path of translate and eval), None (fp32) elsewhere.
    """

    def __init__(
        self,
        generator: nn.Module,
        image_size: int = 256,
        device: str | torch.device = "auto",
        amp_dtype: torch.dtype | None | Literal["auto"] = "auto",
    ) -> None:
        self.device = resolve_device(device)
        self.generator = generator.float().to(self.device).eval().requires_grad_(False)
        self.image_size = int(image_size)
        self.patch_size = _size_multiple(generator)
        if amp_dtype == "auto":  # bf16 on a GPU that has it, as training does; fp32 elsewhere
            on_bf16_gpu = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            amp_dtype = torch.bfloat16 if on_bf16_gpu else None
        self.amp_dtype = amp_dtype

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        direction: Direction = "a2b",
        use_ema: bool = True,
        device: str | torch.device = "auto",
    ) -> Translator:
        """Rebuild `gen_ab` ("a2b") or `gen_ba` ("b2a") of a CycleGAN checkpoint; EMA weights by default.

        Raises:
            CheckpointError: missing/foreign/truncated file, a class outside vitcycle.models, or
                weights that do not fit the generator.
        """
        source = Path(path).expanduser()
        return cls._from_loaded(load_checkpoint(source), source, direction, use_ema, device)

    @classmethod
    def pair_from_checkpoint(
        cls, path: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "auto"
    ) -> tuple[Translator, Translator]:
        """`gen_ab` and `gen_ba` of one checkpoint (as `from_checkpoint`), reading the file once."""
        source = Path(path).expanduser()
        ckpt = load_checkpoint(source)
        return tuple(cls._from_loaded(ckpt, source, d, use_ema, device) for d in ("a2b", "b2a"))

    @classmethod
    def _from_loaded(
        cls, ckpt: dict, source: Path, direction: Direction, use_ema: bool, device: str | torch.device
    ) -> Translator:
        if direction not in ("a2b", "b2a"):
            raise VitcycleError(f"direction {direction!r} must be a2b or b2a")
        name = "gen_ab" if direction == "a2b" else "gen_ba"
        entry = model_spec(ckpt, source)
        spec = entry["generators"].get(name)
        if spec is None:
            raise CheckpointError(f"{source} is not a vitcycle CycleGAN checkpoint (no {name} generator described in it)")
        generator = build_generator(spec, source)

        state = ckpt["state_dict"]
        prefix = f"{name}_ema.module."
        if not use_ema or not any(k.startswith(prefix) for k in state):
            if use_ema:
                warnings.warn(
                    f"{source} has no EMA weights ({name}_ema); using the raw {name} weights",
                    VitcycleWarning,
                    stacklevel=2,
                )
            prefix = f"{name}."
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not weights:
            raise CheckpointError(f"{source} has no weights for {name} in its state_dict")
        try:
            generator.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            detail = " ".join(str(err).split())[:400]
            raise CheckpointError(
                f"{source}: the {prefix[:-1]} weights do not fit the generator rebuilt from its spec: {detail}"
            ) from None

        image_size = entry.get("image_size") or (spec.get("init_args") or {}).get("img_size") or 256
        return cls(generator, image_size=int(image_size), device=device)

    # ------------------------------------------------------------------ properties
    @property
    def has_style_encoder(self) -> bool:
        """Whether the generator accepts a reference image (`style=`)."""
        return getattr(self.generator, "style_encoder", None) is not None

    # ------------------------------------------------------------------ tensors
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _pad(self, x: Tensor) -> Tensor:
        """Reflect-pad (B, 3, H, W) bottom/right to multiples of the patch size (replicate when too small)."""
        H, W = x.shape[-2:]
        ph, pw = self.patch_size
        pad_h, pad_w = -H % ph, -W % pw
        if not (pad_h or pad_w):
            return x
        mode = "reflect" if pad_h < H and pad_w < W else "replicate"
        return nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)  # (B, 3, H + pad_h, W + pad_w)

    @torch.inference_mode()
    def translate_tensor(self, x: Tensor, style: Tensor | np.ndarray | None = None) -> Tensor:
        """Translate (B, 3, H, W) in [-1, 1] (any H, W; padded internally) -> (B, 3, H, W) in [-1, 1] on the device."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise VitcycleError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        x = self._pad(x.to(self.device, torch.float32))  # (B, 3, H', W')
        style_t = self.prepare_style(style) if style is not None else None
        with self._autocast():
            y = self.generator(x) if style_t is None else self.generator(x, style=style_t)  # (B, 3, H', W')
        return y[:, :, :H, :W].float()  # (B, 3, H, W)

    def prepare_style(self, style: Tensor | np.ndarray, size: int | None = None) -> Tensor:
        """A reference image (RGB uint8 array, or a (1, 3, h, w) tensor in [-1, 1]) -> padded (1, 3, h', w') on the device."""
        if not self.has_style_encoder:
            raise StyleError(
                "style image given, but this generator has no style encoder (style_encoder: false in its config); "
                "translate without a style image, or train a generator with style_encoder: true"
            )
        if isinstance(style, np.ndarray):
            style = self._preprocess(style, size or self.image_size)[None]  # (1, 3, h, w)
        return self._pad(style.to(self.device, torch.float32))  # (1, 3, h', w')

    # ------------------------------------------------------------------ arrays
    def _preprocess(self, rgb: np.ndarray, size: int) -> Tensor:
        """(H, W, 3) uint8 -> (3, h, w) float in [-1, 1], the longer side resized to `size`."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VitcycleError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        h, w = fit_longer_side(rgb.shape[0], rgb.shape[1], size)
        return to_tensor(np.ascontiguousarray(resize_image(rgb, h, w)))  # (3, h, w) in [-1, 1]

    def translate_batch(
        self,
        images: Sequence[np.ndarray],
        size: int | None = None,
        style: Tensor | np.ndarray | None = None,
        keep_size: bool = True,
    ) -> list[np.ndarray]:
        """Translate RGB uint8 images; images with the same processed size share one forward pass.

        Each output has its input's size (`keep_size`), or the processing size, as the generator
        made it. `size` is the processing size of the longer side (default: the training size);
        `style` a reference image for a style-encoder generator.
        """
        size = int(size or self.image_size)
        style_t = self.prepare_style(style, size) if style is not None else None
        inputs = [self._preprocess(img, size) for img in images]
        outputs: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(inputs):
            groups.setdefault(tuple(t.shape[-2:]), []).append(i)
        for idx in groups.values():
            batch = torch.stack([inputs[i] for i in idx])  # (B, 3, h, w)
            out = _to_uint8(self.translate_tensor(batch, style_t)).permute(0, 2, 3, 1).cpu().numpy()  # (B, h, w, 3)
            for i, arr in zip(idx, out, strict=True):
                H, W = images[i].shape[:2] if keep_size else arr.shape[:2]
                outputs[i] = resize_image(np.ascontiguousarray(arr), H, W)
        return outputs  # type: ignore[return-value]

    def translate_array(
        self, rgb: np.ndarray, size: int | None = None, style: Tensor | np.ndarray | None = None
    ) -> np.ndarray:
        """Translate one (H, W, 3) RGB uint8 image; the result has the same shape and dtype."""
        return self.translate_batch([rgb], size=size, style=style)[0]

