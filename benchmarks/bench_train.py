"""Throughput of a full CycleGAN training step, ViT generators against ResNet-9 generators.

    python benchmarks/bench_train.py                          # CUDA with bf16 when present, else CPU
    python benchmarks/bench_train.py --device cpu --jobs vit_tiny_p8@64 resnet9@64
    python benchmarks/bench_train.py --compile always --sync-check --profile   # the GPU fast path, checked

One step = both generators (forward, cycle, identity), both discriminators on image-pool fakes,
two optimizer steps and the EMA updates: `CycleGAN.training_step` driven by a Lightning Trainer
on random batches (no data loading), so the figure is the model's cost alone. The discriminators
are the same 70x70 PatchGANs for every row. The ViT generators get the head options of the
adopted recipe, read from `configs/cycle.yaml` (`gen_ab.init_args`: no global residual,
bilinear upsampling). Prints one markdown table with images/s (images of
domain A per second; each step also consumes as many B images) and the ratio to ResNet-9 at the
same size, measured in the same run. `--compile` compiles generators and discriminators (the
first-step time, compilation included, is its own column); `--sync-check` runs the timed steps
under `torch.cuda.set_sync_debug_mode("error")` (a host sync inside a step raises); `--profile`
prints, per job, the kernel launches per step and the share of the step the GPU is busy.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from bench_data import cpu_model  # benchmarks/ is on sys.path when run as a script

from vitcycle.models import GENERATORS, PatchDiscriminator, ResnetGenerator
from vitcycle.training.cyclegan import CycleGAN
from vitcycle.training.options import Compile

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
    """Wall time of the training batches after `warmup` of them (and of the first one)."""

    def __init__(self, warmup: int, steps: int, sync_check: bool = False) -> None:
        self.timed = range(warmup, warmup + steps)
        self.sync_check, self.times, self.first, self._t0 = sync_check, [], 0.0, 0.0

    def _sync(self, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._sync(module)
        if self.sync_check and batch_idx in self.timed and module.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("error")  # any host sync inside the step raises
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
        self._sync(module)
        seconds = time.perf_counter() - self._t0
        if batch_idx == 0:
            self.first = seconds
        if batch_idx in self.timed:
            self.times.append(seconds)


class StepProfile(pl.Callback):
    """torch.profiler over `steps` batches from batch `start` on: kernel launches and GPU-busy share per step."""

    def __init__(self, start: int, steps: int) -> None:
        self.start, self.steps, self.summary, self._prof, self._t0 = start, steps, {}, None, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.start:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if module.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
                torch.cuda.synchronize()
            self._prof = torch.profiler.profile(activities=activities)
            self._prof.__enter__()
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self._prof is None or batch_idx != self.start + self.steps - 1:
            return
        if module.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - self._t0
        self._prof.__exit__(None, None, None)
        events = self._prof.events()
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu_s = sum(e.device_time_total for e in kernels) / 1e6  # device_time_total is in microseconds
        copies = sum(1 for e in events if e.name in ("aten::copy_", "aten::_to_copy"))
        self.summary = {
            "kernels_per_step": len(kernels) / self.steps,
            "gpu_busy": gpu_s / wall if kernels else float("nan"),
            "copies_per_step": copies / self.steps,
        }
        self._prof = None


RECIPE = Path(__file__).resolve().parents[1] / "configs/cycle.yaml"


def build_generator(name: str, size: int) -> torch.nn.Module:
    if name == "resnet9":
        return ResnetGenerator()
    head = yaml.safe_load(RECIPE.read_text())["model"]["gen_ab"].get("init_args") or {}  # the adopted recipe's options
    return GENERATORS[name](**{**head, "img_size": size})


def measure(
    name: str, size: int, batch_size: int, steps: int, warmup: int, device: str, compile: str = "never",
    compile_mode: str | None = None, compile_backend: str = "inductor", sync_check: bool = False, profile: bool = False,
) -> dict:
    """Seconds per training step (median) of one generator family at one size, and its GPU figures."""
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999), fused=device == "cuda")
    module = CycleGAN(
        build_generator(name, size), build_generator(name, size), PatchDiscriminator(), PatchDiscriminator(),
        optimizer_gen=adam, optimizer_disc=adam, finite_check_every=50,
        compile=Compile(when=compile, mode=compile_mode, backend=compile_backend),
    )
    timer = StepTimer(warmup, steps, sync_check)
    profiled = 3 if profile else 0  # after the timed steps, so the profiler's overhead is not timed
    profiler = StepProfile(warmup + steps, profiled) if profile else None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = pl.Trainer(
        accelerator=device,
        devices=1,
        precision="bf16-mixed" if device == "cuda" else "32-true",
        max_epochs=1,
        limit_train_batches=warmup + steps + profiled,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer] + ([profiler] if profiler else []),
    )
    data = torch.utils.data.DataLoader(RandomPairs(batch_size * (warmup + steps + profiled), size), batch_size=batch_size)
    trainer.fit(module, data)
    step = sorted(timer.times)[len(timer.times) // 2]
    params = sum(p.numel() for p in module.gen_ab.parameters())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"step_s": step, "images_s": batch_size / step, "gen_params_m": params / 1e6, "first_s": timer.first,
            "peak_gib": peak, **(profiler.summary if profiler else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", nargs="+", default=DEFAULT_JOBS, help="generator@size, generator in resnet9 or a named ViT")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=1, help="pairs per step (CycleGAN: 1)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per job")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--compile", choices=("never", "cuda", "always"), default="never", help="CycleGAN(compile=...)")
    parser.add_argument("--compile-mode", default=None, help='torch.compile mode, e.g. "reduce-overhead"')
    parser.add_argument("--compile-backend", default="inductor", help='"aot_eager" compiles without a C++/Triton compiler')
    parser.add_argument("--sync-check", action="store_true", help="timed steps under set_sync_debug_mode('error') (CUDA)")
    parser.add_argument("--profile", action="store_true", help="kernel launches and GPU-busy share per step")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device

    rows = []
    for job in args.jobs:
        name, size = job.split("@")
        rows.append((name, int(size), measure(name, int(size), args.batch_size, args.steps, args.warmup, device,
                                               args.compile, args.compile_mode, args.compile_backend, args.sync_check,
                                               args.profile)))
    baseline = {size: r["images_s"] for name, size, r in rows if name == "resnet9"}

    hardware = torch.cuda.get_device_name() if device == "cuda" else f"{cpu_model()}, {torch.get_num_threads()} threads"
    precision = "bf16-mixed" if device == "cuda" else "fp32"
    compiled = "eager" if args.compile == "never" else f"compile={args.compile} mode={args.compile_mode}"
    print(f"Full CycleGAN training step, batch {args.batch_size}, {precision}, {compiled}, {device} ({hardware}), "
          f"torch {torch.__version__}, median of {args.steps} steps after {args.warmup} warm-up"
          + (", timed steps under sync debug mode 'error' (no host sync raised)" if args.sync_check and device == "cuda" else ""))
    print()
    extra = " kernels/step | GPU busy | copies/step |" if args.profile else ""
    print(f"| generator | size | gen params (M) | first step (s) | s/step | images/s | vs ResNet-9 | peak GiB |{extra}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if args.profile else ""))
    for name, size, r in rows:
        ratio = f"{r['images_s'] / baseline[size]:.2f}x" if size in baseline else "n/a"
        cells = (f" {r.get('kernels_per_step', float('nan')):.0f} | {r.get('gpu_busy', float('nan')):.0%} | "
                 f"{r.get('copies_per_step', float('nan')):.0f} |") if args.profile else ""
        print(f"| {name} | {size} | {r['gen_params_m']:.2f} | {r['first_s']:.2f} | {r['step_s']:.3f} | {r['images_s']:.2f} "
              f"| {ratio} | {r['peak_gib']:.2f} |{cells}")


if __name__ == "__main__":
    main()
