"""`vitcycle export`: ONNX and TorchScript files that match PyTorch."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vitcycle.cli import main
from vitcycle.errors import ExportError
from vitcycle.inference.export import export_generator
from vitcycle.inference.translator import Translator


@pytest.fixture(scope="module")
def ckpt(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real fit's checkpoint in a folder of its own (exports are written beside it)."""
    return Path(shutil.copy(tiny_ckpt, tmp_path_factory.mktemp("export") / "tiny.ckpt"))


def test_onnx_dynamic_export_matches_pytorch_at_other_sizes(ckpt: Path, tmp_path: Path, capsys) -> None:
    import onnxruntime as ort

    out = tmp_path / "g.onnx"
    assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--size", "32", "--dynamic", "--out", str(out)]) == 0
    assert "max abs difference to PyTorch" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    translator = Translator.from_checkpoint(ckpt, device="cpu")
    x = torch.rand(3, 3, 48, 64) * 2 - 1  # another batch size and a non-square size: pos-embed resampling in the graph
    got = session.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, translator.translate_tensor(x).numpy(), atol=1e-4)


def test_torchscript_export_matches_pytorch(ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "g.pt"
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--size", "32", "--dynamic",
                 "--direction", "b2a", "--out", str(out)]) == 0
    assert "torchscript" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript
        module = torch.jit.load(str(out))
    x = torch.rand(5, 3, 32, 32) * 2 - 1  # (B, 3, H, W): any batch at the export size
    expected = Translator.from_checkpoint(ckpt, "b2a", device="cpu").translate_tensor(x)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected, atol=1e-4, rtol=0)


def test_export_default_path_and_bad_size(ckpt: Path, capsys) -> None:
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--size", "30"]) == 2
    assert "not a multiple of the patch size" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript"]) == 0  # training size 32
    assert (ckpt.parent / "tiny.a2b.torchscript.pt").is_file()


def test_parity_failure_is_an_error(ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    import vitcycle.inference.export as export

    real_run = export._run_torchscript
    monkeypatch.setattr(export, "_run_torchscript", lambda path, x: real_run(path, x) + 0.01)
    with pytest.raises(ExportError, match="parity check failed"):
        export_generator(Translator.from_checkpoint(ckpt, device="cpu"), tmp_path / "g.pt", fmt="torchscript")
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    earlier = tmp_path / "earlier.pt"
    earlier.write_bytes(b"a file that was there before")
    with pytest.raises(ExportError, match="an existing file there is kept"):
        export_generator(Translator.from_checkpoint(ckpt, device="cpu"), earlier, fmt="torchscript")
    assert earlier.read_bytes() == b"a file that was there before" and sorted(tmp_path.iterdir()) == [earlier]


def test_export_onto_its_own_checkpoint_or_another_kind_of_file_is_refused_before_any_work(
        ckpt: Path, tmp_path: Path, capsys) -> None:
    before = ckpt.read_bytes()
    link = tmp_path / "gen.pt"
    link.symlink_to(ckpt)
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(link)]) == 2
    assert f"--out {link} is a file this command reads" in capsys.readouterr().err
    image = tmp_path / "keep.png"
    image.write_bytes(b"a user's image")
    for fmt, out, endings in (("torchscript", image, ".pt or .pth or .ts"), ("onnx", tmp_path / "other.pt", ".onnx")):
        assert main(["export", "--ckpt", str(ckpt), "--format", fmt, "--out", str(out)]) == 2
        assert f"--out {out}: a {fmt} export must end in {endings}" in capsys.readouterr().err
    assert ckpt.read_bytes() == before and image.read_bytes() == b"a user's image"


def test_missing_onnx_packages_say_how_to_install(ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "g.onnx")]) == 2
    assert "pip install 'vitcycle[export]'" in capsys.readouterr().err


def test_export_into_an_unwritable_place_is_one_line_before_any_work(ckpt: Path, tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for out in (a_file / "g.pt", Path("/proc/vitcycle_export.pt"), tmp_path):  # a file as folder; read-only; a folder
        assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"vitcycle export: error: --out {out} ")
        assert "Traceback" not in err[0]
    assert a_file.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [a_file]


def test_export_replaces_an_existing_output_only_with_overwrite(ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "g.pt"
    out.write_bytes(b"an earlier export")
    args = ["export", "--ckpt", str(ckpt), "--format", "torchscript", "--out", str(out)]
    assert main(args) == 2
    assert f"{out} exists already; pass --overwrite to replace it" in capsys.readouterr().err
    assert out.read_bytes() == b"an earlier export"
    assert main([*args, "--overwrite"]) == 0
    assert f"{out} exists and will be replaced" in capsys.readouterr().err
    assert out.read_bytes()[:2] == b"PK" and sorted(tmp_path.iterdir()) == [out]  # a TorchScript zip


def test_two_outputs_onto_one_path_are_refused(tmp_path: Path) -> None:
    from vitcycle.errors import VitcycleError
    from vitcycle.outputs import check_outputs

    out = tmp_path / "report.json"
    with pytest.raises(VitcycleError, match=r"--grid .*report\.json is also --out; give each output its own path"):
        check_outputs({"--out": out, "--grid": tmp_path / "." / "report.json"}, [])
    assert not list(tmp_path.iterdir())  # nothing written, not even the probe files
