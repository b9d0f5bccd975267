"""Real data: translate held-back selfies (and anime faces) with a checkpoint; a grid and a cycle figure.

    python benchmarks/bench_quality_real.py --ckpt runs/cycle_cpu_64px/checkpoints/last.ckpt

The held-back files are the validation split that `UnpairedImageDataModule` derives from the seed
and `val_fraction` stored in the checkpoint, so they were never trained on. Unpaired data has no
ground truth: the table gives the cycle L1 (a -> b -> a) on them, and the grid
(input | translation | reconstruction, selfies then anime faces) is for the eye.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from bench_data import DEFAULT_ROOT, cpu_model

from vitcycle.data import UnpairedImageDataModule, read_image
from vitcycle.inference import Translator, load_checkpoint
from vitcycle.metrics import write_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", default=str(DEFAULT_ROOT), help="folder with trainA/ and trainB/")
    parser.add_argument("--rows", type=int, default=6, help="grid rows per direction")
    parser.add_argument("--grid", default="runs/real_grid.png")
    args = parser.parse_args()

    ckpt = load_checkpoint(args.ckpt)
    data_hp = ckpt.get("datamodule_hyper_parameters", {})
    dm = UnpairedImageDataModule(
        str(Path(args.data) / "trainA"), str(Path(args.data) / "trainB"),
        val_fraction=data_hp.get("val_fraction", 0.05), seed=data_hp.get("seed", 0), num_workers=0,
    )
    dm.setup("fit")
    held_a, held_b = dm.val_set.files  # the validation split: never trained on
    gen_ab, gen_ba = (Translator.from_checkpoint(args.ckpt, d, device="cpu") for d in ("a2b", "b2a"))

    rows, cycle = [], {}
    for name, files, forward, backward in (("a2b2a", held_a, gen_ab, gen_ba), ("b2a2b", held_b, gen_ba, gen_ab)):
        l1 = []
        for i, path in enumerate(files):
            real = read_image(path)  # (H, W, 3) uint8
            fake = forward.translate_array(real)
            rec = backward.translate_array(fake)
            l1.append(np.abs(rec.astype(np.float32) - real.astype(np.float32)).mean() / 127.5)  # on [-1, 1]
            if i < args.rows:
                rows.append([real, fake, rec])
        cycle[name] = (len(files), float(np.mean(l1)))
    grid = write_grid(rows, args.grid)

    print(f"Held-back selfie2anime files, checkpoint {args.ckpt} (epoch {ckpt['epoch']}, "
          f"{ckpt['global_step'] // 2} batches, {gen_ab.image_size} px); {cpu_model()}, torch {torch.__version__}")
    print()
    print("| cycle | held-back images | L1 on [-1, 1] |")
    print("|---|---:|---:|")
    for name, (n, value) in cycle.items():
        print(f"| {name} | {n} | {value:.4f} |")
    print()
    print(f"grid (input | translation | reconstruction): {grid}")


if __name__ == "__main__":
    main()
