"""Quality on the built-in data: paired L1 of each direction against the identity baseline.

    make quickstart && python benchmarks/bench_quality_synthetic.py
    python benchmarks/bench_quality_synthetic.py --train      # runs the quickstart fit first (timed)

The validation faces of the built-in set exist in both styles (pairs_val.csv), so G_ab(a_i) can be
compared with its true b_i. The identity baseline is L1(a_i, b_i): "change nothing". Target: each
direction's paired L1 at most 0.6x the baseline. Prints one markdown table and writes a grid PNG
(input | translation | true target) of the first pairs of each direction.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_data import cpu_model

from vitcycle.checkpoint import load_checkpoint
from vitcycle.quality.metrics import run_eval

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=str(ROOT / "runs/quickstart/checkpoints/last.ckpt"))
    parser.add_argument("--data", default=str(ROOT / "data/synthetic"), help="built-in data (valA, valB, pairs_val.csv)")
    parser.add_argument("--grid", default=str(ROOT / "runs/quickstart/quality_grid.png"))
    parser.add_argument("--train", action="store_true", help="run `vitcycle fit --config configs/quickstart.yaml` first")
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "pairs_val.csv").exists():
        subprocess.run([sys.executable, "-m", "vitcycle.cli", "data", "synth", "--out", str(data)], check=True, cwd=ROOT)
    fit_seconds = None
    if args.train:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vitcycle.cli", "fit", "--config", "configs/quickstart.yaml"], check=True, cwd=ROOT)
        fit_seconds = time.perf_counter() - start

    report = run_eval(args.ckpt, data / "valA", data / "valB", pairs=data / "pairs_val.csv", fid_kid=False, grid=args.grid)
    ckpt = load_checkpoint(args.ckpt)
    baseline = report["identity"]["l1"]
    print(f"Built-in data, {report['identity']['n']} validation pairs, checkpoint {args.ckpt} "
          f"(epoch {ckpt['epoch']}, {ckpt['global_step'] // 2} batches)"
          + (f", fit took {fit_seconds / 60:.1f} min" if fit_seconds else "")
          + f"; {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print()
    print("| direction | paired L1 | identity L1 | ratio | target | PSNR dB | SSIM |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("a2b", "b2a"):
        p = report[name]["paired"]
        ratio = p["l1"] / baseline
        verdict = "met" if ratio <= TARGET else "missed"
        print(f"| {name} | {p['l1']:.4f} | {baseline:.4f} | {ratio:.3f} | <= {TARGET} ({verdict}) | {p['psnr']:.2f} | {p['ssim']:.3f} |")
    print()
    print(f"grid: {report['settings']['grid']}")


if __name__ == "__main__":
    main()
