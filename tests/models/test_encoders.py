"""The ViT family as generator encoders: one token grid or several strides, any input size, train, resume, export."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from safetensors.torch import save_file
from tiny import tiny_config

from vitcycle.cli import cli_main, main
from vitcycle.errors import ExportError, VitcycleError
from vitcycle.inference.export import export_generator
from vitcycle.inference.translator import Translator
from vitcycle.models import ViTTranslator

# timm encoders of each kind, with the depth of the plain ViTs cut to 2 blocks for speed (their
# patch embedding, blocks and position handling unchanged); the hierarchical ones are whole.
ENCODERS = {
    "deit_tiny_distilled_patch16_224": {"depth": 2},  # distillation token
    "eva02_tiny_patch14_224": {"depth": 2},  # 14 px patches: 64 and 128 are not multiples
    "beit_base_patch16_224": {"depth": 2},  # no dynamic size: built for img_size
    "swin_tiny_patch4_window7_224": None,  # 4 stages, strides 4-32, 7-token windows
    "pit_ti_224": None,  # 3 pooling stages, fixed size
    "crossvit_tiny_240": None,  # two branches of 12 and 16 px patches
    "maxvit_tiny_tf_224": None,  # 5 levels, strides 2-32, windows sized from img_size
    "mvitv2_tiny": None,  # 4 stages, pooling attention
}


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("img_size", [64, 128])
def test_every_kind_of_encoder_translates_any_size_to_the_input_shape(name, img_size):
    torch.manual_seed(0)
    gen = ViTTranslator(encoder=name, img_size=img_size, encoder_kwargs=ENCODERS[name], decoder_depth=1, head_dim=32)
    gen.eval()
    assert len(gen.encoder_channels) == len(gen.encoder_indices) == len(gen.level_stage)
    if name.startswith(("swin", "pit", "maxvit", "mvitv2")):  # every stride, down to 1/32, feeds the head
        assert len(set(gen.encoder_channels)) > 1 and gen.num_stages == 5
    for height, width in [(img_size, img_size), (img_size - 6, img_size - 10)]:  # the second divides no patch or window
        x = torch.rand(2, 3, height, width) * 2 - 1
        with torch.no_grad():
            y = gen(x)  # (B, 3, H, W)
        assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().max() <= 1
        assert y[0].sub(y[1]).abs().mean() > 1e-3  # the output depends on the input


def test_a_fixed_size_encoder_is_built_for_a_size_it_runs_at_and_refuses_larger_inputs():
    gen = ViTTranslator(encoder="crossvit_tiny_240", img_size=64, decoder_depth=1, head_dim=32)
    assert gen.encoder_size == 72  # 64 px fits neither branch's patches: the next size that runs
    assert gen.padding(64, 64) == (4, 4, 4, 4)  # centred in the 72 px the encoder takes
    with pytest.raises(VitcycleError, match=r"96x96 is larger than the 72 px this encoder takes"):
        gen(torch.zeros(1, 3, 96, 96))
    swin = ViTTranslator(encoder="swin_tiny_patch4_window7_224", img_size=64, decoder_depth=1)
    assert swin.encoder_size is None and swin.padding(62, 64) == (0, 0, 1, 1)  # any multiple of its 4 px patches


def test_hierarchical_levels_map_to_the_head_stage_of_their_stride():
    gen = ViTTranslator(encoder="swin_tiny_patch4_window7_224", img_size=64, decoder_depth=1)
    assert gen.encoder_indices == [0, 1, 2, 3] and gen.encoder_channels == [96, 192, 384, 768]
    assert gen.num_stages == 5 and gen.level_stage == [5, 4, 3, 2]  # 1/32 (decoder), 1/16, 1/8, 1/4
    feats = gen.forward_features(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(768, 2, 2), (384, 4, 4), (192, 8, 8), (96, 16, 16)]
    two = ViTTranslator(encoder="swin_tiny_patch4_window7_224", img_size=64, encoder_indices=[1, 2], decoder_depth=1)
    assert two.num_stages == 4 and two.level_stage == [4, 3] and len(two.encoder.layers) == 3  # the last stage pruned


# A Swin of two stages (strides 4 and 8), 4-token windows, small widths: the quickstart's 32 px in seconds.
TINY_SWIN = {
    "class_path": "vitcycle.models.ViTTranslator",
    "init_args": {
        "encoder": "swin_tiny_patch4_window7_224",
        "img_size": 32,
        "encoder_kwargs": {"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4},
        "decoder_depth": 1,
        "head_dim": 16,
        "num_style_tokens": 2,
    },
}


def test_a_hierarchical_generator_trains_resumes_and_exports(tiny_data, tmp_path):
    config = tiny_config(tmp_path, tiny_data, gen_ab=TINY_SWIN, gen_ba=TINY_SWIN)
    first = cli_main(["fit", "--config", str(config)])
    assert first.model.gen_ab.level_stage == [3, 2] and torch.isfinite(first.trainer.logged_metrics["loss/cycle_a"])
    last = tmp_path / "ckpt/last.ckpt"
    resumed = cli_main(["fit", "--config", str(config), "--trainer.max_epochs=2", f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == 16  # weights and optimizer states came back: 2 epochs in all

    translator = Translator.from_checkpoint(last, device="cpu")  # rebuilt from the checkpoint alone
    assert translator.generator.encoder_channels == [16, 32]
    x = torch.rand(2, 3, 30, 34) * 2 - 1  # no multiple of the patch: padded and cropped back
    assert translator.translate_tensor(x).shape == x.shape

    out = tmp_path / "g.pt"
    assert main(["export", "--ckpt", str(last), "--format", "torchscript", "--size", "32", "--out", str(out)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript
        module = torch.jit.load(str(out))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(module(x), translator.translate_tensor(x), atol=1e-4, rtol=0)
    onnx = tmp_path / "g.onnx"  # at the export size: Swin's windows export, with the parity check inside
    assert main(["export", "--ckpt", str(last), "--format", "onnx", "--size", "32", "--out", str(onnx)]) == 0
    assert onnx.stat().st_size > 0


def test_a_fixed_size_encoder_exports_at_its_size_only(tmp_path):
    gen = ViTTranslator(encoder="pit_ti_224", img_size=32, decoder_depth=1, head_dim=16)
    with pytest.raises(ExportError, match="encoder takes one size \\(32 px\\); export without --dynamic"):
        export_generator(Translator(gen, image_size=32, device="cpu"), tmp_path / "g.onnx", fmt="onnx", dynamic=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("swin_tiny_patch4_window7_224", TINY_SWIN["init_args"]["encoder_kwargs"]), ("pit_ti_224", None)],
)
def test_a_local_weights_file_loads_into_every_kind_of_encoder(name, kwargs, tmp_path):
    """The file holds the whole timm model, classifier and final norm included, as a downloaded one does."""
    torch.manual_seed(0)
    source = timm.create_model(name, img_size=32, **(kwargs or {}))
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    torch.manual_seed(1)
    gen = ViTTranslator(encoder=name, img_size=32, encoder_kwargs=kwargs, pretrained_path=str(path), decoder_depth=1)
    want = source.state_dict()
    got = gen.encoder.state_dict()
    assert got and all(torch.equal(v, want[k]) for k, v in got.items())  # every kept tensor is the file's

    del want[next(k for k in got if "attn" in k)]
    save_file({k: v.contiguous() for k, v in want.items()}, str(path))
    with pytest.raises(VitcycleError, match="missing keys: .*attn"):
        ViTTranslator(encoder=name, img_size=32, encoder_kwargs=kwargs, pretrained_path=str(path), decoder_depth=1)
