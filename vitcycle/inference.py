"""Translator: a checkpoint turned into a ready generator, with the one pre/post-processing of the project.

`Translator.from_checkpoint` rebuilds a generator from the hyperparameters a CycleGAN checkpoint
holds (no LightningModule, no discriminators) and is safe for files from strangers: the file is
read with `torch.load(weights_only=True)` and only classes of the `vitcycle.models` package are
built. `translate`, `eval`, `export` and the notebook all go through it.

Pre/post-processing (`Translator.translate_array`): resize the longer side to `size` (aspect ratio
kept), reflect-pad bottom/right to a multiple of the patch size, run the generator on [-1, 1]
tensors, crop the padding, resize back to the original size.

The rest of the file is the `vitcycle translate` machinery: planning input -> output paths
(`plan_translation`), face crops (`detect_largest_face`, `paste_back`) and `PathTranslator`, which
translates images and videos file by file with a progress bar, skipping unreadable inputs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from vitcycle.errors import ImageReadError, ImageTooLargeError, VitcycleError
from vitcycle.imageio import IMAGE_EXTENSIONS, MAX_PIXELS, find_files, read_image, to_tensor, write_image
from vitcycle.outputs import replaced_atomically

Direction = Literal["a2b", "b2a"]
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm")
"""Video file endings `vitcycle translate` reads and writes (compared case-insensitively)."""

# mp4v works in every container OpenCV's FFmpeg writes except WebM, which needs VP8.
_FOURCC = {".webm": "VP80"}
_DEFAULT_FOURCC = "mp4v"
FACE_CASCADE = "haarcascade_frontalface_default.xml"
"""OpenCV's frontal-face Haar cascade, shipped with opencv-python(-headless) under cv2.data.haarcascades."""


class CheckpointError(VitcycleError):
    """A checkpoint file is missing, unreadable, or not a vitcycle CycleGAN checkpoint."""


class StyleError(VitcycleError):
    """A style reference was given to a generator without a style encoder."""


class TranslateError(VitcycleError):
    """An input/output path combination `vitcycle translate` refuses (overwrite, nesting, format)."""


class VitcycleWarning(UserWarning):
    """Something was skipped or fell back; the run goes on."""


