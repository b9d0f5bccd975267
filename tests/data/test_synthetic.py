"""The built-in data set: files, determinism, hidden pairs, and that the two styles differ."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from vitcycle.cli import main
from vitcycle.data.datamodule import UnpairedImageDataModule
from vitcycle.data.imageio import find_images, read_image
from vitcycle.data.synthetic import (
    face_for,
    make_synthetic_dataset,
    render_anime,
    render_photo,
    save_pair_grid,
)
from vitcycle.errors import DataError

N = 12
SIZE = 48


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(out, n_train=N, n_val=N, size=SIZE, seed=0)
    return out


def _load(folder: Path) -> list[np.ndarray]:
    return [read_image(p).astype(np.float32) / 255.0 for p in find_images(folder)]  # (H, W, 3) in [0, 1]


def _layout_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean abs difference of 8x8 thumbnails: small when two images show the same face layout."""
    small = [cv2.resize(x, (8, 8), interpolation=cv2.INTER_AREA) for x in (a, b)]
    return float(np.abs(small[0] - small[1]).mean())


def _strong_edges(img: np.ndarray) -> float:
    """95th percentile of the Sobel gradient magnitude of the luminance."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return float(np.percentile(np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)), 95))


def test_layout_and_manifest(synth):
    manifest = synth / "pairs_val.csv"
    for name in ("trainA", "trainB", "valA", "valB"):
        files = find_images(synth / name)
        assert len(files) == N and all(f.suffix == ".png" for f in files)
        assert read_image(files[0]).shape == (SIZE, SIZE, 3)
    rows = list(csv.reader(manifest.open()))
    assert rows[0] == ["a", "b"] and len(rows) == N + 1
    assert rows[1] == ["valA/000000.png", "valB/000000.png"]
    assert all((synth / a).is_file() and (synth / b).is_file() for a, b in rows[1:])


def test_same_seed_same_bytes_other_seed_other_images(synth, tmp_path):
    again = make_synthetic_dataset(tmp_path / "again", n_train=N, n_val=N, size=SIZE, seed=0)
    assert again == tmp_path / "again" / "pairs_val.csv"
    for path in sorted(synth.rglob("*.*")):
        assert (tmp_path / "again" / path.relative_to(synth)).read_bytes() == path.read_bytes(), path
    make_synthetic_dataset(tmp_path / "other", n_train=2, n_val=2, size=SIZE, seed=1)
    assert (tmp_path / "other/valA/000000.png").read_bytes() != (synth / "valA/000000.png").read_bytes()
    # face i does not depend on how many faces are drawn
    assert (tmp_path / "other/trainB/000001.png").read_bytes() != (synth / "trainB/000001.png").read_bytes()


def test_a_smaller_rerun_leaves_no_stale_files(synth, tmp_path):
    make_synthetic_dataset(tmp_path, n_train=4, n_val=3, size=32)
    make_synthetic_dataset(tmp_path, n_train=2, n_val=1, size=32)
    assert len(find_images(tmp_path / "trainA")) == 2 and len(find_images(tmp_path / "valB")) == 1


def test_val_pairs_are_aligned_and_train_is_not(synth):
    val_a, val_b = _load(synth / "valA"), _load(synth / "valB")
    d = np.array([[_layout_distance(a, b) for b in val_b] for a in val_a])  # (N, N)
    matched = d.diagonal().mean()
    mismatched = d[~np.eye(N, dtype=bool)].mean()
    assert matched < 0.8 * mismatched
    train = np.mean(
        [
            _layout_distance(a, b)
            for a, b in zip(_load(synth / "trainA"), _load(synth / "trainB"), strict=True)
        ]
    )
    assert train > 1.25 * matched  # same file name, different faces


def test_the_two_styles_differ(synth):
    val_a, val_b = _load(synth / "valA"), _load(synth / "valB")
    assert (
        np.mean([np.abs(a - b).mean() for a, b in zip(val_a, val_b, strict=True)]) > 0.1
    )  # a real domain gap
    edges_a = np.array([_strong_edges(a) for a in val_a])
    edges_b = np.array([_strong_edges(b) for b in val_b])
    assert (edges_b > 1.3 * edges_a).all()  # dark outlines in the anime style
    sat = [
        cv2.cvtColor(x, cv2.COLOR_RGB2HSV)[..., 1].mean()
        for x in (np.concatenate(val_a), np.concatenate(val_b))
    ]
    assert sat[1] > 1.3 * sat[0]  # saturated anime colours
    # texture noise in the photos: flat regions of the anime images are exactly flat
    photo, anime = val_a[0], val_b[0]
    assert (
        np.abs(np.diff(photo[:4, :4], axis=1)).mean() > 0.005 > np.abs(np.diff(anime[:4, :4], axis=1)).mean()
    )


def test_renderers_return_rgb_uint8_at_any_size():
    face = face_for(5, "val", 3)
    for size in (16, 64):
        for img in (render_photo(face, size), render_anime(face, size)):
            assert img.shape == (size, size, 3) and img.dtype == np.uint8


def test_data_module_reads_the_synthetic_set(synth):
    dm = UnpairedImageDataModule(
        str(synth / "trainA"),
        str(synth / "trainB"),
        image_size=32,
        batch_size=4,
        num_workers=0,
        val_pairs=str(synth / "pairs_val.csv"),
    )
    dm.setup("fit")
    assert len(dm.train_set) == N and len(dm.val_set) == N
    val = next(iter(dm.val_dataloader()))
    assert val["a"].shape == val["b"].shape == (4, 3, 32, 32) and val["paired"].all()


def test_pair_grid(synth, tmp_path):
    out = save_pair_grid(synth / "pairs_val.csv", tmp_path / "docs" / "grid.png", n=5, gap=2)
    grid = read_image(out)
    assert grid.shape == (2 * SIZE + 3 * 2, 5 * (SIZE + 2) + 2, 3)
    np.testing.assert_array_equal(grid[2 : 2 + SIZE, 2 : 2 + SIZE], read_image(synth / "valA/000000.png"))
    np.testing.assert_array_equal(
        grid[4 + SIZE : 4 + 2 * SIZE, 2 : 2 + SIZE], read_image(synth / "valB/000000.png")
    )


def test_bad_arguments():
    with pytest.raises(DataError, match="n_train"):
        make_synthetic_dataset("unused", n_train=0)
    with pytest.raises(DataError, match="size"):
        make_synthetic_dataset("unused", size=8)


def test_cli_data_synth(tmp_path, capsys):
    rc = main(["data", "synth", "--out", str(tmp_path), "--n-train", "2", "--n-val", "2", "--size", "32"])
    assert rc == 0
    assert "pairs_val.csv" in capsys.readouterr().out
    assert len(find_images(tmp_path)) == 8
    assert main(["data", "synth", "--out", str(tmp_path), "--size", "4"]) == 2  # one-line error, no traceback
    assert "size must be at least 16" in capsys.readouterr().err


def test_a_folder_with_other_files_is_refused_and_kept(tmp_path):
    mine = tmp_path / "trainA" / "holiday.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my photo")
    with pytest.raises(DataError, match="holds files that are not a built-in data set .*holiday.jpg"):
        make_synthetic_dataset(tmp_path, n_train=2, n_val=1, size=32)
    assert mine.read_bytes() == b"my photo" and not (tmp_path / "trainB").exists()
