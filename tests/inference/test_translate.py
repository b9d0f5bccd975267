"""Translator (checkpoint -> generator, pre/post-processing) and `vitcycle translate` (face crops: test_faces)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tiny import SIZE, edited_checkpoint, read_rgb, smooth_image, write_png
from torch import nn

from vitcycle.cli import main
from vitcycle.errors import CheckpointError, StyleError, TranslateError, VitcycleWarning
from vitcycle.inference.files import plan_translation
from vitcycle.inference.translator import Translator
from vitcycle.models import ResnetGenerator, ViTTranslator


def reference_generator(ckpt: Path, name: str = "gen_ab", ema: bool = True) -> nn.Module:
    """The generator rebuilt by hand from the checkpoint, for comparison."""
    data = torch.load(ckpt, weights_only=True)
    prefix = f"{name}_ema.module." if ema else f"{name}."
    gen = ViTTranslator(**data["vitcycle"]["generators"][name]["init_args"])
    gen.load_state_dict({k[len(prefix):]: v for k, v in data["state_dict"].items() if k.startswith(prefix)})
    return gen.eval()


@pytest.fixture
def ckpt(tiny_ckpt: Path) -> Path:
    """A real `vitcycle fit` checkpoint of tiny ViT generators (conftest's `tiny_ckpt`)."""
    return tiny_ckpt


# ----------------------------------------------------------------------------------------------
# Translator.from_checkpoint


def test_from_checkpoint_uses_ema_weights_and_training_size(ckpt: Path) -> None:
    tr = Translator.from_checkpoint(ckpt, device="cpu")
    assert tr.image_size == SIZE and tr.patch_size == (8, 8) and tr.device.type == "cpu"
    assert tr.amp_dtype is None  # "auto": fp32 on the CPU (bf16 autocast only on a CUDA device that has it)
    assert not tr.generator.training
    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1  # (B, 3, H, W)
    with torch.no_grad():
        ema_out = reference_generator(ckpt, ema=True)(x)
        raw_out = reference_generator(ckpt, ema=False)(x)
    out = tr.translate_tensor(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ema_out, atol=1e-5, rtol=0)
    assert (out - raw_out).abs().max() > 1e-3  # the EMA weights, not the raw ones

    raw = Translator.from_checkpoint(ckpt, use_ema=False, device="cpu")
    torch.testing.assert_close(raw.translate_tensor(x), raw_out, atol=1e-5, rtol=0)


def test_from_checkpoint_direction_b2a_uses_gen_ba(ckpt: Path) -> None:
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        expected = reference_generator(ckpt, "gen_ba")(x)
    torch.testing.assert_close(Translator.from_checkpoint(ckpt, "b2a", device="cpu").translate_tensor(x), expected, atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="direction"):
        Translator.from_checkpoint(ckpt, "a2c", device="cpu")  # type: ignore[arg-type]


def test_pair_from_checkpoint_reads_the_file_once(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vitcycle.inference.translator as translator

    reads = []
    real_load = translator.load_checkpoint
    monkeypatch.setattr(translator, "load_checkpoint", lambda path: reads.append(path) or real_load(path))
    gen_ab, gen_ba = Translator.pair_from_checkpoint(ckpt, device="cpu")
    assert len(reads) == 1
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(gen_ab.translate_tensor(x), reference_generator(ckpt, "gen_ab")(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(gen_ba.translate_tensor(x), reference_generator(ckpt, "gen_ba")(x), atol=1e-5, rtol=0)


def _drop_ema(ckpt: dict) -> None:
    """A checkpoint without EMA copies (as written by a module that keeps none)."""
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "_ema." not in k}


def test_from_checkpoint_without_ema_warns_and_uses_raw_weights(ckpt: Path, tmp_path: Path) -> None:
    path = edited_checkpoint(ckpt, tmp_path / "noema.ckpt", _drop_ema)
    with pytest.warns(VitcycleWarning, match="no EMA weights"):
        tr = Translator.from_checkpoint(path, device="cpu")
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        expected = reference_generator(ckpt, ema=False)(x)
    torch.testing.assert_close(tr.translate_tensor(x), expected, atol=1e-5, rtol=0)


def test_from_checkpoint_resnet_generator(tiny_resnet_ckpt: Path) -> None:
    tr = Translator.from_checkpoint(tiny_resnet_ckpt, device="cpu")
    assert isinstance(tr.generator, ResnetGenerator) and tr.patch_size == (4, 4) and tr.image_size == SIZE
    state = torch.load(tiny_resnet_ckpt, weights_only=True)["state_dict"]
    torch.testing.assert_close(tr.generator.model[1].weight, state["gen_ab_ema.module.model.1.weight"])
    out = tr.translate_array(smooth_image(30, 45))  # padded to multiples of 4 inside
    assert out.shape == (30, 45, 3) and out.dtype == np.uint8


def test_bad_checkpoint_files_give_one_clear_error(tmp_path: Path, ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        Translator.from_checkpoint(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*truncated\.ckpt"):
        Translator.from_checkpoint(truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.ckpt: it is not a PyTorch file"):
        Translator.from_checkpoint(text)
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="noise.ckpt: it is not a PyTorch file .*pass the .ckpt file"):
        Translator.from_checkpoint(noise)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2)}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt is not a vitcycle checkpoint"):
        Translator.from_checkpoint(foreign)


class _Evil:  # pickled by reference: unpickling it would run arbitrary code from the file
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {}, "state_dict": {}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        Translator.from_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def _generator_specs(ckpt: dict, legacy: bool) -> dict:
    """gen_ab/gen_ba specs of a loaded checkpoint: LightningCLI's hyperparameters (`legacy`: the
    `vitcycle` entry removed, so that they are read) or the `vitcycle` entry."""
    if legacy:
        ckpt.pop("vitcycle")
        return ckpt["hyper_parameters"]
    return ckpt["vitcycle"]["generators"]


@pytest.mark.parametrize("legacy", [False, True], ids=["format1", "legacy"])
@pytest.mark.parametrize(
    "class_path",
    ["this.Generator", "torch.nn.Linear", "os.system", "vitcycle.models.generator.timm", "vitcycle.models.generator.Mlp",
     "vitcycle.training.cyclegan.CycleGAN", "vitcycle.models..x", "vitcycle.models.PatchDiscriminator"],
)
def test_class_path_outside_vitcycle_models_is_refused(ckpt: Path, tmp_path: Path, class_path: str, legacy: bool) -> None:
    path = edited_checkpoint(
        ckpt, tmp_path / "cp.ckpt", lambda c: _generator_specs(c, legacy)["gen_ab"].update(class_path=class_path)
    )
    had_this = "this" in sys.modules
    with pytest.raises(CheckpointError, match="refusing to build it"):
        Translator.from_checkpoint(path)
    assert had_this or "this" not in sys.modules  # never imported a module named by the file


@pytest.mark.parametrize("legacy", [False, True], ids=["format1", "legacy"])
def test_encoder_kwargs_that_load_files_are_refused(ckpt: Path, tmp_path: Path, legacy: bool) -> None:
    def edit(c: dict) -> None:
        _generator_specs(c, legacy)["gen_ab"]["init_args"]["encoder_kwargs"]["checkpoint_path"] = str(tmp_path / "x.pth")

    path = edited_checkpoint(ckpt, tmp_path / "evil.ckpt", edit)
    with pytest.raises(CheckpointError, match="refusing encoder_kwargs that load files or weights: checkpoint_path"):
        Translator.from_checkpoint(path)


def test_named_size_class_path_is_accepted(ckpt: Path, tmp_path: Path) -> None:
    def edit(c: dict) -> None:
        _generator_specs(c, legacy=True)["gen_ab"]["class_path"] = "vitcycle.models.vit_tiny_p8"

    tr = Translator.from_checkpoint(edited_checkpoint(ckpt, tmp_path / "named.ckpt", edit), device="cpu")
    assert isinstance(tr.generator, ViTTranslator)
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(tr.translate_tensor(x), reference_generator(ckpt)(x), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# Pre/post-processing


class _Recorder(nn.Module):
    """Identity generator that records input shapes; patch size 8."""

    patch_size = (8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
        self.shapes.append(tuple(x.shape))
        return x


def test_translate_array_keeps_size_aspect_and_crops_padding() -> None:
    gen = _Recorder()
    tr = Translator(gen, image_size=32, device="cpu")
    img = smooth_image(37, 53)
    out = tr.translate_array(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert gen.shapes == [(1, 3, 24, 32)]  # longer side 53 -> 32, 37 -> 22, padded to 24
    assert np.abs(out.astype(int) - img).mean() < 3  # down/up resize of a smooth image, no padding leaked
    # at its own size (a multiple of nothing) the identity generator gives back exactly the input
    exact = tr.translate_array(img, size=53)
    assert gen.shapes[-1] == (1, 3, 40, 56)
    np.testing.assert_array_equal(exact, img)


def test_translate_batch_groups_sizes_and_matches_single(ckpt: Path) -> None:
    tr = Translator.from_checkpoint(ckpt, device="cpu")
    images = [smooth_image(32, 32, 0), smooth_image(20, 40, 1), smooth_image(64, 64, 2)]
    batch = tr.translate_batch(images)
    assert [o.shape for o in batch] == [i.shape for i in images]
    for img, out in zip(images, batch, strict=True):
        assert np.abs(tr.translate_array(img).astype(int) - out).max() <= 1
    assert np.abs(batch[0].astype(int) - images[0]).mean() > 1  # a perturbed generator changes the image


def test_style_reference(tiny_style_ckpt: Path, ckpt: Path) -> None:
    tr = Translator.from_checkpoint(tiny_style_ckpt, device="cpu")
    state = torch.load(tiny_style_ckpt, weights_only=True)["state_dict"]
    key = "style_encoder.patch_embed.proj.weight"
    torch.testing.assert_close(tr.generator.get_parameter(key), state[f"gen_ab_ema.module.{key}"])
    # CycleGAN training feeds no reference, so the style pool is still its zero-initialised
    # pass-through: give its MLP weights, so that the reference shows in the output.
    nn.init.normal_(tr.generator.style_pool.mlp.fc2.weight, std=0.5)
    img, ref = smooth_image(32, 32), smooth_image(40, 24, seed=5)
    plain = tr.translate_array(img)
    styled = tr.translate_array(img, style=ref)
    assert styled.shape == img.shape and np.abs(styled.astype(int) - plain).max() > 0
    np.testing.assert_array_equal(tr.translate_array(img, style=ref), styled)  # the same reference, the same result
    with pytest.raises(StyleError, match="no style encoder"):
        Translator.from_checkpoint(ckpt, device="cpu").translate_array(img, style=img)


# ----------------------------------------------------------------------------------------------
# Planning outputs


def test_plan_mirrors_folders_and_refuses_overwrites(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png(src / "x.png", smooth_image(8, 8))
    write_png(src / "sub" / "y.png", smooth_image(8, 8))
    jobs = plan_translation(src, tmp_path / "out", ext="jpg")
    assert [j.dst for j in jobs] == [tmp_path / "out/sub/y.jpg", tmp_path / "out/x.jpg"]
    with pytest.raises(TranslateError, match="inside the input folder"):
        plan_translation(src, src / "out")
    with pytest.raises(TranslateError, match="overwrite the input"):
        plan_translation(src / "x.png", src / "x.png")
    write_png(src / "x.jpg", smooth_image(8, 8))
    with pytest.raises(TranslateError, match="both be written"):
        plan_translation(src, tmp_path / "out2", ext="png")


def test_plan_finds_images_and_videos_once_through_a_symlink_loop(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png(src / "x.png", smooth_image(8, 8))
    (src / "clips").mkdir()
    (src / "clips" / "c.MP4").write_bytes(b"")  # found by name; read only when translated
    (src / "clips" / "loop").symlink_to(src, target_is_directory=True)  # in/clips/loop -> in
    jobs = plan_translation(src, tmp_path / "out")
    assert [(j.src.relative_to(src).as_posix(), j.video) for j in jobs] == [("clips/c.MP4", True), ("x.png", False)]


def test_a_looping_symlinked_file_is_skipped_with_a_warning_by_translate_and_fit(tmp_path: Path, ckpt: Path, capsys) -> None:
    src = tmp_path / "in"
    write_png(src / "x.png", smooth_image(8, 8))
    (src / "loop.png").symlink_to(src / "loop.png")  # a file link to itself
    with pytest.warns(UserWarning, match="skipping .*loop.png: a broken or looping symbolic link"):
        assert main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "out"),
                     "--device", "cpu"]) == 0
    assert "translated 1, skipped 0" in capsys.readouterr().out
    from vitcycle.data.datamodule import UnpairedImageDataModule

    other = tmp_path / "other"
    write_png(other / "y.png", smooth_image(8, 8, seed=1))
    with pytest.warns(UserWarning, match="looping symbolic link"):
        dm = UnpairedImageDataModule(str(src), str(other), image_size=8, num_workers=0, val_fraction=0)
        dm.setup("fit")
    assert [f.name for f in dm.train_set.files[0]] == ["x.png"]


# ----------------------------------------------------------------------------------------------
# vitcycle translate


def test_cli_translate_single_file_to_file_and_folder(tmp_path: Path, ckpt: Path, capsys) -> None:
    src = write_png(tmp_path / "photo.png", smooth_image(30, 50))
    assert main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.png"), "--device", "cpu"]) == 0
    out = read_rgb(tmp_path / "o.png")
    assert out.shape == (30, 50, 3)
    assert "translated 1, skipped 0" in capsys.readouterr().out
    assert main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "dir"), "--device", "cpu"]) == 0
    np.testing.assert_array_equal(read_rgb(tmp_path / "dir/photo.png"), out)  # same processing, same bytes


def test_cli_translate_folder_mirrors_tree_skips_bad_files(tmp_path: Path, ckpt: Path, capsys) -> None:
    src = tmp_path / "photos"
    write_png(src / "a.png", smooth_image(32, 32))
    write_png(src / "trip" / "day1" / "b.jpg", smooth_image(24, 40))
    (src / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "anime"
    code = main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(out), "--ext", "png",
                 "--batch-size", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["a.png", "trip/day1/b.png"]
    assert read_rgb(out / "trip/day1/b.png").shape == (24, 40, 3)
    assert "translated 2, skipped 2" in captured.out
    assert "broken.png" in captured.err and "empty.jpg" in captured.err
    assert "Traceback" not in captured.err


def test_cli_translate_nothing_translated_fails(tmp_path: Path, ckpt: Path, capsys) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "x.png").write_bytes(b"garbage")
    code = main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code != 0
    assert "nothing was translated" in err and "x.png" in err


def test_cli_translate_pixel_limit_skips(tmp_path: Path, ckpt: Path, capsys) -> None:
    src = tmp_path / "in"
    write_png(src / "big.png", smooth_image(40, 40))
    write_png(src / "small.png", smooth_image(10, 10))
    code = main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"),
                 "--max-pixels", "1000", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0 and "translated 1, skipped 1" in captured.out
    assert "big.png" in captured.err and "over the pixel limit 1000" in captured.err
    assert not (tmp_path / "o/big.png").exists() and (tmp_path / "o/small.png").exists()


def test_cli_translate_forged_huge_header_is_skipped_by_its_true_size(tmp_path: Path, ckpt: Path, forged_png, capsys) -> None:
    src = tmp_path / "in"
    forged_png(src / "huge.png", 20000, 20000)
    write_png(src / "small.png", smooth_image(10, 10))
    args = ["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"), "--device", "cpu"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "translated 1, skipped 1" in captured.out
    assert "huge.png: 20000x20000 is over the pixel limit 40000000" in captured.err
    assert main([*args, "--max-pixels", "1e9"]) == 2  # the first run's output is there: refused, nothing done
    assert f"{tmp_path / 'o' / 'small.png'} exists already; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--max-pixels", "1e9", "--overwrite"]) == 0  # the limit is raised: the header passes, decoding fails
    err = capsys.readouterr().err
    assert "huge.png: not a decodable PNG file" in err
    assert f"{tmp_path / 'o' / 'small.png'} exists and will be replaced" in err  # said, not silent


