"""Shared test fixtures: small image folders and the real selfie2anime folder when present."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# The tests run many tiny models: intra-op threads only add overhead there (and on a shared
# machine OpenMP spin-waiting makes small ops up to 10x slower).
torch.set_num_threads(1)

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import in tests

SELFIE2ANIME = Path(__file__).resolve().parents[1].parent / "shared/data/selfie2anime"


@pytest.fixture
def make_images() -> Callable[..., list[Path]]:
    """Write `n` PNG images into `folder`: image k has red = 10 * (start + k) + 5 everywhere
    (so a test can tell which file an item came from) and random green/blue texture."""

    def make(
        folder: Path, n: int, size: tuple[int, int] = (40, 48), start: int = 0, seed: int = 0
    ) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        paths = []
        for k in range(start, start + n):
            rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)  # (H, W, 3)
            rgb[:, :, 0] = 10 * k + 5
            path = folder / f"{k:06d}.png"
            ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            assert ok
            path.write_bytes(buf.tobytes())
            paths.append(path)
        return paths

    return make


@pytest.fixture
def selfie2anime() -> Path:
    """The real selfie2anime folder next to the repository; the test is skipped without it."""
    if not (SELFIE2ANIME / "trainA").is_dir() or not (SELFIE2ANIME / "trainB").is_dir():
        pytest.skip(f"selfie2anime not present at {SELFIE2ANIME}")
    return SELFIE2ANIME


def _synthetic(out: Path, n_train: int, n_val: int) -> Path:
    """The built-in data set at 32 px (seed 0) in `out`."""
    from vitcycle.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(out, n_train=n_train, n_val=n_val, size=32, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The built-in data set at 32 px: 16 training images per domain, 8 validation pairs."""
    return _synthetic(tmp_path_factory.mktemp("synthetic"), n_train=16, n_val=8)


def _fit(tmp_path_factory, data: Path, name: str, **model_overrides) -> Path:
    """last.ckpt of a real one-epoch `vitcycle fit` of tiny networks on `data` (a few seconds)."""
    from tiny import tiny_config

    from vitcycle.cli import cli_main

    run = tmp_path_factory.mktemp(name)
    cli_main(["fit", "--config", str(tiny_config(run, data, **model_overrides))])
    return run / "ckpt/last.ckpt"


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_data, tmp_path_factory) -> Path:
    """last.ckpt of a real one-epoch `vitcycle fit` of tiny ViT generators on `tiny_data`."""
    return _fit(tmp_path_factory, tiny_data, "tiny_fit")


@pytest.fixture(scope="session")
def tiny_style_ckpt(tiny_data, tmp_path_factory) -> Path:
    """As `tiny_ckpt`, the generators with a style encoder."""
    from tiny import TINY_VIT

    gen = {"class_path": "vitcycle.models.ViTTranslator",
           "init_args": {**TINY_VIT, "style_encoder": True, "style_dim": 32, "style_depth": 1}}
    return _fit(tmp_path_factory, tiny_data, "tiny_style_fit", gen_ab=gen, gen_ba=gen)


@pytest.fixture(scope="session")
def tiny_resnet_ckpt(tiny_data, tmp_path_factory) -> Path:
    """As `tiny_ckpt`, with tiny ResNet generators (ngf 8, one residual block)."""
    gen = {"class_path": "vitcycle.models.ResnetGenerator", "init_args": {"ngf": 8, "n_blocks": 1}}
    return _fit(tmp_path_factory, tiny_data, "tiny_resnet_fit", gen_ab=gen, gen_ba=gen)


@pytest.fixture(scope="session")
def judge_data(tmp_path_factory) -> Path:
    """The built-in data at 32 px with enough faces for a judge: 150 per domain, 30 held-out pairs."""
    return _synthetic(tmp_path_factory.mktemp("judge_data"), n_train=150, n_val=30)


@pytest.fixture(scope="session")
def judge_file(judge_data, tmp_path_factory) -> Path:
    """A judge file of a short `fit_judge` on `judge_data` (seed 0)."""
    from tiny import JUDGE_ARGS

    from vitcycle.quality.judge import fit_judge, save_judge

    judge, _ = fit_judge(judge_data / "trainA", judge_data / "trainB", seed=0, **JUDGE_ARGS)
    return save_judge(judge, tmp_path_factory.mktemp("judge") / "judge.pt")


@pytest.fixture
def forged_png() -> Callable[[Path, int, int], Path]:
    """Write a PNG whose header claims width x height but holds one tiny row: no real decode."""

    def write(path: Path, width: int = 20000, height: int = 20000) -> Path:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b"")
        )
        return path

    return write
