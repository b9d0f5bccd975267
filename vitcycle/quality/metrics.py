"""FID, KID and paired metrics of a checkpoint, and `vitcycle eval`.

FID and KID are torchmetrics' `FrechetInceptionDistance` / `KernelInceptionDistance` on the 2048-d
pool features of torch-fidelity's InceptionV3 (torchmetrics' default extractor). Features are
extracted once per image set and fed to both metrics, so each image goes through Inception once.
Any `nn.Module` mapping uint8 images (N, 3, H, W) to features (N, d) can replace Inception
(`feature_extractor=`), which is how the tests run without the 92 MB weights.

Paired metrics need aligned pairs (a_i, b_i), e.g. the built-in data's `pairs_val.csv`:
L1 on [-1, 1] images (the scale of training's `val/paired_l1_*`), PSNR and SSIM on [0, 1]
(data_range 1), each averaged over images, next to the identity baseline metric(a_i, b_i).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from vitcycle.errors import InceptionWeightsError, VitcycleError
from vitcycle.outputs import replaced_atomically

if TYPE_CHECKING:
    from vitcycle.quality.judge import JudgeEnsemble

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
"""torch-fidelity's InceptionV3 weights, as torch.hub caches them under <hub dir>/checkpoints/."""
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"
PAIRED_RANGES = "L1 on [-1, 1] images (as training's val/paired_l1); PSNR (dB) and SSIM on [0, 1]"


# ----------------------------------------------------------------------------------------------
# Feature extractor


def inception_cache_path() -> Path:
    """Where torch.hub (and so torch-fidelity/torchmetrics) keeps the Inception weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


def _download_inception(dest: Path, timeout: float = 20.0) -> None:
    """Download the weights to `dest`; a short socket timeout so an offline machine fails at once."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(dest), progress=True)
    finally:
        socket.setdefaulttimeout(previous)


