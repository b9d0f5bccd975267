"""read_image, find_images and UnpairedImageDataModule: odd files, sampling, workers, DDP, bad input."""

from __future__ import annotations

import inspect
import io
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch.utils.data import DistributedSampler

from vitcycle.data.datamodule import UnpairedImageDataModule, UnpairedImageFolder
from vitcycle.data.imageio import IMAGE_EXTENSIONS, find_images, read_image
from vitcycle.errors import DataError, ImageReadError, ImageTooLargeError, VitcycleError


def _code(x: torch.Tensor) -> int:
    """The file number `make_images` wrote into the red channel of a (3, H, W) item in [-1, 1]."""
    red = (float(x[0].mean()) + 1.0) * 127.5
    return int(round((red - 5) / 10))


def _codes(batch: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    return [(_code(a), _code(b)) for a, b in zip(batch["a"], batch["b"], strict=True)]


def _rgb_image(h: int = 40, w: int = 60) -> np.ndarray:
    """Left half red, right half blue, a green square in the top-left corner: orientation visible."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (220, 30, 30)
    img[:, w // 2 :] = (30, 30, 220)
    img[:8, :8] = (30, 220, 30)
    return img


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


# ---------------------------------------------------------------------------------------------
# read_image


def test_png_data_with_jpg_name_is_read_exactly(tmp_path):
    img = _rgb_image()
    path = _write_png(tmp_path / "anime.jpg", img)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pil(tmp_path, fmt, orientation):
    im = Image.fromarray(_rgb_image())
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    im.save(path, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    out = read_image(path)
    assert out.shape == expected.shape == ((60, 40, 3) if orientation >= 5 else (40, 60, 3))
    assert np.abs(out.astype(int) - expected).mean() < 3  # decoders of JPEG differ by a level or two


def test_exif_rotated_jpeg_content(tmp_path):
    """Orientation 6 (camera held upright): the stored left side is displayed on top."""
    im = Image.fromarray(_rgb_image())
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "r.jpg").astype(int)
    assert out.shape == (60, 40, 3)
    assert out[:25, :, 0].mean() > 180 and out[:25, :, 2].mean() < 80  # red on top
    assert out[35:, :, 2].mean() > 180  # blue below
    assert out[2, -3, 1] > 180  # green corner moved to the top right


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) % 256
    Image.fromarray(gray.astype(np.uint8), "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 3, 4), np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[0, :, 3] = 0  # transparent -> white
    rgba[1, :, 3] = 255  # opaque -> colour
    rgba[2, :, 3] = 128  # half -> between
    rgba[3, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png").astype(int)
    assert out.shape == (4, 3, 3)
    np.testing.assert_array_equal(out[0], np.full((3, 3), 255))
    np.testing.assert_array_equal(out[1], np.tile([200, 0, 0], (3, 1)))
    np.testing.assert_allclose(out[2], np.tile([228, 127, 127], (3, 1)), atol=1)


def test_gray_with_alpha(tmp_path):
    la = np.zeros((2, 2, 2), np.uint8)
    la[..., 0] = 50
    la[0, :, 1] = 255
    la[1, :, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[0], np.full((2, 3), 50))
    np.testing.assert_array_equal(out[1], np.full((2, 3), 255))


def test_palette_png_and_its_transparency(tmp_path):
    img = _rgb_image()
    pal = Image.fromarray(img).quantize(colors=3)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    transparent_index = int(np.asarray(pal)[0, -1])  # the index of the blue half
    pal.save(tmp_path / "pt.png", transparency=transparent_index)
    out = read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out[:, 30:], np.full((40, 30, 3), 255))  # blue half is see-through
    np.testing.assert_array_equal(out[20, 10], img[20, 10])


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    gray16 = np.array([[0, 257 * 100, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[0], [[0] * 3, [100] * 3, [255] * 3])
    bgr16 = np.zeros((1, 2, 3), np.uint16)
    bgr16[0, 0] = (0, 0, 65535)  # red in BGR order
    bgr16[0, 1] = (257 * 10, 257 * 20, 257 * 30)
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], [[255, 0, 0], [30, 20, 10]])


def test_non_ascii_path(tmp_path):
    folder = tmp_path / "données" / "写真"
    folder.mkdir(parents=True)
    img = _rgb_image()
    path = _write_png(folder / "ñandú_画像.png", img)
    np.testing.assert_array_equal(read_image(path), img)
    assert find_images(tmp_path) == [path]


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".jpg"])
def test_other_formats(tmp_path, ext):
    img = _rgb_image()
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (tmp_path / f"x{ext}").write_bytes(buf.tobytes())
    out = read_image(tmp_path / f"x{ext}")
    assert out.shape == (40, 60, 3) and np.abs(out.astype(int) - img).mean() < 4


def test_jpeg_with_data_after_the_end_marker_is_fine(tmp_path):
    ok, buf = cv2.imencode(".jpg", _rgb_image())
    (tmp_path / "t.jpg").write_bytes(buf.tobytes() + b"\x00" * 100 + b"appended metadata")
    assert read_image(tmp_path / "t.jpg").shape == (40, 60, 3)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_file_raises_naming_it(tmp_path, ext):
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(ext, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / f"cut{ext}"
    path.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.(jpg|png).*truncated") as info:
        read_image(path)
    assert info.value.path == path
    assert isinstance(info.value, VitcycleError)


def test_non_image_missing_and_empty_files_raise_naming_them(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not an image")
    with pytest.raises(ImageReadError, match=r"notes\.jpg: not a supported image format"):
        read_image(tmp_path / "notes.jpg")
    with pytest.raises(ImageReadError, match=r"missing\.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: the file is empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50 + b"IEND")
    with pytest.raises(ImageReadError, match=r"fake\.png: not a decodable PNG"):
        read_image(tmp_path / "fake.png")


def test_find_images_recursive_sorted_case_insensitive(tmp_path, make_images):
    make_images(tmp_path / "b" / "deep", 2)
    make_images(tmp_path / "a", 1)
    (tmp_path / "a" / "X.JPG").write_bytes(b"")
    (tmp_path / "a" / "y.Jpeg").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("no")
    (tmp_path / "a" / "._000000.png").write_bytes(b"macOS resource fork")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "z.png").write_bytes(b"")
    found = find_images(tmp_path)
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["a/000000.png", "a/X.JPG", "a/y.Jpeg", "b/deep/000000.png", "b/deep/000001.png"]
    assert find_images(found[0]) == [found[0]]
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
    with pytest.raises(DataError, match=r"nope does not exist \(expected a folder, or a file ending in \.jpg .*\.bmp\)"):
        find_images(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------
# Data module


def _dm(root: Path, **kw) -> UnpairedImageDataModule:
    args = dict(image_size=32, batch_size=4, num_workers=0, val_fraction=0.0)
    args.update(kw)
    dm = UnpairedImageDataModule(str(root / "A"), str(root / "B"), **args)
    dm.setup("fit")
    return dm


def _epoch(dm: UnpairedImageDataModule, epoch: int, loader=None) -> list[dict[str, torch.Tensor]]:
    loader = loader or dm.train_dataloader()
    dm.set_epoch(epoch)  # a loop without Lightning
    return list(loader)


def test_init_args_typed_for_lightning_cli_and_saved(tmp_path, make_images):
    params = inspect.signature(UnpairedImageDataModule.__init__).parameters
    for name, p in list(params.items())[1:]:
        assert p.annotation is not inspect.Parameter.empty, name
        assert (p.default is inspect.Parameter.empty) == (name in ("dir_a", "dir_b")), name
    make_images(tmp_path / "A", 3)
    make_images(tmp_path / "B", 3)
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(UnpairedImageDataModule, "data")
    cfg = parser.parse_args(
        ["--data.dir_a", str(tmp_path / "A"), "--data.dir_b", str(tmp_path / "B"), "--data.image_size", "32"]
    )
    dm = parser.instantiate_classes(cfg).data
    assert dm.hparams["image_size"] == 32 and dm.hparams["on_bad_image"] == "skip"
    assert dm.load_size == 36  # 286/256 of the crop, as in CycleGAN
    assert UnpairedImageDataModule("a", "b").load_size == 286


def test_batches_shapes_dtype_range(tmp_path, make_images):
    make_images(tmp_path / "A", 6, size=(40, 48))
    make_images(tmp_path / "B", 5, size=(64, 36))  # portrait: resized by the shorter side
    dm = _dm(tmp_path, color_jitter=0.3)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"a", "b"}
    for x in batch.values():
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32  # (B, 3, H, W)
        assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.5 and x.max() > 0.5


def test_epoch_is_max_len_and_every_file_is_used(tmp_path, make_images):
    make_images(tmp_path / "A", 3)
    make_images(tmp_path / "B", 10)
    dm = _dm(tmp_path, batch_size=1)
    assert len(dm.train_set) == 10
    pairs = [p for b in _epoch(dm, 0) for p in _codes(b)]
    assert len(pairs) == 10
    assert sorted(b for _, b in pairs) == list(range(10))  # the larger folder: each once
    assert sorted(Counter(a for a, _ in pairs).values()) == [3, 3, 4]  # the smaller: evenly
    pairs_1 = [p for b in _epoch(dm, 1) for p in _codes(b)]
    assert sorted(pairs_1) != sorted(pairs)  # a new random pairing each epoch
    assert sorted(b for _, b in pairs_1) == list(range(10))


def test_same_seed_same_batches_other_seed_other_batches(tmp_path, make_images):
    make_images(tmp_path / "A", 8)
    make_images(tmp_path / "B", 5)
    runs = [[_epoch(_dm(tmp_path, seed=s), e) for e in (0, 1)] for s in (3, 3, 4)]
    for e in (0, 1):
        for b1, b2 in zip(runs[0][e], runs[1][e], strict=True):
            assert torch.equal(b1["a"], b2["a"]) and torch.equal(b1["b"], b2["b"])
    assert not all(
        torch.equal(b1["a"], b2["a"]) for b1, b2 in zip(runs[0][0], runs[0][1], strict=True)
    )  # epochs differ
    assert not all(
        torch.equal(b1["a"], b2["a"]) for b1, b2 in zip(runs[0][0], runs[2][0], strict=True)
    )  # seeds differ


def test_data_module_set_epoch_drives_order_and_pairing(tmp_path, make_images):
    make_images(tmp_path / "A", 8)
    make_images(tmp_path / "B", 5)
    dm = _dm(tmp_path)
    loader = dm.train_dataloader()
    dm.set_epoch(1)  # a loop without Lightning
    for b1, b2 in zip(list(loader), _epoch(_dm(tmp_path), 1), strict=True):
        assert torch.equal(b1["a"], b2["a"]) and torch.equal(b1["b"], b2["b"])


def test_two_workers_give_the_same_items_as_none(tmp_path, make_images):
    make_images(tmp_path / "A", 8)
    make_images(tmp_path / "B", 5)
    main = _dm(tmp_path, num_workers=0)
    workers = _dm(tmp_path, num_workers=2)
    loader = workers.train_dataloader()  # persistent workers: the epoch must still reach them
    for epoch in (0, 1):
        for b0, b2 in zip(_epoch(main, epoch), _epoch(workers, epoch, loader), strict=True):
            assert torch.equal(b0["a"], b2["a"]) and torch.equal(b0["b"], b2["b"])


def test_distributed_sampler_shards_ranks_disjointly(tmp_path, make_images):
    make_images(tmp_path / "A", 10)
    make_images(tmp_path / "B", 4)
    dm = _dm(tmp_path, batch_size=1)
    ds = dm.train_set
    ranks = [DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(1)
    idx = [list(s) for s in ranks]
    assert len(idx[0]) == len(idx[1]) == 5
    assert not set(idx[0]) & set(idx[1]) and set(idx[0]) | set(idx[1]) == set(range(10))
    # an item depends only on (seed, epoch, index): each rank sees what a single process sees
    ds.set_epoch(1)
    whole = {i: ds[i] for i in range(10)}
    other = _dm(tmp_path, batch_size=1).train_set
    other.set_epoch(1)
    for i in idx[1]:
        assert torch.equal(other[i]["a"], whole[i]["a"]) and torch.equal(other[i]["b"], whole[i]["b"])


def test_train_dataloader_under_ddp_uses_a_rank_sampler_on_the_trainers_epoch(tmp_path, make_images):
    make_images(tmp_path / "A", 10)
    make_images(tmp_path / "B", 4)
    seen = []
    for rank in (0, 1):
        dm = _dm(tmp_path, batch_size=1)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, current_epoch=2)  # what a DDP Trainer provides
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler)  # Lightning keeps it as it is
        loader.sampler.set_epoch(5)  # Lightning's own value is ignored: it runs ahead after a resume
        batches = list(loader)
        assert dm.train_set.epoch == 2 and loader.sampler.epoch == 2
        seen.append({_code(b["a"][0]) for b in batches})  # A is the larger folder
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(10))


def test_lightning_trainer_sets_the_epoch(tmp_path, make_images):
    import pytorch_lightning as pl

    make_images(tmp_path / "A", 6)
    make_images(tmp_path / "B", 3)

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.pairs: dict[int, list[tuple[int, int]]] = {}

        def training_step(self, batch, _):
            self.pairs.setdefault(self.current_epoch, []).extend(_codes(batch))
            return (self.w * batch["a"].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    dm = _dm(tmp_path, batch_size=2)
    model = Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    ds = dm.train_set
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected = sorted((i_a, i_b) for i_a, i_b in map(ds.pair_indices, range(len(ds))))
        assert sorted(model.pairs[epoch]) == expected
    assert sorted(model.pairs[0]) != sorted(model.pairs[1])


def test_hold_out_validation_is_disjoint_and_deterministic(tmp_path, make_images):
    make_images(tmp_path / "A", 20)
    make_images(tmp_path / "B", 10)
    dm = _dm(tmp_path, val_fraction=0.2, seed=1)
    train_a, val_a = set(dm.train_set.files[0]), set(dm.val_set.files[0])
    assert len(val_a) == 4 and len(dm.val_set.files[1]) == 2
    assert not train_a & val_a and len(train_a | val_a) == 20
    assert not set(dm.train_set.files[1]) & set(dm.val_set.files[1])
    assert dm.val_set.files == _dm(tmp_path, val_fraction=0.2, seed=1).val_set.files
    assert dm.val_set.files != _dm(tmp_path, val_fraction=0.2, seed=2).val_set.files
    batches = [list(dm.val_dataloader()) for _ in range(2)]
    assert "paired" not in batches[0][0]
    for b1, b2 in zip(*batches, strict=True):
        assert torch.equal(b1["a"], b2["a"]) and torch.equal(b1["b"], b2["b"])
    codes = [p for b in batches[0] for p in _codes(b)]
    val_b = [_code_of_path(f) for f in dm.val_set.files[1]]
    assert [b for _, b in codes] == [val_b[i % 2] for i in range(4)]  # b index = i % |B|
    assert _dm(tmp_path).val_dataloader() == []  # val_fraction 0: no validation


def _code_of_path(path: Path) -> int:
    return int(path.stem)


def test_val_dirs(tmp_path, make_images):
    make_images(tmp_path / "A", 4)
    make_images(tmp_path / "B", 4)
    make_images(tmp_path / "VA", 3, start=20)
    make_images(tmp_path / "VB", 2, start=20)
    dm = _dm(tmp_path, val_dir_a=str(tmp_path / "VA"), val_dir_b=str(tmp_path / "VB"), val_fraction=0.5)
    assert len(dm.train_set.files[0]) == 4  # nothing held out
    codes = [p for b in dm.val_dataloader() for p in _codes(b)]
    assert codes == [(20, 20), (21, 21), (22, 20)]


def test_val_pairs_manifest_is_aligned_and_left_out_of_training(tmp_path, make_images):
    make_images(tmp_path / "A", 6)
    make_images(tmp_path / "B", 6, start=10)
    lines = "\ufeffa,b\r\nA/000004.png,B/000015.png\r\nA/000005.png,B/000014.png\r\n"  # as Excel writes it
    (tmp_path / "pairs.csv").write_text(lines, encoding="utf-8")
    dm = _dm(tmp_path, val_pairs=str(tmp_path / "pairs.csv"), batch_size=2)
    (batch,) = list(dm.val_dataloader())
    assert batch["paired"].dtype == torch.bool and batch["paired"].tolist() == [True, True]
    assert _codes(batch) == [(4, 15), (5, 14)]
    assert [int(f.stem) for f in dm.train_set.files[0]] == [0, 1, 2, 3]
    assert [int(f.stem) for f in dm.train_set.files[1]] == [10, 11, 12, 13]


@pytest.mark.parametrize(
    ("text", "match"),
    [("x,y\n1,2\n", "header"), ("a,b\n", "lists no pairs"), ("a,b\nA/000000.png,B/nope.png\n", r"nope\.png")],
)
def test_bad_manifest(tmp_path, make_images, text, match):
    make_images(tmp_path / "A", 2)
    make_images(tmp_path / "B", 2)
    (tmp_path / "pairs.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        _dm(tmp_path, val_pairs=str(tmp_path / "pairs.csv"))


def test_missing_and_empty_folders_name_folder_and_extensions(tmp_path, make_images):
    make_images(tmp_path / "A", 2)
    with pytest.raises(DataError, match=r"dir_b: .*B does not exist.*\.jpg .*\.png"):
        _dm(tmp_path)
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "readme.txt").write_text("images go here")
    with pytest.raises(
        DataError, match=r"dir_b: no images in .*B; expected files ending in \.jpg \.jpeg \.png"
    ):
        _dm(tmp_path)
    make_images(tmp_path / "B", 1)
    with pytest.raises(DataError, match=r"val_dir_a: .*readme\.txt is a file, not a folder"):
        _dm(tmp_path, val_dir_a=str(tmp_path / "B" / "readme.txt"), val_dir_b=str(tmp_path / "A"))


def test_one_folder_for_both_domains_is_refused(tmp_path, make_images):
    make_images(tmp_path / "A", 2)
    (tmp_path / "same").symlink_to(tmp_path / "A")  # also through a link
    for other in (tmp_path / "A", tmp_path / "same"):
        dm = UnpairedImageDataModule(str(tmp_path / "A"), str(other), image_size=16, batch_size=1)
        with pytest.raises(DataError, match=r"dir_a and dir_b are the same folder \(.*A\): give one folder per domain"):
            dm.setup("fit")


@pytest.mark.parametrize(
    "kw",
    [
        dict(val_fraction=1.0),
        dict(val_dir_a="x"),
        dict(val_pairs="p.csv", val_dir_a="x", val_dir_b="y"),
        dict(load_size=10),
        dict(on_bad_image="ignore"),
        dict(seed=-1),
    ],
)
def test_bad_options(kw):
    with pytest.raises(DataError):
        UnpairedImageDataModule("a", "b", image_size=32, **kw)


def test_corrupt_file_is_skipped_with_warning_and_count(tmp_path, make_images):
    make_images(tmp_path / "A", 5)
    make_images(tmp_path / "B", 5)
    (tmp_path / "B" / "000002.png").write_bytes(b"garbage")
    dm = _dm(tmp_path, batch_size=1)
    ds = dm.train_set
    with pytest.warns(UserWarning, match=r"000002\.png.*1 file\(s\) skipped") as record:
        items = [ds[i] for i in range(len(ds))]
    assert len(record) == 1  # warned once, then remembered
    assert ds.num_skipped == dm.num_skipped == 1 and ds.bad_files == [tmp_path / "B" / "000002.png"]
    for i, item in enumerate(items):
        i_b = ds.pair_indices(i)[1]
        assert _code(item["b"]) == (3 if i_b == 2 else i_b)  # the next file takes its place
        assert item["b"].shape == (3, 32, 32)


def test_skipped_count_is_shared_by_workers(tmp_path, make_images):
    make_images(tmp_path / "A", 4)
    make_images(tmp_path / "B", 4)
    (tmp_path / "A" / "000001.png").write_bytes(b"garbage")
    (tmp_path / "B" / "000003.png").write_bytes(b"garbage")
    dm = _dm(tmp_path, batch_size=2, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = [p for b in _epoch(dm, 0) for p in _codes(b)]
    assert len(codes) == 4 and all(a != 1 and b != 3 for a, b in codes)
    assert dm.num_skipped == 2


def test_raise_mode_raises_image_read_error(tmp_path, make_images):
    make_images(tmp_path / "A", 3)
    make_images(tmp_path / "B", 3)
    (tmp_path / "A" / "000001.png").write_bytes(b"garbage")
    dm = _dm(tmp_path, on_bad_image="raise", batch_size=1)
    with pytest.raises(ImageReadError, match=r"000001\.png"):
        for i in range(3):
            dm.train_set[i]


def test_image_read_error_survives_the_worker_boundary(tmp_path):
    """DataLoader workers re-raise errors as `type(err)(message)`: the type must survive that."""
    from torch._utils import ExceptionWrapper

    (tmp_path / "bad.png").write_bytes(b"garbage")
    try:
        read_image(tmp_path / "bad.png")
    except ImageReadError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        wrapped.reraise()


def test_all_bad_folder_fails_after_trying_each_file_once(tmp_path, make_images):
    make_images(tmp_path / "A", 3)
    for k in range(3):
        (tmp_path / "B").mkdir(exist_ok=True)
        (tmp_path / "B" / f"{k}.jpg").write_bytes(b"not a jpeg")
    dm = _dm(tmp_path, batch_size=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=r"none of the 3 images of domain B can be read .*B"):
            dm.train_set[0]
    assert len(record) == 3 and dm.num_skipped == 3
    with pytest.raises(DataError, match="none of the 3 images"):  # known bad: fails at once
        dm.train_set[1]


# ---------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/data/selfie2anime is absent)


def test_real_selfie2anime_files(selfie2anime):
    selfie = find_images(selfie2anime / "trainA")[:3]
    anime = find_images(selfie2anime / "trainB")[:3]
    assert len(selfie) == len(anime) == 3
    assert anime[0].suffix == ".jpg" and anime[0].read_bytes()[:4] == b"\x89PNG"  # PNG named .jpg
    for path in selfie + anime:
        img = read_image(path)
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8 and 20 < img.mean() < 235


def test_real_selfie2anime_batches(selfie2anime):
    dm = UnpairedImageDataModule(
        str(selfie2anime / "trainA"), str(selfie2anime / "trainB"), image_size=64, batch_size=2, num_workers=0
    )
    dm.setup("fit")
    assert len(dm.train_set) == len(dm.train_set.files[0]) > len(dm.train_set.files[1])
    batch = next(iter(dm.train_dataloader()))
    assert batch["a"].shape == batch["b"].shape == (2, 3, 64, 64)
    assert -1 <= batch["a"].min() < batch["a"].max() <= 1
    val = next(iter(dm.val_dataloader()))
    assert val["a"].shape == (2, 3, 64, 64)
    assert isinstance(dm.val_set, UnpairedImageFolder) and dm.val_set.mode == "cycle"


def test_an_image_over_max_pixels_is_refused_from_its_header(tmp_path, make_images, forged_png):
    big = forged_png(tmp_path / "A" / "huge.png", 20000, 20000)
    with pytest.raises(ImageTooLargeError, match=r"huge\.png: 20000x20000 is 400\.0 megapixels, over the limit of 40") as err:
        read_image(big)
    assert (err.value.width, err.value.height) == (20000, 20000)
    with pytest.raises(ImageReadError, match="not a decodable PNG"):  # a higher limit lets the header through
        read_image(big, max_pixels=1e9)
    make_images(tmp_path / "A", 3)
    make_images(tmp_path / "B", 3)
    dm = _dm(tmp_path, batch_size=1)
    index = dm.train_set.files[0].index(big)
    with pytest.warns(UserWarning, match=r"huge\.png: 20000x20000 .* with max_pixels"):
        item = dm.train_set[index]
    assert item["a"].shape == (3, 32, 32) and dm.num_skipped == 1


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "JPEG-progressive", "WEBP", "BMP"])
def test_header_size_reads_the_size_without_decoding(fmt):
    """PNG and JPEG headers are parsed directly (fast path); the others through PIL."""
    from vitcycle.data.imageio import header_size

    buf = io.BytesIO()
    image = Image.new("RGB", (37, 23))
    if fmt == "JPEG-progressive":
        image.save(buf, format="JPEG", progressive=True, exif=Image.Exif())
    else:
        image.save(buf, format=fmt)
    assert header_size(buf.getvalue()) == (37, 23)
    assert header_size(b"\xff\xd8\xff\xe0 not a real jpeg") is None
