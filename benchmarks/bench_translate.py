"""Translation speed: images/s of `Translator.translate_batch` on a folder of images.

Times the whole in-memory path (resize, pad, generator, crop, uint8, resize back); reading files
is excluded (images are decoded once before timing). CPU in float32, and CUDA in bfloat16 autocast
when a GPU is present. Without --ckpt a randomly initialised vit_small_p16 generator is timed
(the speed is the same as a trained one; the table says which was used).

    python benchmarks/bench_translate.py --data ../shared/data/selfie2anime/trainA --n 32
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from vitcycle.data.imageio import find_images, read_image
from vitcycle.inference.translator import Translator
from vitcycle.models import vit_small_p16

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "selfie2anime" / "trainA"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(translator: Translator, images: list, batch_size: int, size: int) -> float:
    """Images/s over all `images` in batches of `batch_size`, after one warm-up batch."""
    translator.translate_batch(images[:batch_size], size=size)  # warm-up (allocations, kernels)
    _sync(translator.device)
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        translator.translate_batch(images[i : i + batch_size], size=size)
    _sync(translator.device)
    return len(images) / (time.perf_counter() - start)


def machine_line() -> str:
    """CPU model and cores, torch version, and the GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"machine: {cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}{gpu}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of images (first --n files are used)")
    parser.add_argument("--n", type=int, default=32, help="number of images")
    parser.add_argument("--ckpt", default=None, help="checkpoint; default: random vit_small_p16")
    parser.add_argument("--size", type=int, default=256, help="processing size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    files = find_images(args.data)[: args.n]
    if not files:
        raise SystemExit(f"no images in {args.data}; pass --data DIR")
    images = [read_image(f) for f in files]
    devices = [("cpu", None)] + ([("cuda", torch.bfloat16)] if torch.cuda.is_available() else [])

    if args.ckpt:
        source = f"checkpoint {args.ckpt}"
    else:
        torch.manual_seed(0)
        source = "random vit_small_p16 (no checkpoint given)"
    shape = "x".join(map(str, images[0].shape[:2]))
    print(f"generator: {source}; {len(images)} images of {shape} from {args.data}, processed at {args.size} px\n")
    print("| device | dtype | batch | images/s | ms/image |")
    print("|---|---|---|---|---|")
    for device, amp in devices:
        if args.ckpt:
            translator = Translator.from_checkpoint(args.ckpt, device=device)
        else:
            translator = Translator(vit_small_p16(), image_size=args.size, device=device)
        translator.amp_dtype = amp
        for bs in args.batch_sizes:
            ips = images_per_second(translator, images, bs, args.size)
            dtype = "bf16 autocast" if amp is not None else "fp32"
            print(f"| {device} | {dtype} | {bs} | {ips:.2f} | {1000 / ips:.1f} |")
    print(f"\n{machine_line()}")


if __name__ == "__main__":
    main()
