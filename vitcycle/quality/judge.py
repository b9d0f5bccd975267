"""The domain judge: a small CNN, trained from scratch, that says whether an image belongs to
domain A, domain B, or neither. It is the offline real-data score of `vitcycle eval` and of
validation (no Inception download needed).

- Independent of the GAN: its own network and training, never the GAN's discriminator (which
  co-adapts with the generators it judges).
- A third class, "neither", so that artifacts are not counted as success: during training it is
  fed alpha blends of the two domains and patch-shuffled, pixelated, noised, channel-swapped, blurred
  or flattened (a colour field: what a collapsed generator outputs) images of either domain, made on
  the fly.
- Every image, real or translated, is resized to the judge's one fixed `size` (`to_judge_size`).
- Held-out test images (file lists of `vitcycle data split`) are never trained on.
- An ensemble: judges of other seeds, saved in one file (`JudgeEnsemble`); the mean of their
  probabilities judges, and each member's verdicts show how much a figure depends on the judge
  (on translated anime faces, single judges 95-99% right on real faces disagreed by up to 26 points).

The augmentations and corruptions are written here as whole-batch tensor operations on images
preloaded at the judge's size: on 2 CPU cores that is many times faster than running a
per-image albumentations pipeline for every step, and it keeps training a few minutes long.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcycle.data.imageio import find_images, listed_files, read_image, to_tensor
from vitcycle.errors import JudgeError
from vitcycle.outputs import replaced_atomically

CLASSES = ("a", "b", "neither")
"""The judge's classes, in the order of its logits."""
A, B, NEITHER = range(3)
JUDGE_FORMAT = "vitcycle-judge"
"""The `format` entry of a judge file (a plain dict of tensors and numbers, read with `safe_load`):
{"format", "members": [{"size", "width", "state_dict", "summary"}, ...]}; a file of one judge
written before ensembles holds that member's entries at the top level, and still loads."""