# ----------------------------------------------------------------------------------------------
# Checkpoint -> generator


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"`: CUDA when available, else CPU; anything else is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise VitcycleError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VitcycleError(f"--device {device}: CUDA is not available here; use --device cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise VitcycleError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def safe_load(path: str | os.PathLike, what: str = "checkpoint", hint: str = "pass the .ckpt file written by `vitcycle fit`") -> Any:
    """`torch.load` with `weights_only=True`: the project's one way to read a saved file, so a
    stranger's file can never run code. Errors name the file (`what` it should be, `hint` the fix).

    Raises:
        CheckpointError: missing, truncated, foreign or code-carrying file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"{what} {path} {state}; {hint}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
        raise CheckpointError(f"cannot read {what} {path}: it is not a PyTorch file (empty or foreign bytes); {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unreadable file becomes one message naming it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only load failed" in str(err).lower():
            reason = (
                f"it holds Python objects other than tensors and plain containers, which a {what} of "
                "vitcycle never does; refusing to unpickle it (weights_only=True)"
            )
        raise CheckpointError(f"cannot read {what} {path}: {reason} (truncated, corrupt or not a PyTorch file?)") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a CycleGAN checkpoint safely (`safe_load`) and check its structure.

    Raises:
        CheckpointError: missing, truncated or foreign file; the message names it.
    """
    path = Path(path).expanduser()
    ckpt = safe_load(path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
    if not isinstance(hparams, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(
            f"{path} is not a vitcycle checkpoint (no hyper_parameters/state_dict of a CycleGAN module); "
            "pass a .ckpt written by `vitcycle fit`"
        )
    return ckpt


def _generator_factory(class_path: object, source: Path) -> type[nn.Module] | Callable[..., nn.Module]:
    """The generator class (or named size, e.g. vit_tiny_p8) that `class_path` names, from a fixed
    allow-list; nothing named by a checkpoint is ever imported."""
    from vitcycle.models import GENERATORS, ResnetGenerator, ViTTranslator

    allowed: dict[str, Callable[..., nn.Module]] = {f"vitcycle.models.{n}": f for n, f in GENERATORS.items()}
    for cls in (ViTTranslator, ResnetGenerator):
        allowed[f"vitcycle.models.{cls.__name__}"] = allowed[f"{cls.__module__}.{cls.__name__}"] = cls
    if not isinstance(class_path, str) or class_path not in allowed:
        raise CheckpointError(
            f"{source}: generator class_path {class_path!r} is not a generator of vitcycle.models; "
            f"refusing to build it (allowed: {', '.join(sorted(allowed))})"
        )
    return allowed[class_path]


# timm.create_model keys that would make the encoder read files or fetch weights: a checkpoint's
# init_args may not set them (the trained weights come from the checkpoint itself).
_UNSAFE_ENCODER_KEYS = ("path", "file", "url", "cfg", "cache", "pretrained", "hub")


def build_generator(spec: object, source: Path) -> nn.Module:
    """Instantiate `{"class_path": ..., "init_args": {...}}` without pretrained-weight loading."""
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise CheckpointError(
            f"{source}: the generator hyperparameters are not a class_path/init_args mapping; "
            "was it written by `vitcycle fit` (LightningCLI)?"
        )
    factory = _generator_factory(spec["class_path"], source)
    init_args = dict(spec.get("init_args") or {})
    unsafe = [k for k in (init_args.get("encoder_kwargs") or {}) if any(w in k.lower() for w in _UNSAFE_ENCODER_KEYS)]
    if unsafe:
        raise CheckpointError(f"{source}: refusing encoder_kwargs that load files or weights: {', '.join(unsafe)}")
    params = inspect.signature(factory).parameters
    forwards_kwargs = not isinstance(factory, type)  # the named sizes pass **kwargs to ViTTranslator
    # The checkpoint has the trained weights: never download or read the encoder's initial ones.
    for key, value in (("pretrained", False), ("pretrained_path", None)):
        if key in params or forwards_kwargs:
            init_args[key] = value
    try:
        generator = factory(**init_args)
    except TypeError as err:
        raise CheckpointError(f"{source}: init_args of {spec['class_path']} do not fit this vitcycle version: {err}") from None
    if not isinstance(generator, nn.Module):
        raise CheckpointError(f"{source}: {spec['class_path']} did not build an nn.Module")
    return generator


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


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
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
        amp_dtype: run the generator under autocast with this dtype (e.g. torch.bfloat16 on CUDA).
    """

    def __init__(
        self,
        generator: nn.Module,
        image_size: int = 256,
        device: str | torch.device = "auto",
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.generator = generator.float().to(self.device).eval().requires_grad_(False)
        self.image_size = int(image_size)
        self.patch_size = _size_multiple(generator)
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
            raise VitcycleError(f"--direction {direction!r} must be a2b or b2a")
        name = "gen_ab" if direction == "a2b" else "gen_ba"
        spec = ckpt["hyper_parameters"].get(name)
        if spec is None:
            raise CheckpointError(f"{source} is not a vitcycle CycleGAN checkpoint (no {name} in hyper_parameters)")
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
                f"{source}: the {prefix[:-1]} weights do not fit the generator rebuilt from its hyperparameters: {detail}"
            ) from None

        data_hp = ckpt.get("datamodule_hyper_parameters")
        image_size = data_hp.get("image_size") if isinstance(data_hp, Mapping) else None
        init_args = spec.get("init_args") or {}
        image_size = image_size or init_args.get("img_size") or 256
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
                "--style: this generator has no style encoder (style_encoder: false in its config); "
                "translate without --style, or train a generator with style_encoder: true"
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
        return to_tensor(np.ascontiguousarray(_resize(rgb, h, w)))  # (3, h, w) in [-1, 1]

    def translate_batch(
        self,
        images: Sequence[np.ndarray],
        size: int | None = None,
        style: Tensor | np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Translate RGB uint8 images; images with the same processed size share one forward pass.

        Each output has its input's size. `size` is the processing size of the longer side
        (default: the training size); `style` a reference image for a style-encoder generator.
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
                H, W = images[i].shape[:2]
                outputs[i] = _resize(np.ascontiguousarray(arr), H, W)
        return outputs  # type: ignore[return-value]

    def translate_array(
        self, rgb: np.ndarray, size: int | None = None, style: Tensor | np.ndarray | None = None
    ) -> np.ndarray:
        """Translate one (H, W, 3) RGB uint8 image; the result has the same shape and dtype."""
        return self.translate_batch([rgb], size=size, style=style)[0]


# ----------------------------------------------------------------------------------------------
# Faces


@functools.cache
def _face_cascade() -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, FACE_CASCADE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise VitcycleError(f"--face-crop: cannot load OpenCV's face detector {path}; reinstall opencv-python-headless")
    return cascade


def detect_largest_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest frontal face OpenCV's Haar cascade finds, or None."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    min_side = max(24, min(gray.shape) // 10)
    faces = _face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return int(x), int(y), int(w), int(h)


def face_box(face: tuple[int, int, int, int], shape: tuple[int, ...], margin: float = 0.5) -> tuple[int, int, int, int]:
    """A square (x0, y0, x1, y1) around `face` grown by `margin` of its side each way, clipped to the image."""
    x, y, w, h = face
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    H, W = shape[:2]
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(W, round(cx + side / 2)), min(H, round(cy + side / 2))
    return x0, y0, x1, y1


def paste_back(image: np.ndarray, patch: np.ndarray, box: tuple[int, int, int, int], feather: float = 0.1) -> np.ndarray:
    """`image` with `patch` blended into `box`; the blend weight ramps from 0 at the box edge to 1 inside.

    The ramp is `feather` of the box side wide (at least 1 px), so no seam shows.
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if patch.shape[:2] != (h, w):
        raise VitcycleError(f"paste_back: patch {patch.shape[:2]} does not match box {h}x{w}")
    ramp = max(1.0, feather * min(h, w))

    def edge_weight(n: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) + 0.5  # distance to the nearer edge
        return np.clip(d / ramp, 0.0, 1.0)

    alpha = (edge_weight(h)[:, None] * edge_weight(w)[None, :])[:, :, None]  # (h, w, 1)
    out = image.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.round(alpha * patch.astype(np.float32) + (1.0 - alpha) * region).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------
# Files, folders, videos


@dataclass(frozen=True)
class Job:
    """One input file and where its translation goes."""

    src: Path
    dst: Path
    video: bool


@dataclass
class TranslateSummary:
    """What `PathTranslator.run` did: files written and (file, reason) of those skipped."""

    translated: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    no_face: int = 0


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _normalise_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    ext = "." + ext.lower().lstrip(".")
    if ext not in IMAGE_EXTENSIONS:
        raise TranslateError(f"--ext {ext} is not an image format; use one of {' '.join(IMAGE_EXTENSIONS)}")
    return ext


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_translation(input: str | os.PathLike, output: str | os.PathLike, ext: str | None = None) -> list[Job]:
    """Input -> output paths for `vitcycle translate`, checked before anything is computed.

    An image or video file goes to `output` (a file), or into `output` when it is a folder or has
    no suffix. A folder is searched recursively and mirrored under `output`. Images keep their
    extension unless `ext` is given; videos keep theirs. Refuses outputs that would overwrite an
    input, an output folder inside the input folder, and two inputs mapping to one output.
    """
    src, out = Path(input).expanduser(), Path(output).expanduser()
    ext = _normalise_ext(ext)
    known = " ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    if not src.exists():
        raise TranslateError(f"--input {src} does not exist; give an image, a video or a folder of them")

    def renamed(path: Path) -> Path:
        return path if ext is None or _is_video(path) else path.with_suffix(ext)

    if src.is_file():
        video = _is_video(src)
        if not video and src.suffix.lower() not in IMAGE_EXTENSIONS:
            raise TranslateError(f"--input {src} is not an image or video file (known endings: {known})")
        if out.is_dir() or not out.suffix:
            jobs = [Job(src, out / renamed(Path(src.name)), video)]
        else:
            wanted = VIDEO_EXTENSIONS if video else IMAGE_EXTENSIONS
            if out.suffix.lower() not in wanted:
                kind = "a video" if video else "an image"
                raise TranslateError(
                    f"--output {out}: the input is {kind}, so the output must end in one of {' '.join(wanted)} "
                    "(or be a folder)"
                )
            jobs = [Job(src, out, video)]
    else:
        if out.is_file():
            raise TranslateError(f"--output {out} is a file; a folder input needs an output folder")
        src_r, out_r = src.resolve(), out.resolve()
        if _is_within(out_r, src_r):
            raise TranslateError(
                f"--output {out} is inside the input folder {src}; choose an output folder outside it "
                "(it would be read as input next time and risks overwriting inputs)"
            )
        files = sorted(find_files(src, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))
        if not files:
            raise TranslateError(f"--input {src} holds no images or videos (known endings: {known}, searched recursively)")
        jobs = [Job(f, out / renamed(f.relative_to(src)), _is_video(f)) for f in files]

    inputs = {j.src.resolve() for j in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
        dst = job.dst.resolve()
        if dst in inputs:
            raise TranslateError(f"--output {out} would overwrite the input {job.src}; choose another output path")
        if dst in seen:
            raise TranslateError(
                f"{seen[dst]} and {job.src} would both be written to {job.dst}; drop --ext or rename one"
            )
        seen[dst] = job.src
    return jobs


def batched(items: Sequence, n: int) -> Iterator[Sequence]:
    """Consecutive slices of `items` of length `n` (the last may be shorter)."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


class PathTranslator:
    """Translates the files of a plan (`plan_translation`): images in batches, videos frame by frame.

    Args:
        translator: the loaded generator.
        size: processing size of the longer side (None: the training size).
        batch_size: images or video frames per forward pass.
        face_crop: translate a square around the largest detected face instead of the whole image.
        paste_back: with face_crop, blend the translated face back into the original image.
        style: reference image (RGB uint8) for a generator with a style encoder.
        grid: write input | output side by side instead of the output alone.
        max_pixels: skip images or videos whose frames have more pixels than this.
        margin: face crop margin, as a fraction of the detected face side on each side.
    """

    def __init__(
        self,
        translator: Translator,
        size: int | None = None,
        batch_size: int = 8,
        face_crop: bool = False,
        paste_back: bool = False,
        style: np.ndarray | None = None,
        grid: bool = False,
        max_pixels: float = MAX_PIXELS,
        margin: float = 0.5,
    ) -> None:
        if batch_size < 1:
            raise VitcycleError(f"--batch-size {batch_size} must be at least 1")
        self.translator = translator
        self.size = int(size or translator.image_size)
        self.batch_size = batch_size
        self.face_crop = face_crop
        self.paste_back = paste_back
        self.style = translator.prepare_style(style, self.size) if style is not None else None  # (1, 3, h, w)
        self.grid = grid
        self.max_pixels = max_pixels
        self.margin = margin

    def run(self, jobs: Sequence[Job]) -> TranslateSummary:
        """Translate every job; unreadable or too large inputs are skipped with a warning."""
        summary = TranslateSummary()
        images = [j for j in jobs if not j.video]
        if images:
            with tqdm(total=len(images), desc="translate", unit="img", disable=None, file=sys.stderr) as bar:
                for chunk in batched(images, self.batch_size):
                    self._run_images(chunk, summary)
                    bar.update(len(chunk))
        for job in (j for j in jobs if j.video):
            self._run_video(job, summary)
        return summary

    def _skip(self, summary: TranslateSummary, path: Path, reason: str) -> None:
        summary.skipped.append((path, reason))
        warnings.warn(f"skipped {path}: {reason}", VitcycleWarning, stacklevel=3)

    # ------------------------------------------------------------------ images
    def _crop_inputs(self, frames: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[tuple | None]]:
        """Face crops (or whole frames) to translate, and the crop box of each (None: whole frame)."""
        if not self.face_crop:
            return list(frames), [None] * len(frames)
        crops, boxes = [], []
        for frame in frames:
            face = detect_largest_face(frame)
            box = face_box(face, frame.shape, self.margin) if face is not None else None
            crops.append(frame if box is None else frame[box[1] : box[3], box[0] : box[2]])
            boxes.append(box)
        return crops, boxes

    def _compose(
        self, frame: np.ndarray, crop: np.ndarray, out: np.ndarray, box: tuple | None, paste: bool
    ) -> np.ndarray:
        """The image to write: output (pasted back when asked), or input | output for --grid."""
        if box is not None and paste:
            crop, out = frame, paste_back(frame, out, box)
        return np.concatenate([crop, out], axis=1) if self.grid else out  # (h, 2w, 3) or (h, w, 3)

    def _run_images(self, chunk: Sequence[Job], summary: TranslateSummary) -> None:
        loaded: list[tuple[Job, np.ndarray]] = []
        for job in chunk:
            try:
                loaded.append((job, read_image(job.src, self.max_pixels)))  # the header is checked first
            except ImageTooLargeError as err:
                self._skip(summary, job.src, f"{err.width}x{err.height} is over --max-pixels {self.max_pixels:.0f}")
            except ImageReadError as err:
                self._skip(summary, job.src, str(err).removeprefix(f"cannot read image {job.src}: "))
        if not loaded:
            return
        frames = [img for _, img in loaded]
        crops, boxes = self._crop_inputs(frames)
        for (job, _), box in zip(loaded, boxes, strict=True):
            if self.face_crop and box is None:
                summary.no_face += 1
                warnings.warn(f"no face found in {job.src}; translating the whole image", VitcycleWarning, stacklevel=3)
        outs = self.translator.translate_batch(crops, size=self.size, style=self.style)
        for (job, frame), crop, out, box in zip(loaded, crops, outs, boxes, strict=True):
            write_image(job.dst, self._compose(frame, crop, out, box, self.paste_back))
            summary.translated.append(job.dst)

    # ------------------------------------------------------------------ videos
    def _run_video(self, job: Job, summary: TranslateSummary) -> None:
        cap = cv2.VideoCapture(str(job.src))
        try:
            if not cap.isOpened():
                self._skip(summary, job.src, "cannot open the video (unsupported codec or not a video)")
                return
            width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if width * height > self.max_pixels:
                self._skip(summary, job.src, f"{width}x{height} frames are over --max-pixels {self.max_pixels:.0f}")
                return
            fps = cap.get(cv2.CAP_PROP_FPS)
            if not fps or not math.isfinite(fps) or fps <= 0:
                warnings.warn(f"{job.src} reports no frame rate; writing 25 fps", VitcycleWarning, stacklevel=3)
                fps = 25.0
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            paste = self.paste_back or not self.face_crop
            if self.face_crop and not self.paste_back:
                warnings.warn(
                    f"{job.src}: face crops of a video are pasted back (frames must keep one size)",
                    VitcycleWarning,
                    stacklevel=3,
                )
            # Written to a temporary file that replaces job.dst only when frames were written, so a
            # video that cannot be decoded leaves an existing file at the output path untouched.
            with contextlib.suppress(_NoFrames), replaced_atomically(job.dst) as tmp:
                if self._write_video(cap, job, tmp, fps, total, paste, summary) == 0:
                    raise _NoFrames
                summary.translated.append(job.dst)
        finally:
            cap.release()
        if job.dst not in summary.translated:
            self._skip(summary, job.src, "no frame could be decoded")

    def _write_video(
        self, cap: cv2.VideoCapture, job: Job, path: Path, fps: float, total: int | None, paste: bool,
        summary: TranslateSummary,
    ) -> int:
        """Translate the frames of `cap` into a video at `path`; the number of frames written."""
        writer: cv2.VideoWriter | None = None
        done, no_face = 0, 0
        bar = tqdm(total=total, desc=job.src.name, unit="frame", disable=None, file=sys.stderr)
        try:
            while True:
                frames = []
                while len(frames) < self.batch_size:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                if not frames:
                    break
                crops, boxes = self._crop_inputs(frames)
                no_face += sum(self.face_crop and b is None for b in boxes)
                outs = self.translator.translate_batch(crops, size=self.size, style=self.style)
                for frame, crop, out, box in zip(frames, crops, outs, boxes, strict=True):
                    composed = self._compose(frame, crop, out, box, paste)
                    if writer is None:
                        writer = self._open_writer(path, job.dst, fps, composed.shape[1], composed.shape[0])
                    writer.write(cv2.cvtColor(composed, cv2.COLOR_RGB2BGR))
                done += len(frames)
                bar.update(len(frames))
        finally:
            bar.close()
            if writer is not None:
                writer.release()
        if no_face:
            summary.no_face += no_face
            warnings.warn(
                f"no face found in {no_face} of {done} frames of {job.src}; those frames were translated whole",
                VitcycleWarning,
                stacklevel=3,
            )
        return done

    @staticmethod
    def _open_writer(path: Path, shown: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
        """A writer of `path` (a temporary file); errors name `shown`, the output the user asked for."""
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(path.suffix.lower(), _DEFAULT_FOURCC))
        writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
        if not writer.isOpened():
            if not os.access(path.parent, os.W_OK):
                raise TranslateError(f"cannot write video {shown}: the folder {shown.parent} is not writable")
            other = ".avi" if path.suffix.lower() == ".mp4" else ".mp4"
            raise TranslateError(f"cannot write video {shown}: OpenCV has no encoder for {path.suffix} here; try {other}")
        return writer


class _NoFrames(Exception):
    """No frame of a video could be decoded (internal: discards the partial output)."""


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Show VitcycleWarnings as one `prefix: warning: ...` line on stderr each (for the CLI)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, VitcycleWarning):
            tqdm.write(f"{prefix}: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    original = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always", VitcycleWarning)
        warnings.showwarning = show
        yield