def test_cli_translate_refuses_output_inside_input_and_overwrite(tmp_path: Path, ckpt: Path, capsys) -> None:
    src = tmp_path / "in"
    image = write_png(src / "a.png", smooth_image(16, 16))
    before = image.read_bytes()
    assert main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(src / "out")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert main(["translate", "--ckpt", str(ckpt), "--input", str(image), "--output", str(image)]) == 2
    err = capsys.readouterr().err
    assert "overwrite the input" in err and err.count("\n") == 1
    assert image.read_bytes() == before and not (src / "out").exists()


def test_cli_translate_refuses_an_output_linked_to_its_checkpoint_or_style(tmp_path: Path, ckpt: Path, capsys) -> None:
    image = write_png(tmp_path / "a.png", smooth_image(16, 16))
    style = write_png(tmp_path / "style.png", smooth_image(16, 16, seed=1))
    weights = tmp_path / "last.ckpt"
    weights.write_bytes(ckpt.read_bytes())
    for flag, target in (("--ckpt", weights), ("--style", style)):
        link = tmp_path / f"link_to_{target.stem}.png"
        link.symlink_to(target)
        before = target.read_bytes()
        assert main(["translate", "--ckpt", str(weights), "--input", str(image), "--output", str(link),
                     "--style", str(style)]) == 2
        err = capsys.readouterr().err
        assert f"output {link} is the {flag} file this command reads (through a link)" in err and err.count("\n") == 1
        assert target.read_bytes() == before