def load_inception(weights_path: str | os.PathLike | None = None) -> nn.Module:
    """torchmetrics' NoTrainInceptionV3 (torch-fidelity weights): uint8 (N, 3, H, W) -> (N, 2048).

    `weights_path` is a local copy of the weights; without it the torch.hub cache is used, and
    filled by one download attempt when empty.

    Raises:
        InceptionWeightsError: no usable weights (offline and not cached, or a bad file), with the
            cache path to copy the file to and the `weights_path` alternative.
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    cache = inception_cache_path()
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise InceptionWeightsError(f"Inception weights file {path} does not exist")
    else:
        path = cache
        if not path.is_file():
            try:
                _download_inception(path)
            except Exception as err:  # noqa: BLE001 - any network failure gives the same advice
                raise InceptionWeightsError(
                    f"could not download the Inception weights for FID/KID ({type(err).__name__}: {err}); "
                    f"download {INCEPTION_URL} on a connected machine and put it at {path} "
                    "(or give a local copy of the file)"
                ) from None
    try:  # weights only, so a stranger's file cannot run code (torch-fidelity loads it again itself)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
            raise ValueError("no InceptionV3 state dict")
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path))
    except Exception as err:  # noqa: BLE001
        raise InceptionWeightsError(
            f"{path} is not torch-fidelity's InceptionV3 weights file {INCEPTION_FILENAME} ({type(err).__name__}: {err}); "
            f"get it from {INCEPTION_URL}"
        ) from None


def _device_of(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _as_batches(images: Tensor | Iterable[Tensor], batch_size: int) -> Iterator[Tensor]:
    """A (N, 3, H, W) tensor or an iterable of such batches -> batches of at most `batch_size`."""
    chunks = [images] if isinstance(images, Tensor) else images
    for chunk in chunks:
        yield from chunk.split(batch_size)


@torch.inference_mode()
def extract_features(
    images: Tensor | Iterable[Tensor], feature_extractor: nn.Module, batch_size: int = 32
) -> Tensor:
    """Features (N, d) float64 on the CPU of uint8 images (N, 3, H, W), given whole or in batches."""
    device = _device_of(feature_extractor)
    feats = [feature_extractor(b.to(device)).reshape(b.shape[0], -1).double().cpu() for b in _as_batches(images, batch_size)]
    if not feats:
        return torch.zeros(0, 0, dtype=torch.float64)
    return torch.cat(feats)  # (N, d)


class _Features(nn.Module):
    """Identity 'extractor', so precomputed features go through torchmetrics' FID/KID code."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def fid_kid_from_features(
    real: Tensor, fake: Tensor, kid_subset_size: int = 1000, kid_subsets: int = 100, seed: int = 0
) -> dict[str, float]:
    """FID and KID (mean, std over subsets) between real (N, d) and fake (M, d) features.

    The KID subset size is capped at min(N, M) (reported as `kid_subset_size`); with fewer than
    two samples on either side the metrics are NaN.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(real.shape[0], fake.shape[0])
    subset = min(kid_subset_size, n)
    out = {"fid": math.nan, "kid_mean": math.nan, "kid_std": math.nan, "kid_subset_size": subset}
    if n < 2:
        return out
    real, fake = real.double(), fake.double()  # (N, d), (M, d)
    fid = FrechetInceptionDistance(feature=_Features(real.shape[1]))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features")  # features are kept anyway
        kid = KernelInceptionDistance(feature=_Features(real.shape[1]), subsets=kid_subsets, subset_size=subset)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the subsets are drawn with torch.randperm
        kid_mean, kid_std = kid.compute()
    out.update(fid=float(fid.compute()), kid_mean=float(kid_mean), kid_std=float(kid_std))
    return out


def compute_fid_kid(
    real: Tensor | Iterable[Tensor],
    fake: Tensor | Iterable[Tensor],
    feature_extractor: nn.Module | None = None,
    inception_weights: str | os.PathLike | None = None,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    batch_size: int = 32,
) -> dict[str, float]:
    """FID and KID between two sets of uint8 images (N, 3, H, W), whole or as batches.

    `feature_extractor` maps uint8 images to (N, d) features; default: torch-fidelity's Inception
    (`load_inception(inception_weights)`).
    """
    extractor = feature_extractor if feature_extractor is not None else load_inception(inception_weights)
    return fid_kid_from_features(
        extract_features(real, extractor, batch_size),
        extract_features(fake, extractor, batch_size),
        kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets,
    )


# ----------------------------------------------------------------------------------------------
# Paired metrics


def _to_tensor(rgb: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255.0)  # (1, 3, H, W)


class PairedMetrics:
    """Mean over image pairs of L1 (on [-1, 1]), PSNR and SSIM (on [0, 1]); images of any size."""

    def __init__(self) -> None:
        from torchmetrics import MeanMetric
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

        self.l1 = MeanMetric()
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))  # per image, then averaged
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.count = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one pair of RGB uint8 images; `pred` is resized to `target`'s size if they differ."""
        if pred.shape != target.shape:
            pred = cv2.resize(pred, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
        p, t = _to_tensor(pred), _to_tensor(target)  # (1, 3, H, W) in [0, 1]
        self.l1.update(2.0 * (p - t).abs().mean())  # L1 on [-1, 1]
        self.psnr.update(p, t)
        if min(t.shape[-2:]) >= 11:  # SSIM's 11x11 Gaussian window
            self.ssim.update(p, t)
        self.count += 1

    def compute(self) -> dict[str, float]:
        """{"n", "l1", "psnr", "ssim"}; NaN where no pair was added."""
        if self.count == 0:
            return {"n": 0, "l1": math.nan, "psnr": math.nan, "ssim": math.nan}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SSIM without updates (images below 11 px) warns; it is NaN then
            ssim = float(self.ssim.compute()) if self.ssim.update_count else math.nan
        return {"n": self.count, "l1": float(self.l1.compute()), "psnr": float(self.psnr.compute()), "ssim": ssim}


# ----------------------------------------------------------------------------------------------
# vitcycle eval


def find_pairs_manifest(test_a: Path, test_b: Path) -> Path | None:
    """`pairs_val.csv` in the folder holding both test folders (the built-in data's layout), if any."""
    parent = test_a.resolve().parent
    candidate = parent / "pairs_val.csv"
    return candidate if parent == test_b.resolve().parent and candidate.is_file() else None


def _read_all(paths: Sequence[Path], skipped: list[str]) -> Iterator[tuple[Path, np.ndarray]]:
    from vitcycle.data.imageio import read_image
    from vitcycle.errors import ImageReadError, VitcycleWarning

    for path in paths:
        try:
            yield path, read_image(path)
        except ImageReadError as err:
            skipped.append(str(path))
            warnings.warn(f"skipped {err}", VitcycleWarning, stacklevel=2)


def _uint8_batch(images: Sequence[np.ndarray]) -> Iterator[Tensor]:
    """RGB arrays -> uint8 (B, 3, H, W) batches of equal-sized neighbours (the extractor resizes itself)."""
    group: list[np.ndarray] = []
    for img in images:
        if group and img.shape != group[0].shape:
            yield torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2)
            group = []
        group.append(img)
    if group:
        yield torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2)  # (B, 3, H, W)


