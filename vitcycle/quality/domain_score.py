"""The offline real-data score of a translation: what the judge calls it, and how much layout it keeps.

Per direction (e.g. A -> B) and method (the model, or a baseline on the same inputs); the model's
translations are judged as the generator made them, at the processing size (enlarging them to the
input's size and shrinking them to the judge's would blur away the artifacts the judge should see):
- `target`: share of outputs whose judge argmax is the target domain (B);
- `neither`: share the judge calls neither domain (artifacts, blends, noise);
- `kept`: share judged as the target domain whose layout SSIM is also at least `LAYOUT_FLOOR`
  (a generator collapsed to one face, or a real face of the other domain, fools the judge alone);
- `layout_ssim`: SSIM between input and output at 32x32 grayscale (pose and layout kept: the
  identity scores 1, a random face of the other domain about 0.1);
- `cycle_l1`: L1 on [-1, 1] between the input and its reconstruction (model only);
- `diversity`: how far the outputs differ from one another (`spread`), over how far real images of
  the target domain do: about 1 for varied outputs, near 0 for a generator collapsed to one face;
- `sharpness`: the outputs' high-frequency energy over that of real images of the target domain
  (`sharpness`): 1 for as sharp as real ones, low for blurred outputs. Noise raises it too: read it
  beside `neither`, which a noisy output lands in.

With an ensemble of judges (`JudgeEnsemble`), verdicts are the argmax of the members' mean
probability, and `target_by_judge` lists each member's own `target` share: their range is how much
the figure depends on the judge.

Baselines, so that a lenient judge or a trivial score shows: `identity` (output = input), `cartoon`
(OpenCV's `cv2.stylization` filter) and `other_domain` (a real image of the target domain, not
translated from the input). The judge's accuracy on real images is the identity's share judged as
the *source* domain, reported apart.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vitcycle.quality.judge import NEITHER, JudgeEnsemble
from vitcycle.training.losses import luma

LAYOUT_SIZE = 32
"""Side of the grayscale images compared by `layout_ssim`."""

LAYOUT_FLOOR = 0.35
"""Layout SSIM under which a translation has lost its input's pose and layout (the real-data target's;
a real face of the other domain scores about 0.08, a generator collapsed to one face about 0.3)."""


def layout_gray(img: Tensor) -> Tensor:
    """(N, 3, H, W) images in [-1, 1] as the (N, 1, 32, 32) grayscale in [0, 1] that layout figures compare."""
    img = F.interpolate(img.float(), size=(LAYOUT_SIZE, LAYOUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return ((luma(img) + 1) / 2).clamp(0, 1)  # (N, 1, 32, 32)


def layout_ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM (N,) of (N, 3, H, W) images in [-1, 1], compared as 32x32 grayscale in [0, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(layout_gray(x), layout_gray(y), data_range=1.0, reduction="none")  # (N,)


def spread(images: Tensor) -> float:
    """Mean L1 distance between every two of (N, 3, H, W) images in [-1, 1], at 32x32 grayscale (NaN if N < 2).

    Against the same figure of real images of the target domain it gives `diversity`: 0 for one image
    for every input, lower for outputs that look alike, which the judge and the layout SSIM can pass (a
    run whose translated selfies all became one anime face, keeping each pose, scored 0.76 against 1.00).
    """
    n = len(images)
    if n < 2:
        return math.nan
    flat = layout_gray(images).flatten(1)  # (N, 1024)
    dist = torch.cdist(flat.double(), flat.double(), p=1) / flat.shape[1]  # (N, N), mean absolute difference
    return float(dist.sum() / (n * (n - 1)))


_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def high_frequency_energy(images: Tensor) -> Tensor:
    """Per-image variance (N,) of the Laplacian of the luminance of (N, 3, H, W) images in [-1, 1]:
    how much fine detail (edges, texture) an image holds; a blur lowers it."""
    kernel = torch.tensor(_LAPLACIAN, dtype=images.dtype, device=images.device).view(1, 1, 3, 3)
    detail = F.conv2d(luma(images), kernel)  # (N, 1, H - 2, W - 2): no padding, no border edges
    return detail.flatten(1).var(dim=1)  # (N,)


def sharpness(outputs: Tensor, reference: Tensor) -> float:
    """Median high-frequency energy of `outputs` over that of `reference` (real images of the target
    domain), both (N, 3, H, W) at one size: 1 for outputs as detailed as real images; NaN without any."""
    if len(outputs) == 0 or len(reference) == 0:
        return math.nan
    real = float(high_frequency_energy(reference.double()).median())
    return float(high_frequency_energy(outputs.double()).median()) / real if real > 0 else math.nan


def per_image_scores(verdict: Tensor, target: int, inputs: Tensor, outputs: Tensor) -> dict[str, Tensor]:
    """Each translation's figures, what eval's `DomainScore` and validation's `val/domain_*` both count.

    From judge verdicts (N,) (argmax class) of `outputs` and inputs/outputs (N, 3, H, W) in [-1, 1]:
    "target" and "neither" (N,) bool; "kept" (N,) bool, judged as the target domain with a layout
    SSIM of at least `LAYOUT_FLOOR`; "layout_ssim" (N,).
    """
    hit = verdict == target  # (N,)
    ssim = layout_ssim(inputs, outputs)  # (N,)
    return {"target": hit, "neither": verdict == NEITHER, "kept": hit & (ssim >= LAYOUT_FLOOR), "layout_ssim": ssim}


def cartoon(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's edge-preserving cartoon filter (`cv2.stylization`) of an RGB uint8 image.

    Its spatial extent scales with the image (OpenCV's default sigma_s of 60 at 256 px), so that a
    small image is not flattened to a blur.
    """
    sigma_s = max(1.0, 60.0 * min(rgb.shape[:2]) / 256)
    bgr = cv2.stylization(np.ascontiguousarray(rgb[:, :, ::-1]), sigma_s=sigma_s, sigma_r=0.45)
    return np.ascontiguousarray(bgr[:, :, ::-1])


