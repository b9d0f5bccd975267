"""FID/KID against independent numpy/scipy code, paired metrics, and `vitcycle eval` end to end."""

from __future__ import annotations

import json
import math
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from vitcycle.cli import main
from vitcycle.data.imageio import read_image
from vitcycle.data.synthetic import make_synthetic_dataset
from vitcycle.quality.metrics import (
    InceptionWeightsError,
    PairedMetrics,
    compute_fid_kid,
    fid_kid_from_features,
    inception_cache_path,
    load_inception,
    run_eval,
)


def numpy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets, as in Heusel et al. 2017 (scipy's matrix square root)."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def numpy_kid(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018), equal set sizes."""
    d, m = real.shape[1], real.shape[0]

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1.0) ** 3

    kxx, kyy, kxy = k(real, real), k(fake, fake), k(real, fake)
    off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off - 2 * kxy.sum() / m**2)


class SmallNet(nn.Module):
    """A fixed random conv net: uint8 (N, 3, H, W) -> (N, 16) features (stands in for Inception)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 5, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(self.conv(x.float() / 127.5 - 1.0))  # (N, 16, h, w)
        return y.mean(dim=(2, 3))  # (N, 16)


def test_fid_kid_match_numpy_on_random_features() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 6))
    fake = rng.normal(loc=0.5, scale=1.3, size=(40, 6))
    got = fid_kid_from_features(torch.from_numpy(real), torch.from_numpy(fake), kid_subset_size=1000)
    assert got["kid_subset_size"] == 40  # capped at the set size
    assert got["fid"] == pytest.approx(numpy_fid(real, fake), rel=1e-6)
    assert got["kid_mean"] == pytest.approx(numpy_kid(real, fake), rel=1e-6)  # every subset is the whole set
    assert got["kid_std"] == pytest.approx(0.0, abs=1e-9)
    same = fid_kid_from_features(torch.from_numpy(real), torch.from_numpy(real))
    assert same["fid"] == pytest.approx(0.0, abs=1e-6) and same["kid_mean"] < 0.02


def test_kid_subsets_are_seeded_and_too_few_samples_give_nan() -> None:
    real, fake = torch.randn(30, 4, dtype=torch.float64), torch.randn(20, 4, dtype=torch.float64) + 1
    a = fid_kid_from_features(real, fake, kid_subset_size=10)
    b = fid_kid_from_features(real, fake, kid_subset_size=10)
    assert a == b and a["kid_subset_size"] == 10 and a["kid_std"] > 0
    assert math.isnan(fid_kid_from_features(real[:1], fake)["fid"])


def test_compute_fid_kid_with_injected_extractor_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (24, 3, 20, 20), generator=gen, dtype=torch.uint8)
    fake = (real.float() * 0.6 + 40).to(torch.uint8)
    net = SmallNet()
    got = compute_fid_kid(real, [fake[:10], fake[10:]], feature_extractor=net, batch_size=7)
    with torch.no_grad():
        fr, ff = net(real).double().numpy(), net(fake).double().numpy()
    assert got["fid"] == pytest.approx(numpy_fid(fr, ff), rel=1e-5)
    assert got["kid_mean"] == pytest.approx(numpy_kid(fr, ff), rel=1e-5)
    assert got["fid"] > 1e-3


def test_paired_metrics_known_values() -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(20, 200, (32, 40, 3), dtype=np.uint8)
    pm = PairedMetrics()
    pm.update(target + 10, target)  # every pixel off by 10/255
    pm.update(target, target.copy())
    got = pm.compute()
    assert got["n"] == 2
    assert got["l1"] == pytest.approx(0.5 * 20 / 255, rel=1e-5)  # on [-1, 1], averaged over the two pairs
    assert math.isinf(got["psnr"]) or got["psnr"] > 40  # one identical pair
    one = PairedMetrics()
    one.update(target + 10, target)
    assert one.compute()["psnr"] == pytest.approx(20 * math.log10(25.5), rel=1e-4)
    assert 0.5 < one.compute()["ssim"] < 1.0


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(out, n_train=1, n_val=6, size=32, seed=0)
    return out


@pytest.fixture(scope="module")
def eval_ckpt(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real fit's checkpoint in a folder of its own (reports are written beside it)."""
    return Path(shutil.copy(tiny_ckpt, tmp_path_factory.mktemp("eval") / "tiny.ckpt"))


