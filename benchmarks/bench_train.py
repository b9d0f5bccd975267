"""Throughput of a full CycleGAN training step, ViT generators against ResNet-9 generators.

    python benchmarks/bench_train.py                          # CUDA with bf16 when present, else CPU
    python benchmarks/bench_train.py --device cpu --jobs vit_tiny_p8@64 resnet9@64

One step = both generators (forward, cycle, identity), both discriminators on image-pool fakes,
two optimizer steps and the EMA updates: `CycleGAN.training_step` driven by a Lightning Trainer
on random batches (no data loading), so the figure is the model's cost alone. The discriminators
are the same 70x70 PatchGANs for every row. Prints one markdown table with images/s (images of
domain A per second; each step also consumes as many B images) and the ratio to ResNet-9 at the
same size, measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch
from bench_data import cpu_model  # benchmarks/ is on sys.path when run as a script

from vitcycle.models import GENERATORS, PatchDiscriminator, ResnetGenerator
from vitcycle.module import CycleGAN

DEFAULT_JOBS = ["resnet9@64", "vit_tiny_p8@64", "resnet9@256", "vit_small_p16@256"]


class RandomPairs(torch.utils.data.Dataset):
    """`n` random (a, b) pairs in [-1, 1], generated once (no I/O in the timed loop)."""

    def __init__(self, n: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.rand(n, 3, size, size, generator=g) * 2 - 1  # (n, 3, S, S)
        self.b = torch.rand(n, 3, size, size, generator=g) * 2 - 1  # (n, 3, S, S)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"a": self.a[i], "b": self.b[i]}


class StepTimer(pl.Callback):
    """Wall time of the training batches after `warmup` of them."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._t0 = warmup, [], 0.0

    def _sync(self, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._sync(module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._sync(module)
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._t0)


def build_generator(name: str, size: int) -> torch.nn.Module:
    if name == "resnet9":
        return ResnetGenerator()
    return GENERATORS[name](img_size=size)


def measure(name: str, size: int, batch_size: int, steps: int, warmup: int, device: str) -> dict:
    """Seconds per training step (median) of one generator family at one size."""
    torch.manual_seed(0)
    module = CycleGAN(
        build_generator(name, size), build_generator(name, size), PatchDiscriminator(), PatchDiscriminator()
    )
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator=device,
        devices=1,
        precision="bf16-mixed" if device == "cuda" else "32-true",
        max_epochs=1,
        limit_train_batches=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    data = torch.utils.data.DataLoader(RandomPairs(batch_size * (warmup + steps), size), batch_size=batch_size)
    trainer.fit(module, data)
    step = sorted(timer.times)[len(timer.times) // 2]
    params = sum(p.numel() for p in module.gen_ab.parameters())
    return {"step_s": step, "images_s": batch_size / step, "gen_params_m": params / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", default=DEFAULT_JOBS, help="generator@size, generator in resnet9 or a named ViT")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=1, help="pairs per step (CycleGAN: 1)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per job")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device

    rows = []
    for job in args.jobs:
        name, size = job.split("@")
        rows.append((name, int(size), measure(name, int(size), args.batch_size, args.steps, args.warmup, device)))
    baseline = {size: r["images_s"] for name, size, r in rows if name == "resnet9"}

    hardware = torch.cuda.get_device_name() if device == "cuda" else f"{cpu_model()}, {torch.get_num_threads()} threads"
    precision = "bf16-mixed" if device == "cuda" else "fp32"
    print(f"Full CycleGAN training step, batch {args.batch_size}, {precision}, {device} ({hardware}), "
          f"torch {torch.__version__}, median of {args.steps} steps after {args.warmup} warm-up")
    print()
    print("| generator | size | gen params (M) | s/step | images/s | vs ResNet-9 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, size, r in rows:
        ratio = f"{r['images_s'] / baseline[size]:.2f}x" if size in baseline else "n/a"
        print(f"| {name} | {size} | {r['gen_params_m']:.2f} | {r['step_s']:.3f} | {r['images_s']:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