class DomainJudge(nn.Module):
    """(B, 3, size, size) images in [-1, 1] -> logits (B, 3) over ("a", "b", "neither").

    Stride-2 conv stages (conv, BatchNorm, ReLU, then a 3x3 conv at the same scale) from `size`
    down to 4x4, channels doubling from `width`; global average pooling; a linear classifier.

    Args:
        size: side every image is resized to before judging (a power of two, >= 16).
        width: channels of the first stage.
    """

    def __init__(self, size: int = 64, width: int = 32) -> None:
        super().__init__()
        if size < 16 or size & (size - 1):
            raise JudgeError(f"judge size {size} must be a power of two of at least 16")
        self.size = size
        layers: list[nn.Module] = []
        c_in, c_out = 3, width
        for _ in range(int(math.log2(size // 4))):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in, c_out = c_out, c_out * 2
        self.width = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(c_in, len(CLASSES)))
        self.summary: dict = {}
        """How it was trained (`fit_judge`'s summary), saved with it."""

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(to_judge_size(x, self.size))  # (B, C, 4, 4)
        return self.head(x.mean(dim=(2, 3)))  # (B, 3)

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 256) -> Tensor:
        """Class probabilities (N, 3) of images (N, 3, H, W) in [-1, 1], on x's device, in eval mode."""
        was_training = self.training
        self.eval()
        probs = [F.softmax(self(chunk).float(), dim=1) for chunk in x.split(batch_size)]
        self.train(was_training)
        return torch.cat(probs) if probs else torch.zeros(0, len(CLASSES))  # (N, 3)


class JudgeEnsemble(nn.Module):
    """Judges of one size (other seeds), judging together: the mean of their class probabilities.

    A judge file always loads as an ensemble, of one judge or more, so eval and validation have
    one interface: `predict` (the mean), `predict_members` (each judge's own) and `size`.
    """

    def __init__(self, members: Sequence[DomainJudge]) -> None:
        super().__init__()
        if not members:
            raise JudgeError("a judge ensemble needs at least one judge")
        sizes = {m.size for m in members}
        if len(sizes) > 1:
            raise JudgeError(f"the judges resize images to different sizes ({', '.join(map(str, sorted(sizes)))} px); "
                             "combine judges trained with the same size")
        self.members = nn.ModuleList(members)
        self.size = members[0].size

    @property
    def summary(self) -> dict | list[dict]:
        """The members' training summaries: one dict for one judge, a list for several."""
        summaries = [m.summary for m in self.members]
        return summaries[0] if len(summaries) == 1 else summaries

    @torch.no_grad()
    def predict_members(self, x: Tensor) -> Tensor:
        """Each member's class probabilities (M, N, 3) of images (N, 3, H, W) in [-1, 1]."""
        return torch.stack([m.predict(x) for m in self.members])  # (M, N, 3)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The members' mean class probabilities (N, 3) of images (N, 3, H, W) in [-1, 1]."""
        return self.predict_members(x).mean(dim=0)  # (N, 3)


def to_judge_size(x: Tensor, size: int) -> Tensor:
    """(N, 3, H, W) -> (N, 3, size, size): the one resize of every judged image (antialiased bilinear)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def arrays_to_tensor(images: Sequence[np.ndarray], size: int) -> Tensor:
    """RGB uint8 arrays of any sizes -> (N, 3, size, size) float32 in [-1, 1]."""
    if not images:
        return torch.zeros(0, 3, size, size)
    return torch.cat([to_judge_size(to_tensor(img)[None], size) for img in images])  # (N, 3, size, size)


# ----------------------------------------------------------------------------------------------
# "Neither" images and augmentation (batched, seeded by a torch.Generator)


def _uniform(n: int, low: float, high: float, rng: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=rng)  # (n,)


def blend(x_a: Tensor, x_b: Tensor, rng: torch.Generator) -> Tensor:
    """Alpha blends a * x_a + (1 - a) * x_b, a in [0.35, 0.65] per image: half of each domain."""
    alpha = _uniform(len(x_a), 0.35, 0.65, rng).view(-1, 1, 1, 1)
    return alpha * x_a + (1 - alpha) * x_b


def patch_shuffle(x: Tensor, rng: torch.Generator) -> Tensor:
    """Each image cut into a grid of 4x4 or 8x8 patches (one choice per batch), patches permuted."""
    n, c, h, w = x.shape
    grid = 4 if torch.rand(1, generator=rng).item() < 0.5 else 8
    p = h // grid
    patches = x.reshape(n, c, grid, p, grid, p).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, p, p)
    order = torch.argsort(torch.rand(n, grid * grid, generator=rng), dim=1)  # (n, grid^2)
    patches = patches[torch.arange(n)[:, None], order]
    return patches.reshape(n, grid, grid, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def pixelate(x: Tensor, rng: torch.Generator) -> Tensor:
    """Blocks of 4 or 8 pixels (one choice per batch): area-downsampled, nearest-upsampled."""
    factor = 4 if torch.rand(1, generator=rng).item() < 0.5 else 8
    small = F.interpolate(x, scale_factor=1 / factor, mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="nearest")


def add_noise(x: Tensor, rng: torch.Generator) -> Tensor:
    """Gaussian noise of std 0.15 to 0.4 (of the [-1, 1] range) per image, clamped."""
    std = _uniform(len(x), 0.15, 0.4, rng).view(-1, 1, 1, 1)
    return (x + std * torch.randn(x.shape, generator=rng)).clamp(-1, 1)


def blur(x: Tensor, rng: torch.Generator) -> Tensor:
    """Gaussian blur, sigma 1/40 to 1/20 of the image side (one choice per batch): the smeared
    faces a generator that has not learned texture yet produces (ResNet-9 outputs early on)."""
    side = x.shape[-1]
    sigma = float(_uniform(1, side / 40, side / 20, rng))
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    taps = (taps / taps.sum()).to(x.device)  # (2r + 1,)
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along width
    return F.conv2d(rows, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along height: shape of x


def colour_field(x: Tensor, rng: torch.Generator) -> Tensor:
    """The image averaged down to 1x1 or 2x2 pixels (one choice per batch) and enlarged smoothly: a
    flat colour or a soft gradient, what a collapsed generator outputs (a green square is no selfie)."""
    cells = 1 if torch.rand(1, generator=rng).item() < 0.5 else 2
    small = F.adaptive_avg_pool2d(x, cells)  # (n, 3, cells, cells)
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


_SWAPS = torch.tensor([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])


def swap_channels(x: Tensor, rng: torch.Generator) -> Tensor:
    """RGB channels permuted (one of the five non-identity orders per image)."""
    perm = _SWAPS[torch.randint(len(_SWAPS), (len(x),), generator=rng)]  # (n, 3)
    return torch.gather(x, 1, perm[:, :, None, None].expand_as(x))


CORRUPTIONS = (patch_shuffle, pixelate, add_noise, swap_channels, blur, colour_field)
"""One-image corruptions that make a "neither" image of either domain (blends need both)."""


def make_neither(x_a: Tensor, x_b: Tensor, rng: torch.Generator) -> Tensor:
    """n "neither" images from n A and n B images: blends and corruptions in equal shares."""
    n = len(x_a)
    source = torch.where((torch.rand(n, generator=rng) < 0.5).view(-1, 1, 1, 1), x_a, x_b)  # (n, 3, S, S)
    kinds = torch.randint(len(CORRUPTIONS) + 1, (n,), generator=rng)
    out = blend(x_a, x_b, rng)
    for k, corrupt in enumerate(CORRUPTIONS, start=1):
        chosen = kinds == k
        if chosen.any():
            out[chosen] = corrupt(source[chosen], rng)
    return out


def augment(x: Tensor, rng: torch.Generator) -> Tensor:
    """Random flip, zoom 1-1.25x with shift, brightness and contrast +-10%, per image."""
    n = len(x)
    scale = 1 / _uniform(n, 1.0, 1.25, rng)  # sampling grid shrinks = zoom in
    flip = torch.where(torch.rand(n, generator=rng) < 0.5, -1.0, 1.0)
    shift = (1 - scale)[:, None] * _uniform(n * 2, -1, 1, rng).view(n, 2)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(n, 0.9, 1.1, rng).view(-1, 1, 1, 1)
    brightness = _uniform(n, -0.1, 0.1, rng).view(-1, 1, 1, 1)
    return ((x - mean) * contrast + mean + brightness).clamp(-1, 1)


# ----------------------------------------------------------------------------------------------
# Training, saving, loading


def _load_folder(folder: str | os.PathLike, held_out: set[Path], size: int) -> Tensor:
    """Every image of `folder` not in `held_out`, as (N, 3, size, size) uint8 (compact in memory)."""
    files = [f for f in find_images(folder) if f.resolve() not in held_out]
    if len(files) < 4:
        raise JudgeError(f"{folder} holds {len(files)} training images outside the held-out lists; the judge needs at least 4")
    x = arrays_to_tensor([read_image(f) for f in files], size)  # (N, 3, size, size) in [-1, 1]
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _as_float(x: Tensor) -> Tensor:
    return x.float() / 127.5 - 1.0  # uint8 -> [-1, 1]


@torch.no_grad()
def _accuracy(judge: DomainJudge, x: Tensor, label: int) -> float:
    return float((judge.predict(x).argmax(1) == label).float().mean()) if len(x) else math.nan


def fit_judge(
    dir_a: str | os.PathLike,
    dir_b: str | os.PathLike,
    holdout: Sequence[str | os.PathLike] = (),
    size: int = 64,
    width: int = 32,
    steps: int = 800,
    batch_size: int = 32,
    lr: float = 2e-3,
    val_fraction: float = 0.05,
    seed: int = 0,
    log_every: int = 200,
) -> tuple[DomainJudge, dict]:
    """Train a judge on the images of two folders (minus the `holdout` file lists).

    Each step sees `batch_size` augmented images of A, of B and of "neither" (made from other A and
    B images). AdamW with a one-cycle schedule, label smoothing 0.05. `val_fraction` of each folder
    is kept apart to report the judge's accuracy on unseen real images after training.

    Returns:
        The judge (eval mode) and a summary: image counts, steps, seconds, validation accuracies.
    """
    if steps < 1 or batch_size < 2:
        raise JudgeError(f"steps ({steps}) must be >= 1 and batch_size ({batch_size}) >= 2")
    started = time.perf_counter()
    held_out = listed_files(holdout)
    images = {side: _load_folder(folder, held_out, size) for side, folder in (("a", dir_a), ("b", dir_b))}
    rng = torch.Generator().manual_seed(seed)
    train, val = {}, {}
    for side, x in images.items():
        order = torch.randperm(len(x), generator=rng)
        n_val = int(round(val_fraction * len(x)))
        val[side], train[side] = x[order[:n_val]], x[order[n_val:]]

    torch.manual_seed(seed)
    judge = DomainJudge(size, width)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    labels = torch.tensor([A, B, NEITHER]).repeat_interleave(batch_size)  # (3 batch,)
    judge.train()
    for step in range(steps):
        draw = {s: _as_float(x[torch.randint(len(x), (2 * batch_size,), generator=rng)]) for s, x in train.items()}
        neither = make_neither(draw["a"][batch_size:], draw["b"][batch_size:], rng)
        batch = augment(torch.cat([draw["a"][:batch_size], draw["b"][:batch_size], neither]), rng)  # (3 batch, 3, S, S)
        loss = F.cross_entropy(judge(batch), labels, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"judge step {step + 1}/{steps}: loss {loss.item():.3f}", flush=True)
    judge.eval()

    val_rng = torch.Generator().manual_seed(seed + 1)
    val_a, val_b = _as_float(val["a"]), _as_float(val["b"])
    n = min(len(val_a), len(val_b))
    summary = {
        "dir_a": str(dir_a),
        "dir_b": str(dir_b),
        "holdout": [str(h) for h in holdout],
        "n_train": {s: len(x) for s, x in train.items()},
        "n_val": {s: len(x) for s, x in val.items()},
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "val_accuracy": {
            "a": _accuracy(judge, val_a, A),
            "b": _accuracy(judge, val_b, B),
            "neither": _accuracy(judge, make_neither(val_a[:n], val_b[:n], val_rng), NEITHER),
        },
    }
    judge.summary = summary
    return judge, summary


def save_judge(judge: DomainJudge | JudgeEnsemble, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a judge, or every member of an ensemble, with its summary, as a plain dict of tensors and
    numbers (readable with weights_only=True).

    The file is written beside its destination and renamed into place, so an interrupted save
    never leaves a broken judge; an existing file is kept unless `overwrite`.
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise JudgeError(f"{path} already exists; keep it, or allow replacing it (overwrite)")
    members = judge.members if isinstance(judge, JudgeEnsemble) else [judge]
    state = {
        "format": JUDGE_FORMAT,
        "classes": list(CLASSES),
        "members": [{"size": m.size, "width": m.width, "state_dict": m.state_dict(), "summary": m.summary} for m in members],
    }
    with replaced_atomically(path, durable=True) as tmp:
        torch.save(state, tmp)
    return path


def load_judge(path: str | os.PathLike) -> JudgeEnsemble:
    """The judge(s) of a file of `save_judge`, through the project's one safe loader, as an ensemble in eval mode."""
    from vitcycle.checkpoint import safe_load

    state = safe_load(path, what="judge", hint="train one with `vitcycle judge fit`")
    if not isinstance(state, dict) or state.get("format") != JUDGE_FORMAT:
        raise JudgeError(f"{path} is not a judge file of `vitcycle judge fit`")
    members = []
    for entry in state.get("members", [state]):  # a file of one judge from before ensembles: its entries at the top
        judge = DomainJudge(int(entry["size"]), int(entry["width"]))
        judge.load_state_dict(entry["state_dict"])
        judge.summary = entry.get("summary", {})
        members.append(judge)
    return JudgeEnsemble(members).eval()