class DomainScore:
    """Running counts of one (direction, method): judge verdicts, layout SSIM, cycle L1."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.n = self.n_target = self.n_neither = self.n_kept = 0
        self.ssim_sum = 0.0
        self.cycle_sum, self.n_cycle = 0.0, 0

    def update(self, probs: Tensor, inputs: Tensor, outputs: Tensor, reconstructions: Tensor | None = None) -> None:
        """Add a batch: judge probabilities (N, 3) of `outputs`, and inputs/outputs (N, 3, H, W) in [-1, 1]."""
        scores = per_image_scores(probs.argmax(dim=1), self.target, inputs, outputs)  # (N,) each
        self.n += len(probs)
        self.n_target += int(scores["target"].sum())
        self.n_neither += int(scores["neither"].sum())
        self.n_kept += int(scores["kept"].sum())
        self.ssim_sum += float(scores["layout_ssim"].sum())
        if reconstructions is not None:
            self.cycle_sum += float((reconstructions.float() - inputs.float()).abs().mean(dim=(1, 2, 3)).sum())
            self.n_cycle += len(inputs)

    def compute(self) -> dict:
        """{"n", "target": share, "n_target", "neither": share, "n_neither", "kept": share, "n_kept",
        "layout_ssim", "cycle_l1"} (NaN if empty)."""
        n = self.n
        return {
            "n": n,
            "target": self.n_target / n if n else math.nan,
            "n_target": self.n_target,
            "neither": self.n_neither / n if n else math.nan,
            "n_neither": self.n_neither,
            "kept": self.n_kept / n if n else math.nan,
            "n_kept": self.n_kept,
            "layout_ssim": self.ssim_sum / n if n else math.nan,
            "cycle_l1": self.cycle_sum / self.n_cycle if self.n_cycle else math.nan,
        }


def judge_batch(judge: JudgeEnsemble, images: Tensor) -> Tensor:
    """Judge probabilities (N, 3) of (N, 3, H, W) images in [-1, 1] (resized to the judge's size): the members' mean."""
    return judge.predict(images.to(next(judge.parameters()).device).float()).cpu()


def target_by_judge(judge: JudgeEnsemble, images: Tensor, target: int) -> list[float]:
    """Each member's share (M,) of (N, 3, H, W) images whose argmax is `target`."""
    probs = judge.predict_members(images.to(next(judge.parameters()).device).float()).cpu()  # (M, N, 3)
    return (probs.argmax(dim=-1) == target).double().mean(dim=1).tolist()


def format_domain_table(report: dict) -> str:
    """The domain-score part of an eval report as a markdown table, with the judge's own accuracy."""

    def pct(share: float, count: int, n: int) -> str:
        return "-" if n == 0 or math.isnan(share) else f"{share:.1%} ({count}/{n})"

    def num(x: float) -> str:
        return "-" if x is None or math.isnan(x) else f"{x:.3f}"

    def spread(shares: list[float]) -> str:
        return f"{min(shares):.1%}–{max(shares):.1%}"

    rows = [(d, method, row) for d in ("a2b", "b2a") for method, row in report["domain"][d].items()]
    n_judges = max((len(row.get("target_by_judge", [])) for *_, row in rows), default=0)
    header = ("| direction | method | judged target domain | judged neither | sharpness | target, layout kept | layout SSIM "
              "| cycle L1 | diversity |")
    lines = [header + (" target, each judge (min–max) |" if n_judges else ""), "|---" * (9 + bool(n_judges)) + "|"]
    for direction, method, row in rows:
        lines.append(
            f"| {direction} | {method} | {pct(row['target'], row['n_target'], row['n'])} "
            f"| {pct(row['neither'], row['n_neither'], row['n'])} | {num(row.get('sharpness', math.nan))} "
            f"| {pct(row['kept'], row['n_kept'], row['n'])} "
            f"| {num(row['layout_ssim'])} | {num(row['cycle_l1'])} | {num(row.get('diversity', math.nan))} |"
            + (f" {spread(row['target_by_judge'])} |" if n_judges else "")
        )
    acc = report["judge_accuracy"]
    lines.append("")
    if n_judges:
        lines.append(f"an ensemble of {n_judges} judges: verdicts by their mean probability; the last column is each judge's own share")
    lines.append("model translations judged as the generator made them (processing size), every image resized to the judge's size")
    lines.append(f"target, layout kept: judged as the target domain with a layout SSIM of at least {LAYOUT_FLOOR}")
    lines.append("sharpness: median Laplacian variance of the outputs over that of real images of the target domain "
                 "(1: as sharp; noise raises it too, and is judged neither)")
    lines.append("diversity: mean distance between the outputs over that between real images of the target domain (near 0: one face for all)")
    lines.append(
        "judge accuracy on the held-out real images: "
        + ", ".join(f"{side.upper()} {pct(a['accuracy'], a['n_correct'], a['n'])}" for side, a in acc.items())
    )
    return "\n".join(lines)