def test_cli_translate_grid(tmp_path: Path, ckpt: Path) -> None:
    src = write_png(tmp_path / "a.png", smooth_image(20, 30))
    assert main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "g.png"), "--grid", "--device", "cpu"]) == 0
    grid = read_rgb(tmp_path / "g.png")
    assert grid.shape == (20, 60, 3)
    np.testing.assert_array_equal(grid[:, :30], read_rgb(src))  # left: the input


def write_video(path: Path, frames: int) -> Path:
    """A 40x24 mp4 at 12 fps whose frame i is flat gray 20 * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (40, 24))
    for i in range(frames):
        writer.write(np.full((24, 40, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_cli_translate_video_keeps_fps_and_frame_count(tmp_path: Path, ckpt: Path) -> None:
    src = write_video(tmp_path / "clip.mp4", 10)
    out = tmp_path / "out"
    assert main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(out), "--batch-size", "4", "--device", "cpu"]) == 0
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 10
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (40, 24)
    cap.release()


def test_cli_translate_style_errors(tmp_path: Path, ckpt: Path, tiny_style_ckpt: Path, capsys) -> None:
    src = write_png(tmp_path / "a.png", smooth_image(16, 16))
    assert main(["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.png"),
                 "--style", str(src), "--device", "cpu"]) == 2
    assert "translate without a style image" in capsys.readouterr().err
    assert main(["translate", "--ckpt", str(tiny_style_ckpt), "--input", str(src), "--output", str(tmp_path / "o.png"),
                 "--style", str(src), "--device", "cpu"]) == 0


def test_cli_translate_bad_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    src = write_png(tmp_path / "a.png", smooth_image(16, 16))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["translate", "--ckpt", str(bad), "--input", str(src), "--output", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "bad.ckpt" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_video_without_decodable_frames_keeps_an_existing_output(tmp_path: Path, ckpt: Path, monkeypatch, capsys) -> None:
    src = write_video(tmp_path / "clip.mp4", 3)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"yesterday's result")
    # frames that all fail to decode: the writer sees none
    monkeypatch.setattr("vitcycle.inference.files.PathTranslator._write_video", lambda self, *args: 0)
    args = ["translate", "--ckpt", str(ckpt), "--input", str(src), "--output", str(out), "--device", "cpu"]
    assert main(args) == 2
    assert f"{out} exists already; pass --overwrite to replace it" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 2
    assert "no frame could be decoded" in capsys.readouterr().err
    assert out.read_bytes() == b"yesterday's result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]  # no partial file left