def test_run_eval_end_to_end_with_pairs(synth: Path, eval_ckpt: Path) -> None:
    report = run_eval(eval_ckpt, synth / "valA", synth / "valB", feature_extractor=SmallNet(), batch_size=4, device="cpu")
    assert report["settings"]["pairs"] == str(synth / "pairs_val.csv")  # found beside the folders
    for name in ("a2b", "b2a"):
        r = report[name]
        assert r["n_inputs"] == 6 and r["n_real"] == 6 and r["kid_subset_size"] == 6
        assert math.isfinite(r["fid"]) and math.isfinite(r["kid_mean"])
        assert r["paired"]["n"] == 6 and 0 < r["paired"]["l1"] < 2 and 0 < r["paired"]["ssim"] <= 1
    # the identity baseline, computed independently: mean over pairs of L1(a_i, b_i) on [-1, 1]
    l1 = np.mean([
        np.abs(read_image(synth / f"valA/{i:06d}.png").astype(float) - read_image(synth / f"valB/{i:06d}.png")).mean() * 2 / 255
        for i in range(6)
    ])
    assert report["identity"]["n"] == 6 and report["identity"]["l1"] == pytest.approx(l1, rel=1e-5)


def test_cli_eval_writes_json_and_table(synth: Path, eval_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("vitcycle.quality.metrics.load_inception", lambda weights_path=None: SmallNet())
    out = tmp_path / "report.json"
    code = main(["eval", "--ckpt", str(eval_ckpt), "--test-a", str(synth / "valA"), "--test-b", str(synth / "valB"),
                 "--out", str(out), "--batch-size", "3", "--device", "cpu", "--kid-subset-size", "4"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["a2b"]["kid_subset_size"] == 4 and report["b2a"]["paired"]["n"] == 6
    table = capsys.readouterr().out
    assert "| a2b |" in table and "| b2a |" in table and "identity (a vs its b)" in table and str(out) in table


def test_offline_inception_gives_one_clear_error_fast(synth: Path, eval_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    connects: list = []

    def no_network(self, address):  # any connection attempt fails at once, and is recorded
        connects.append(address)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    expected = tmp_path / "torch_home/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth"
    assert inception_cache_path() == expected
    start = time.perf_counter()
    code = main(["eval", "--ckpt", str(eval_ckpt), "--test-a", str(synth / "valA"), "--test-b", str(synth / "valB"),
                 "--device", "cpu"])
    assert time.perf_counter() - start < 15
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "could not download the Inception weights" in err and str(expected) in err and "--inception-weights" in err
    assert not expected.exists()

    with pytest.raises(InceptionWeightsError, match="does not exist"):
        load_inception(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(1)}, bad)
    with pytest.raises(InceptionWeightsError, match="not torch-fidelity's InceptionV3"):
        load_inception(bad)


def test_cli_eval_paired_only_needs_no_inception(synth: Path, eval_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def refuse(weights_path=None):
        raise AssertionError("paired-only must not load Inception")

    monkeypatch.setattr("vitcycle.quality.metrics.load_inception", refuse)
    out = tmp_path / "paired.json"
    code = main(["eval", "--ckpt", str(eval_ckpt), "--test-a", str(synth / "valA"), "--test-b", str(synth / "valB"),
                 "--paired-only", "--out", str(out), "--device", "cpu"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["a2b"]["fid"] is None and report["a2b"]["paired"]["n"] == 6 and report["identity"]["n"] == 6
    assert "| a2b | - |" in capsys.readouterr().out
