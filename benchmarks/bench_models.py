"""Speed, size and memory of the named generators against the CycleGAN ResNet-9, as one markdown table.

    python benchmarks/bench_models.py                       # CUDA (bf16 autocast) if present, else CPU
    python benchmarks/bench_models.py --device cpu --reps 5
    python benchmarks/bench_models.py --jobs resnet9@256 vit_small_p16@256

Figures per `model@size` job: parameters; GFLOPs of one forward at batch 1 (torch.utils.flop_counter,
deterministic); inference latency (eval, no_grad) at batch 1 and 8; training forward+backward at
batch 1; peak memory of that training step above the model's own weights, measured in a
subprocess per job so that it belongs to that model alone (CPU: peak RSS, VmHWM reset by clear_refs; CUDA:
max_memory_allocated). Every figure is also a ratio to ResNet-9 at the same size in the same run.
The models of one size are timed in turns (ResNet-9, then each ViT, in every repetition), so load
from other processes on a shared machine hits them alike; `--stat min` (the default) drops the
repetitions that such load slowed down. A second table splits each ViTTranslator's inference
into encoder, decoder and head.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

DEFAULT_JOBS = ["resnet9@256", "vit_small_p16@256", "swin_tiny_p4@256", "vit_base_p16@256", "resnet9@64", "vit_tiny_p8@64",
                "swin_mini_p4@64"]
TARGETS = {"vit_small_p16@256": {"infer_b1": 0.5, "train_b1": 0.7}}  # ratio to ResNet-9, 2-core CPU


def build(name: str) -> torch.nn.Module:
    from vitcycle.models import GENERATORS, ResnetGenerator

    if name == "resnet9":
        return ResnetGenerator()
    if name not in GENERATORS:
        raise SystemExit(f"unknown model {name!r}; choose resnet9 or one of {sorted(GENERATORS)}")
    return GENERATORS[name]()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, args: argparse.Namespace) -> dict:
    """Seconds per call of each fn; the fns take turns in every repetition, so load from other
    processes on a shared machine hits all of them alike and their ratios stay fair."""
    for fn in fns.values():
        for _ in range(args.warmup):
            fn()
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(args.reps):
        for key, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[key].append(time.perf_counter() - t)
    agg = min if args.stat == "min" else statistics.median
    return {key: agg(v) for key, v in times.items()}


def gflops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> float:
    """Reset the process's peak RSS (Linux: clear_refs 5) and return the current RSS in MiB.

    ru_maxrss alone would not do: importing torch already peaks far above a small model's step.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    current = _proc_status_mb("VmRSS")
    return current if current is not None else peak_rss()


