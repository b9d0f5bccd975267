"""Training-pipeline throughput: UnpairedImageDataModule.train_dataloader on real files.

    python benchmarks/bench_data.py [ROOT] [--workers 0 2] [--batch-size 8] [--batches 40]

ROOT holds trainA/ and trainB/ (default: ../shared/data/selfie2anime next to the repository).
Each item decodes two images (one A, one B); "images/s" counts both. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import torch

from vitcycle.data.datamodule import UnpairedImageDataModule

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared/data/selfie2anime"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(root: Path, workers: int, batch_size: int, image_size: int, batches: int, warmup: int) -> dict:
    """Time `batches` training batches after `warmup` batches (workers started, caches warm)."""
    dm = UnpairedImageDataModule(
        str(root / "trainA"),
        str(root / "trainB"),
        image_size=image_size,
        batch_size=batch_size,
        num_workers=workers,
        seed=0,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        assert batch["a"].shape == (batch_size, 3, image_size, image_size)  # (B, 3, H, W)
    seconds = time.perf_counter() - start
    del it, loader
    items = batches * batch_size
    return {
        "workers": workers,
        "pairs/s": items / seconds,
        "images/s": 2 * items / seconds,
        "batches": batches,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "root", nargs="?", type=Path, default=DEFAULT_ROOT, help="folder with trainA/ and trainB/"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    if not (args.root / "trainA").is_dir() or not (args.root / "trainB").is_dir():
        print(f"bench_data: no trainA/ and trainB/ under {args.root}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [
        measure(args.root, w, args.batch_size, args.image_size, args.batches, args.warmup)
        for w in args.workers
    ]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"Data pipeline, {args.image_size}x{args.image_size} crops (shorter side resized to "
        f"{round(args.image_size * 286 / 256)}), batch size {args.batch_size}, files from {args.root}"
    )
    print(
        f"Machine: {cpu_model()}, {cores} cores available, torch {torch.__version__}, "
        f"OpenCV {cv2.__version__}, Python {platform.python_version()}, "
        f"load average {load:.1f} at the start (other processes share these cores)\n"
    )
    print("| workers | images/s | pairs/s | batches | seconds |")
    print("|--------:|---------:|--------:|--------:|--------:|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['images/s']:.0f} | {r['pairs/s']:.0f} | {r['batches']} | {r['seconds']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