def run_eval(
    ckpt: str | os.PathLike,
    test_a: str | os.PathLike,
    test_b: str | os.PathLike,
    pairs: str | os.PathLike | None = None,
    feature_extractor: nn.Module | None = None,
    inception_weights: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str = "auto",
    kid_subset_size: int = 1000,
    size: int | None = None,
    use_ema: bool = True,
    fid_kid: bool = True,
    grid: str | os.PathLike | None = None,
    grid_rows: int = 8,
    judge: str | os.PathLike | None = None,
) -> dict:
    """Translate test A -> B and test B -> A with a checkpoint; FID/KID per direction, paired metrics,
    and with a judge the domain score (`vitcycle.quality.domain_score`) of the model and of baselines.

    Args:
        ckpt: CycleGAN checkpoint (through `Translator.from_checkpoint`).
        test_a: folder of domain-A test images (searched recursively) or a file list (.txt, as
            `vitcycle data split` writes); test_b likewise.
        pairs: CSV manifest `a,b` of aligned pairs (b is what a should become); None looks for
            `pairs_val.csv` beside the two folders.
        feature_extractor: module mapping uint8 (N, 3, H, W) -> (N, d); default Inception.
        inception_weights: local Inception weights file (offline machines).
        batch_size: images per generator and feature-extractor pass.
        device: "auto", "cpu", "cuda", ...
        kid_subset_size: KID subset size, capped at the smaller set size.
        size: processing size (default: the checkpoint's training size).
        use_ema: use the EMA generators (default), else the raw ones.
        fid_kid: compute FID and KID; False gives the paired metrics alone (no Inception weights needed).
        grid: write a PNG of the first `grid_rows` test images of each direction, one row each:
            input | translation | true target (paired data) or input | translation | reconstruction.
        grid_rows: rows per direction in `grid`.
        judge: a judge file of `vitcycle judge fit`: adds the domain score, the baselines and the
            judge's accuracy on the real test images.

    Returns:
        The report: per direction FID, KID, the paired metrics; the identity baseline; with a
        judge "domain" (per direction and method) and "judge_accuracy"; settings.
    """
    from vitcycle.data.imageio import find_images, read_pairs_manifest
    from vitcycle.errors import DataError
    from vitcycle.inference.files import batched
    from vitcycle.inference.translator import Translator, resize_image, resolve_device
    from vitcycle.quality.domain_score import cartoon
    from vitcycle.quality.judge import arrays_to_tensor, load_judge

    if batch_size < 1:
        raise VitcycleError(f"batch size {batch_size} must be at least 1")
    if kid_subset_size < 2:
        raise VitcycleError(f"KID subset size {kid_subset_size} must be at least 2")
    folders = {}
    for flag, folder in (("test A", test_a), ("test B", test_b)):
        path = Path(folder).expanduser()
        if not path.is_dir() and not (path.is_file() and path.suffix.lower() == ".txt"):
            raise DataError(f"{flag} {path} is not a folder of images or a .txt file list")
        files = find_images(path)
        if len(files) < 2:
            raise DataError(f"{flag} {path} has {len(files)} images; eval needs at least 2")
        folders[flag] = files
    files_a, files_b = folders["test A"], folders["test B"]
    test_a, test_b = Path(test_a).expanduser(), Path(test_b).expanduser()
    pairs_path = Path(pairs).expanduser() if pairs is not None else find_pairs_manifest(test_a, test_b)
    pair_b_of: dict[Path, Path] = {}
    if pairs_path is not None:
        a_list, b_list = read_pairs_manifest(pairs_path)
        pair_b_of = {a.resolve(): b for a, b in zip(a_list, b_list, strict=True)}
    pair_a_of = {b.resolve(): a for a, b in pair_b_of.items()}
    if not fid_kid and not pair_b_of and judge is None:
        raise DataError(
            "without FID/KID there is nothing to report: give a judge file (domain score) or a pairs CSV "
            "(or keep pairs_val.csv beside the test folders)"
        )
    judge_net = load_judge(judge) if judge is not None else None

    dev = resolve_device(device)
    extractor = None
    if fid_kid:
        extractor = feature_extractor if feature_extractor is not None else load_inception(inception_weights)
        extractor = extractor.to(dev).eval()
    gen_ab, gen_ba = Translator.pair_from_checkpoint(ckpt, use_ema=use_ema, device=dev)
    if judge_net is not None:
        judge_net.to(dev)
    # with a judge: inputs, translations, reconstructions and cartoons at the judge's size, per source domain
    judged: dict[str, dict[str, list[Tensor]]] = {side: {} for side in ("a", "b")}
    unpaired_rows = {"a": 0, "b": 0}

    skipped: list[str] = []
    report: dict = {}
    grid_triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (input, translation, target or reconstruction)
    identity = PairedMetrics()
    n_read = {"a": 0, "b": 0}  # images read (and translated) per domain
    real_feats: dict[str, list[Tensor]] = {"a": [], "b": []}
    fake_feats: dict[str, list[Tensor]] = {"a": [], "b": []}
    for src, translator, files, partner in (("a", gen_ab, files_a, pair_b_of), ("b", gen_ba, files_b, pair_a_of)):
        dst = "b" if src == "a" else "a"
        paired = PairedMetrics()
        chunks = batched(files, batch_size)
        for chunk in tqdm(chunks, total=-(-len(files) // batch_size), desc=f"eval {src}2{dst}", unit="batch",
                          disable=None, file=sys.stderr):  # quiet when stderr is not a terminal
            loaded = list(_read_all(chunk, skipped))
            if not loaded:
                continue
            reals = [img for _, img in loaded]
            n_read[src] += len(reals)
            made = translator.translate_batch(reals, size=size, keep_size=False)  # as the generator made them
            fakes = [resize_image(f, *r.shape[:2]) for f, r in zip(made, reals, strict=True)]  # as translate gives them
            if judge_net is not None or (grid is not None and not pair_b_of):
                reverse = gen_ba if src == "a" else gen_ab
                recs = reverse.translate_batch(made, size=size)
                if grid is not None and not pair_b_of:  # unpaired rows: input | translation | reconstruction
                    rows = list(zip(reals, fakes, recs, strict=True))[: grid_rows - unpaired_rows[src]]
                    grid_triples += rows
                    unpaired_rows[src] += len(rows)
                if judge_net is not None:
                    # The translations are judged at the generator's own resolution: enlarged to the input's
                    # size and shrunk again to the judge's, they would be blurred, which hides artifacts.
                    for key, imgs in (("input", reals), ("fake", made), ("rec", recs), ("cartoon", [cartoon(r) for r in reals])):
                        judged[src].setdefault(key, []).append(arrays_to_tensor(imgs, judge_net.size))
            if extractor is not None:
                real_feats[src].append(extract_features(_uint8_batch(reals), extractor, batch_size))
                fake_feats[dst].append(extract_features(_uint8_batch(fakes), extractor, batch_size))
            for (path, real), fake in zip(loaded, fakes, strict=True):
                target_path = partner.get(path.resolve())
                if target_path is None:
                    continue
                for _, target in _read_all([target_path], skipped):
                    paired.update(fake, target)
                    if grid is not None and paired.count <= grid_rows:
                        grid_triples.append((real, fake, target))
                    if src == "a":
                        identity.update(real, target)
        report[f"{src}2{dst}"] = {"n_inputs": n_read[src], "paired": paired.compute()}

    for src, dst in (("a", "b"), ("b", "a")):
        real = torch.cat(real_feats[dst]) if real_feats[dst] else torch.zeros(0, 1)
        fake = torch.cat(fake_feats[dst]) if fake_feats[dst] else torch.zeros(0, 1)
        entry = report[f"{src}2{dst}"]
        entry["n_real"] = n_read[dst]
        entry.update(fid_kid_from_features(real, fake, kid_subset_size=kid_subset_size))  # NaN without features
    report["identity"] = identity.compute()
    if judge_net is not None:
        report.update(_domain_report(judge_net, {side: {k: torch.cat(v) for k, v in parts.items()} for side, parts in judged.items()}))
    report["settings"] = {
        "checkpoint": str(ckpt),
        "test_a": str(test_a),
        "test_b": str(test_b),
        "pairs": str(pairs_path) if pairs_path else None,
        "use_ema": use_ema,
        "size": size or gen_ab.image_size,
        "feature_extractor": None if not fid_kid else (
            "inception-v3 (torch-fidelity), 2048-d pool" if feature_extractor is None else type(feature_extractor).__name__
        ),
        "paired_ranges": PAIRED_RANGES,
        "kid_subset_size": kid_subset_size,
        "judge": str(judge) if judge is not None else None,
        "judged_size": "translations as the generator made them (the processing size), not enlarged to the input's",
        "judge_training": judge_net.summary if judge_net is not None else None,
    }
    report["skipped"] = skipped
    if grid is not None and grid_triples:
        report["settings"]["grid"] = str(write_grid(grid_triples, grid))
    return report


def _domain_report(judge: JudgeEnsemble, judged: dict[str, dict[str, Tensor]]) -> dict:
    """Domain scores of the model and the baselines per direction, and the judge's accuracy.

    `judged[src]` holds "input", "fake", "rec", "cartoon": (N, 3, S, S) tensors in [-1, 1].
    """
    from vitcycle.quality.domain_score import DomainScore, judge_batch, sharpness, spread, target_by_judge
    from vitcycle.quality.judge import A, B

    label = {"a": A, "b": B}
    ensemble = len(judge.members) > 1  # then each member's own shares too
    report: dict = {"domain": {}, "judge_accuracy": {}}
    for src, dst in (("a", "b"), ("b", "a")):
        x = judged[src]
        if not x:
            continue
        inputs = x["input"]  # (N, 3, S, S)
        other = judged[dst]["input"]  # real images of the target domain
        others = other[torch.arange(len(inputs)) % len(other)]  # (N, 3, S, S), cycled
        target_spread = spread(other)
        rows = {}
        for method, outputs, recs in (("model", x["fake"], x["rec"]), ("identity", inputs, None),
                                      ("cartoon", x["cartoon"], None), ("other_domain", others, None)):
            score = DomainScore(label[dst])
            score.update(judge_batch(judge, outputs), inputs, outputs, recs)
            rows[method] = score.compute()
            rows[method]["diversity"] = spread(outputs) / target_spread if target_spread > 0 else math.nan
            rows[method]["sharpness"] = sharpness(outputs, other)
            if ensemble:
                rows[method]["target_by_judge"] = target_by_judge(judge, outputs, label[dst])
        report["domain"][f"{src}2{dst}"] = rows
        correct = int((judge_batch(judge, inputs).argmax(1) == label[src]).sum())
        report["judge_accuracy"][src] = {"accuracy": correct / len(inputs), "n_correct": correct, "n": len(inputs)}
        if ensemble:
            report["judge_accuracy"][src]["by_judge"] = target_by_judge(judge, inputs, label[src])
    return report


def write_grid(rows: Sequence[Sequence[np.ndarray]], path: str | os.PathLike, cell: int = 128) -> Path:
    """Write RGB uint8 images as a PNG grid, one row per sequence, each image resized to `cell` px."""
    from vitcycle.data.imageio import write_image

    def fit(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA if img.shape[0] > cell else cv2.INTER_NEAREST)

    grid = np.concatenate([np.concatenate([fit(img) for img in row], axis=1) for row in rows], axis=0)
    path = Path(path)
    with replaced_atomically(path) as tmp:
        write_image(tmp, grid)  # (rows * cell, columns * cell, 3)
    return path


def _fmt(value: float, scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * scale:.{digits}f}"


def format_report(report: dict) -> str:
    """The report as a markdown table (KID in units of 1e-3; "fake/real": images in each FID/KID set)."""
    lines = [
        "| direction | FID | KID x1e3 (std) | fake/real | L1 [-1,1] | L1 / identity | PSNR dB | SSIM | pairs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    i = report["identity"]
    for name in ("a2b", "b2a"):
        r, p = report[name], report[name]["paired"]
        kid = f"{_fmt(r['kid_mean'], 1e3)} ({_fmt(r['kid_std'], 1e3)})"
        lines.append(
            f"| {name} | {_fmt(r['fid'], digits=2)} | {kid} | {r['n_inputs']}/{r['n_real']} | {_fmt(p['l1'])} "
            f"| {_fmt(p['l1'] / i['l1']) if i['n'] and i['l1'] > 0 else '-'} | {_fmt(p['psnr'], digits=2)} | {_fmt(p['ssim'])} | {p['n']} |"
        )
    if i["n"]:
        lines.append(
            f"| identity (a vs its b) | - | - | - | {_fmt(i['l1'])} | 1.000 | {_fmt(i['psnr'], digits=2)} | {_fmt(i['ssim'])} | {i['n']} |"
        )
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike) -> Path:
    """Write the report as JSON (NaN becomes null)."""

    def clean(x):  # noqa: ANN001, ANN202
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    path = Path(path).expanduser()
    with replaced_atomically(path, durable=True) as tmp:
        tmp.write_text(json.dumps(clean(report), indent=2) + "\n", encoding="utf-8")
    return path