def peak_rss() -> float:
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_step(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> None:
    with autocast(device):
        loss = model(x).float().mean()
    loss.backward()
    model.zero_grad(set_to_none=True)


def memory_worker(job: str, device: torch.device) -> dict:
    """Peak memory of one training step (batch 1) above the model's weights, alone in this process."""
    name, size = job.split("@")
    torch.manual_seed(0)
    model = build(name).to(device).train()
    x = torch.rand(1, 3, int(size), int(size), device=device) * 2 - 1
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        base = reset_peak_rss()
    for _ in range(2):
        train_step(model, x, device)
    sync(device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss()
    return {"mem_mb": peak - base}


def run_memory_worker(job: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--memory-worker", job, "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"job {job} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["mem_mb"]


def measure_size(jobs: list[str], size: int, device: torch.device, args: argparse.Namespace) -> list[dict]:
    """Params, GFLOPs and interleaved timings of all `jobs` at one image size, in this process."""
    torch.manual_seed(0)
    models = {job: build(job.split("@")[0]).to(device) for job in jobs}
    x1 = torch.rand(1, 3, size, size, device=device) * 2 - 1
    x8 = torch.rand(8, 3, size, size, device=device) * 2 - 1
    out = {
        job: {"job": job, "params_m": sum(p.numel() for p in m.parameters()) / 1e6}
        for job, m in models.items()
    }
    for job, m in models.items():
        m.eval()
        out[job]["gflops"] = gflops(lambda m=m: m(x1))  # with grad on: FlopCounterMode's module hooks need it

    def infer(m: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
        def fn() -> object:
            with torch.no_grad(), autocast(device):
                return m(x)

        return fn

    for m in models.values():
        m.train()
    for job, t in interleaved(
        {j: lambda m=m: train_step(m, x1, device) for j, m in models.items()}, device, args
    ).items():
        out[job]["train_b1"] = t
    for m in models.values():
        m.eval()
    for key, x in (("infer_b1", x1), ("infer_b8", x8)):
        for job, t in interleaved({j: infer(m, x) for j, m in models.items()}, device, args).items():
            out[job][key] = t

    # ViTTranslator: where does the inference time go? (encoder / decoder / head, batch 1)
    parts: dict[str, Callable[[], object]] = {}
    for job, m in models.items():
        if not hasattr(m, "forward_encoder"):
            continue
        with torch.no_grad(), autocast(device):
            enc = m.forward_encoder(x1)
            style = m.forward_style(None, 1).detach()
            feats = [m.forward_decoder(enc[-1], style)] + enc[-2::-1]

        def part(fn: Callable[..., object], *a: object) -> Callable[[], object]:
            def call() -> object:
                with torch.no_grad(), autocast(device):
                    return fn(*a)

            return call

        parts[f"{job}|encoder"] = part(m.forward_encoder, x1)
        parts[f"{job}|decoder"] = part(m.forward_decoder, enc[-1], style)
        parts[f"{job}|head"] = part(m.forward_head, feats, x1)
        out[job]["parts"] = {}
        with autocast(device):
            flops = {
                "encoder": gflops(lambda m=m: m.forward_encoder(x1)),
                "decoder": gflops(lambda m=m, e=enc[-1], s=style: m.forward_decoder(e, s)),
                "head": gflops(lambda m=m, f=feats: m.forward_head(f, x1)),
            }
        for name, f in flops.items():
            out[job]["parts"][name] = {"gflops": f}
    if parts:
        for key, t in interleaved(parts, device, args).items():
            job, name = key.split("|")
            out[job]["parts"][name]["infer_b1"] = t
    return [out[job] for job in jobs]


def fmt(value: float, ref: float | None, digits: int = 0) -> str:
    text = f"{value:,.{digits}f}"
    return f"{text} ({value / ref:.2f}x)" if ref else text


def report(results: list[dict], device: str, args: argparse.Namespace) -> str:
    base = {r["job"].split("@")[1]: r for r in results if r["job"].startswith("resnet9@")}
    lines = [
        f"device: {device}; torch {torch.__version__}; threads {args.threads or torch.get_num_threads()}; "
        f"{args.stat} of {args.reps} reps after {args.warmup} warmup; ratios to ResNet-9 at the same size",
        "",
        "| model | size | params (M) | GFLOPs b1 | infer b1 (ms) | infer b8 (ms) | train b1 fwd+bwd (ms) | peak mem train b1 (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name, size = r["job"].split("@")
        ref = base.get(size)

        def cell(key: str, scale: float = 1.0, digits: int = 0, r=r, ref=ref) -> str:
            return fmt(r[key] * scale, ref[key] * scale if ref and ref is not r else None, digits)

        lines.append(
            f"| {name} | {size}x{size} | {cell('params_m', digits=2)} | {cell('gflops', digits=1)} | "
            f"{cell('infer_b1', 1e3)} | {cell('infer_b8', 1e3)} | {cell('train_b1', 1e3)} | {cell('mem_mb')} |"
        )
    lines += [
        "",
        "| model | size | part | GFLOPs b1 | infer b1 (ms) | share of parts |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "parts" not in r:
            continue
        name, size = r["job"].split("@")
        total = sum(p["infer_b1"] for p in r["parts"].values())
        for part, p in r["parts"].items():
            lines.append(
                f"| {name} | {size}x{size} | {part} | {p['gflops']:.1f} | {p['infer_b1'] * 1e3:,.0f} | "
                f"{p['infer_b1'] / total:.0%} |"
            )
    checks = []
    for job, targets in TARGETS.items():
        r = next((r for r in results if r["job"] == job), None)
        ref = base.get(job.split("@")[1])
        if r is None or ref is None:
            continue
        for key, limit in targets.items():
            ratio = r[key] / ref[key]
            checks.append(
                f"{job} {key}: {ratio:.2f}x ResNet-9 (target <= {limit}x): {'met' if ratio <= limit else 'MISSED'}"
            )
    return "\n".join(lines + ([""] + checks if checks else []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--jobs", nargs="+", default=DEFAULT_JOBS, help="model@size, model in resnet9 or GENERATORS"
    )
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per figure")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--stat", choices=["min", "median"], default="min", help="min: robust to other load")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads; 0 keeps torch's default"
    )
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, torch.device(args.device))))
        return
    device = torch.device(args.device)
    label = torch.cuda.get_device_name() + ", bf16 autocast" if args.device == "cuda" else "cpu, fp32"
    sizes = sorted({int(job.split("@")[1]) for job in args.jobs}, reverse=True)
    by_job = {}
    for size in sizes:
        jobs = [job for job in args.jobs if int(job.split("@")[1]) == size]
        print(f"timing {', '.join(jobs)} ...", file=sys.stderr, flush=True)
        by_job.update({r["job"]: r for r in measure_size(jobs, size, device, args)})
    for job in args.jobs:
        print(f"memory of {job} ...", file=sys.stderr, flush=True)
        by_job[job]["mem_mb"] = run_memory_worker(job, args)
    results = [by_job[job] for job in args.jobs]
    print(report(results, label, args))


if __name__ == "__main__":
    main()
