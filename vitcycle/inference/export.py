"""ONNX and TorchScript export of a checkpoint's generator, with a parity check against PyTorch.

The exported graph is the bare generator (`ExportWrapper`): input `image` (B, 3, H, W) float32 in
[-1, 1], output `translated` of the same shape in [-1, 1], H and W multiples of the patch size.
Resizing, padding and uint8 conversion stay outside (see `Translator.translate_array`); a style
encoder is not exported (the learned target-domain style tokens are used).

- ONNX uses torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`, needs onnxscript):
  it exports timm's `dynamic_img_size` position-embedding resampling as graph ops, so with
  `dynamic=True` batch, height and width are all free. (The older TorchScript-based exporter
  cannot export the generator: it has no `atanh`, and it freezes the resampling to one size.)
- TorchScript uses `torch.jit.trace` (timm models do not script). Tracing records the position
  embedding for the traced grid, so a TorchScript file is valid for its export size only; the
  batch size may vary. torch 2.14 deprecates TorchScript (`torch.jit.load` warns); prefer ONNX.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from vitcycle.errors import ExportError
from vitcycle.inference.translator import Direction, Translator
from vitcycle.outputs import replaced_atomically

ExportFormat = Literal["onnx", "torchscript"]
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
EXTENSIONS: dict[str, tuple[str, ...]] = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts")}
"""The endings an export's output file may have, per format (checked before any work)."""


class ExportWrapper(nn.Module):
    """The generator with one input: `image` (B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1]."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: Tensor) -> Tensor:
        return self.generator(image)  # (B, 3, H, W)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(
            f"format onnx needs onnx, onnxruntime and onnxscript ({err.name or err} is missing); "
            "install them with: pip install 'vitcycle[export]'"
        ) from None


def _export_onnx(model: nn.Module, example: Tensor, out: Path, patch: tuple[int, int] | None) -> None:
    """Dynamo export; `patch` given: batch, height and width are dynamic (H, W multiples of the patch)."""
    from torch.export import Dim

    dynamic_shapes = None
    if patch is not None:
        ph, pw = patch
        # H = ph * h: the exporter then knows H is a multiple of the patch size
        dynamic_shapes = {
            "image": {0: Dim("batch", min=1, max=4096), 2: ph * Dim("h", min=1, max=1024), 3: pw * Dim("w", min=1, max=1024)}
        }
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["translated"],
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
        program.save(str(out))
    except Exception as err:  # noqa: BLE001 - exporter failures are long; keep the first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"ONNX export failed ({type(err).__name__}: {first}); try the torchscript format") from None


def _run_onnx(path: Path, x: Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _export_torchscript(model: nn.Module, example: Tensor, out: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about fixed shapes: the parity check covers them
        traced = torch.jit.trace(model, (example,), check_trace=False)
    traced.save(str(out))


def _run_torchscript(path: Path, x: Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript in favour of torch.export
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return module(x).numpy()


def default_output(ckpt: str | os.PathLike, fmt: ExportFormat, direction: Direction) -> Path:
    """`<ckpt folder>/<ckpt stem>.<direction>.onnx` (or `.torchscript.pt`)."""
    ckpt = Path(ckpt)
    return ckpt.with_name(f"{ckpt.stem}.{direction}{SUFFIX[fmt]}")


def export_generator(
    translator: Translator,
    out: str | os.PathLike,
    fmt: ExportFormat = "onnx",
    size: int | None = None,
    dynamic: bool = False,
    atol: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Export `translator.generator` (CPU, float32) and check the saved file against PyTorch.

    Args:
        translator: loaded generator (e.g. `Translator.from_checkpoint(ckpt)`, EMA weights).
        out: output file.
        fmt: "onnx" or "torchscript".
        size: square export size (default: the training size); must be a multiple of the patch size.
        dynamic: ONNX: free batch, height and width; TorchScript: free batch (size stays fixed).
        atol: largest allowed absolute difference to PyTorch on a random input.
        seed: seed of the random check inputs.

    Returns:
        {"path", "format", "size", "dynamic", "max_abs_diff", "checked_shapes"}.

    Raises:
        ExportError: missing export packages, a size that is not a multiple of the patch size,
            exporter failure, or a parity difference above `atol`.
    """
    if fmt not in SUFFIX:
        raise ExportError(f"format {fmt!r} must be onnx or torchscript")
    if fmt == "onnx":
        _require_onnx()
    size = int(size or translator.image_size)
    ph, pw = translator.patch_size
    if size % ph or size % pw:
        raise ExportError(
            f"size {size} is not a multiple of the patch size {ph}x{pw}; use e.g. {max(ph, size // ph * ph)}"
        )
    fixed = getattr(translator.generator, "encoder_size", None)
    if dynamic and fmt == "onnx" and fixed is not None:
        raise ExportError(f"--dynamic: this generator's encoder takes one size ({fixed} px); export without --dynamic")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    model = ExportWrapper(copy.deepcopy(translator.generator)).to("cpu").float().eval()

    gen = torch.Generator().manual_seed(seed)
    batch = 2 if dynamic else 1  # a batch of 1 would be specialised to 1 by torch.export
    example = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1  # (B, 3, S, S) in [-1, 1]
    checks = [example]
    if dynamic:
        if fmt == "onnx":  # another batch and a non-square size
            checks.append(torch.rand(1, 3, size, size + pw, generator=gen) * 2 - 1)
        else:
            checks.append(torch.rand(3, 3, size, size, generator=gen) * 2 - 1)

    # Exported into a temporary file that replaces `out` only after the parity check: a failed
    # export leaves nothing behind and an existing file at `out` untouched.
    with replaced_atomically(out, durable=True) as tmp, torch.inference_mode(False), torch.no_grad():
        if fmt == "onnx":
            _export_onnx(model, example, tmp, translator.patch_size if dynamic else None)
        else:
            _export_torchscript(model, example, tmp)
        run = _run_onnx if fmt == "onnx" else _run_torchscript
        diff = 0.0
        for x in checks:
            ref = model(x).numpy()  # (B, 3, H, W)
            got = run(tmp, x)
            if got.shape != ref.shape:
                raise ExportError(f"{out}: exported output shape {got.shape} differs from PyTorch's {ref.shape}")
            diff = max(diff, float(np.abs(got - ref).max()))
        if not diff <= atol:  # also catches NaN
            raise ExportError(
                f"{out}: parity check failed, max abs difference to PyTorch {diff:.3g} > {atol:g}; "
                "nothing was written (an existing file there is kept; try the other format)"
            )
    result = {
        "path": str(out),
        "format": fmt,
        "size": size,
        "dynamic": dynamic,
        "max_abs_diff": diff,
        "checked_shapes": [list(x.shape) for x in checks],
    }
    return result
