"""Generators, discriminator and baseline: shapes, ranges, gradients, style, weight loading, errors."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from vitcycle.errors import VitcycleError
from vitcycle.models import GENERATORS, PatchDiscriminator, ResnetGenerator, ViTTranslator, vit_tiny_p8

# Every named size at two resolutions (one non-square). vit_small_p16 and vit_base_p16 run below their
# 256 px default to keep the suite fast; vit_base_p16 also with a 2-block encoder and 1 decoder block
# (its widths, head and wiring are unchanged; only the depth is reduced).
NAMED_CASES = [
    ("vit_tiny_p8", {}, [(64, 64), (48, 80)]),
    ("vit_small_p16", {}, [(64, 64), (32, 96)]),
    ("vit_base_p16", {"encoder_kwargs": {"depth": 2}, "decoder_depth": 1}, [(32, 32), (48, 32)]),
    ("swin_mini_p4", {}, [(64, 64), (48, 80)]),
    ("swin_tiny_p4", {"encoder_kwargs": {"depths": [1, 1, 1, 1]}, "decoder_depth": 1}, [(64, 64), (60, 96)]),
]


def tiny(**kwargs) -> ViTTranslator:
    """A very small ViTTranslator (patch 8, 2 encoder blocks, 1 decoder block) for fast tests."""
    args = dict(
        encoder_kwargs={"depth": 2}, encoder_indices=[0, 1], img_size=32, decoder_depth=1, head_dim=64
    )
    return vit_tiny_p8(**{**args, **kwargs})


def perturb(model: torch.nn.Module, std: float = 0.02) -> None:
    """Move every weight off its init, so the zero-initialised branches take part."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)


def images(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) * 2 - 1


@pytest.mark.parametrize(("name", "overrides", "sizes"), NAMED_CASES, ids=[c[0] for c in NAMED_CASES])
def test_named_generators(name, overrides, sizes):
    torch.manual_seed(0)
    model = GENERATORS[name](**overrides)
    perturb(model)  # otherwise the (zero-initialised) model is near the identity and the range check is easy
    model.eval()
    for h, w in sizes:
        x = images(2, 3, h, w)
        with torch.no_grad():
            y = model(x)
        assert y.shape == (2, 3, h, w)
        assert torch.isfinite(y).all()
        assert y.min() >= -1 and y.max() <= 1
        assert (y - x).abs().mean() > 1e-3  # the perturbed model does not just copy its input


def test_vit_small_p16_is_uvcgan_sized():
    model = GENERATORS["vit_small_p16"]()
    n = sum(p.numel() for p in model.parameters())
    assert 25e6 < n <= 35e6
    assert model.patch_size == (16, 16) and model.num_stages == 4
    assert model.head_channels[0] <= 32  # thin full-resolution convs keep the 256 px head cheap


@pytest.mark.parametrize("upsample", ["pixel_shuffle", "bilinear"])
def test_new_generator_is_near_identity(upsample):
    torch.manual_seed(0)
    x = images(2, 3, 32, 48)
    with torch.no_grad():
        y = tiny(global_residual=True, upsample=upsample)(x)
        y_plain = tiny(upsample=upsample)(x)  # the default: random output at the start
    assert (y - x).abs().max() <= 0.05 + 1e-6  # tanh(atanh(0.95 x)) = 0.95 x
    assert (y_plain - x).abs().mean() > 0.1


@pytest.mark.parametrize("upsample", ["pixel_shuffle", "bilinear"])
def test_gradients_reach_encoder_and_style_tokens(upsample):
    torch.manual_seed(0)
    model = tiny(upsample=upsample)
    x, target = images(2, 3, 32, 32), images(2, 3, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # Zero-initialised last layers are moved one step at a time: step 1 the output conv, step 2 the
    # decoder's projections; from step 3 every parameter, style tokens included, gets a gradient.
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.l1_loss(model(x), target).backward()
        opt.step()
    for param in (
        model.encoder.patch_embed.proj.weight,
        model.encoder.blocks[0].attn.qkv.weight,
        model.style_tokens,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_bilinear_upsampling_blends_neighbouring_tokens_instead_of_filling_blocks():
    """Two token columns, 0 and 1: a pixel shuffle gives each its own 2x2 block (a step at the border),
    the bilinear resize a ramp across it; the same 1x1 identity conv follows both."""
    from vitcycle.models.generator import ResizeConvUp

    up = ResizeConvUp(1, 1)
    with torch.no_grad():
        up.conv.weight.zero_()
        up.conv.weight[0, 0, 1, 1] = 1.0
        up.conv.bias.zero_()
        row = up(torch.tensor([[[[0.0, 1.0]]]]), (2, 4))[0, 0, 0]  # (4,)
    torch.testing.assert_close(row, torch.tensor([0.0, 0.25, 0.75, 1.0]))
    with pytest.raises(VitcycleError, match="upsample 'nearest' is not one of pixel_shuffle, bilinear"):
        tiny(upsample="nearest")


def _pre_tanh_scale(model: ViTTranslator, x: torch.Tensor) -> float:
    out = {}
    handle = model.head_out.register_forward_hook(lambda m, i, o: out.setdefault("y", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    return out["y"].abs().mean().item()


def test_head_norm_stops_the_head_scale_compounding_over_stages():
    """Weights of every head conv 4x larger: without head_norm the output conv's input grows by 4 per
    stage (the tanh saturates); with it, the scale is reset after each stage, so only the last conv's 4x is left."""
    x = images(2, 3, 32, 32)
    for head_norm, low, high in ((False, 1e3, float("inf")), (True, 1.0, 8.0)):
        torch.manual_seed(0)
        model = tiny(head_norm=head_norm).eval()
        perturb(model)
        before = _pre_tanh_scale(model, x)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.split(".")[0] in ("reassemble", "stem", "up", "fuse", "head_out") and p.ndim == 4:
                    p.mul_(4.0)
        growth = _pre_tanh_scale(model, x) / before
        assert low < growth < high, (head_norm, growth)
    assert sum("stage_norm" in k for k in tiny().state_dict()) == 0  # off: the same weights as before


def test_batch_items_are_independent():
    torch.manual_seed(0)
    model = tiny().eval()
    perturb(model)
    x = images(3, 3, 32, 40)
    with torch.no_grad():
        together = model(x)
        alone = model(x[1:2])
    torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=1e-4)


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = tiny()
    perturb(model)
    x = images(1, 3, 32, 32)
    grads = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        model(x).square().mean().backward()
        grads.append(model.decoder[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_style_reference_changes_output():
    torch.manual_seed(0)
    model = tiny(style_encoder=True).eval()
    perturb(model)  # the style path is zero-initialised (identity); move it as a training step would
    x = images(2, 3, 32, 32)
    ref_1, ref_2 = (
        images(1, 3, 48, 32),
        images(1, 3, 48, 32),
    )  # another size than x; one reference for the batch
    with torch.no_grad():
        default = model(x)
        y_1 = model(x, style=ref_1)
        y_1_again = model(x, style=ref_1)
        y_2 = model(x, style=ref_2)
        y_per_item = model(x, style=torch.cat([ref_1, ref_2]))
    assert y_1.shape == x.shape
    torch.testing.assert_close(y_1, y_1_again)
    assert (y_1 - y_2).abs().mean() > 1e-4
    assert (y_1 - default).abs().mean() > 1e-4
    torch.testing.assert_close(y_per_item[0], y_1[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(y_per_item[1], y_2[1], atol=1e-5, rtol=1e-4)


def test_style_reference_errors():
    with pytest.raises(VitcycleError, match="style_encoder=True"):
        tiny()(images(1, 3, 32, 32), style=images(1, 3, 32, 32))
    with pytest.raises(VitcycleError, match=r"style batch size 2 must be 1 or the input's \(3\)"):
        tiny(style_encoder=True)(images(3, 3, 32, 32), style=images(2, 3, 30, 32))
    assert tiny(style_encoder=True)(images(1, 3, 32, 32), style=images(1, 3, 30, 36)).shape == (1, 3, 32, 32)


def test_any_input_size_is_padded_to_the_patch_and_cropped_back():
    model = tiny().eval()
    perturb(model)
    x = images(1, 3, 36, 32)  # 36 is no multiple of the 8 px patch: 2 rows reflected above and below
    with torch.no_grad():
        y = model(x)
        padded = model(torch.nn.functional.pad(x, (0, 0, 2, 2), mode="reflect"))  # (1, 3, 40, 32)
    assert model.padding(36, 32) == (0, 0, 2, 2)
    torch.testing.assert_close(y, padded[:, :, 2:38])
    with pytest.raises(VitcycleError, match=r"\(B, 3, H, W\)"):
        model(images(1, 1, 32, 32))


def test_unknown_encoder_and_bad_indices_are_refused():
    with pytest.raises(VitcycleError, match="unknown timm model"):
        ViTTranslator(encoder="vit_does_not_exist")
    with pytest.raises(VitcycleError, match="encoder_indices"):
        tiny(encoder_indices=[0, 5])


def test_patch_size_not_a_power_of_two():
    model = ViTTranslator(  # DINOv2's patch 14: the pyramid's 1/8 stage is resized, not pixel-shuffled
        encoder="vit_small_patch14_dinov2",
        img_size=28,
        encoder_kwargs={"depth": 2},
        decoder_depth=1,
        head_dim=64,
    )
    with torch.no_grad():
        y = model(images(1, 3, 42, 28))
    assert y.shape == (1, 3, 42, 28) and torch.isfinite(y).all()


def test_built_from_yaml_style_config():
    """LightningCLI builds generators with jsonargparse from class_path / init_args."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--gen", type=torch.nn.Module)
    config = {
        "class_path": "vitcycle.models.ViTTranslator",
        "init_args": {
            "encoder": "vit_tiny_patch16_224",
            "img_size": 32,
            "encoder_kwargs": {"patch_size": 8, "depth": 2},
            "encoder_indices": [0, 1],
            "decoder_depth": 1,
            "decoder_dim": None,
            "head_dim": 64,
            "style_encoder": True,
        },
    }
    gen = parser.instantiate_classes(parser.parse_object({"gen": config})).gen
    assert isinstance(gen, ViTTranslator) and gen.patch_size == (8, 8) and gen.style_encoder is not None


def test_named_size_merges_encoder_kwargs():
    model = vit_tiny_p8(encoder_kwargs={"depth": 2}, encoder_indices=[0, 1], decoder_depth=1)
    assert model.patch_size == (8, 8)  # vit_tiny_p8's patch_size survives the override
    assert len(model.encoder.blocks) == 2 and len(model.decoder) == 1


def _source_vit(**kwargs) -> torch.nn.Module:
    """A timm ViT-Ti/8 with a classifier head, as a downloaded checkpoint would have."""
    args = dict(pretrained=False, num_classes=10, img_size=32, patch_size=8, depth=2, dynamic_img_size=True)
    return timm.create_model("vit_tiny_patch16_224", **{**args, **kwargs}).eval()


def test_pretrained_path_pth_loads_timm_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = _source_vit()
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": source.state_dict()}, path)  # wrapped, with head weights (ignored)
    model = tiny(pretrained_path=str(path)).eval()
    x = images(2, 3, 32, 40)
    with torch.no_grad():
        got = model.forward_encoder(x)
        want = source.forward_intermediates(
            x, indices=[0, 1], output_fmt="NCHW", intermediates_only=True
        )  # mean/std 0.5
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)

    bigger = tiny(pretrained_path=str(path), img_size=64)  # 8x8 grid: the 4x4 position embedding is resampled
    want_pos = resample_abs_pos_embed(source.pos_embed.detach(), new_size=[8, 8], num_prefix_tokens=1)
    torch.testing.assert_close(bigger.encoder.pos_embed.detach(), want_pos)


def test_pretrained_path_safetensors_reproduces_source_model(tmp_path):
    torch.manual_seed(0)
    source = tiny().eval()
    perturb(source)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.encoder.state_dict().items()}, str(path))
    torch.manual_seed(1)
    loaded = tiny(pretrained_path=str(path)).eval()
    loaded.load_state_dict(
        {k: v for k, v in source.state_dict().items() if not k.startswith("encoder.")}, strict=False
    )
    x = images(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_pretrained_path_mismatch_names_keys(tmp_path):
    shallow = tmp_path / "shallow.pth"
    torch.save(_source_vit(depth=1).state_dict(), shallow)
    with pytest.raises(VitcycleError, match=r"missing keys: blocks\.1\.attn\.proj\.bias"):
        tiny(pretrained_path=str(shallow))

    wide = tmp_path / "wide.safetensors"
    state = _source_vit(embed_dim=384, num_heads=6).state_dict()
    state["extra.weight"] = torch.zeros(3)
    save_file({k: v.contiguous() for k, v in state.items()}, str(wide))
    with pytest.raises(VitcycleError) as info:
        tiny(pretrained_path=str(wide))
    message = str(info.value)
    assert "unexpected keys: extra.weight" in message
    assert "shape mismatch: blocks.0.attn.proj.bias (384,) vs model (192,)" in message
    assert "wide.safetensors" in message

    with pytest.raises(VitcycleError, match="does not exist"):
        tiny(pretrained_path=str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(VitcycleError, match="cannot read encoder weights"):
        tiny(pretrained_path=str(garbage))


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({}, [(2, 1, 6, 6)]),  # 64 px: 32, 16, 8, then two stride-1 4x4 convs: 7, 6
        ({"n_layers": 2}, [(2, 1, 14, 14)]),
        ({"norm": "none"}, [(2, 1, 6, 6)]),
        ({"spectral_norm": True}, [(2, 1, 6, 6)]),
        ({"num_scales": 2}, [(2, 1, 6, 6), (2, 1, 2, 2)]),
        (
            {"num_scales": 3, "n_layers": 2, "norm": "none", "spectral_norm": True},
            [(2, 1, 14, 14), (2, 1, 6, 6), (2, 1, 2, 2)],
        ),
    ],
)
def test_discriminator_shapes(kwargs, want):
    disc = PatchDiscriminator(ndf=8, **kwargs)
    out = disc(images(2, 3, 64, 64))
    outs = out if isinstance(out, list) else [out]
    assert isinstance(out, torch.Tensor) == (len(want) == 1)  # one scale: a tensor; several: a list
    assert [tuple(o.shape) for o in outs] == want
    assert all(torch.isfinite(o).all() for o in outs)
    if kwargs.get("num_scales", 1) > 1:  # separate weights per scale
        assert disc.scales[0].model[0] is not disc.scales[1].model[0]


def test_discriminator_spectral_norm_bounds_weights():
    disc = PatchDiscriminator(ndf=8, spectral_norm=True)
    disc(images(1, 3, 64, 64))
    conv = disc.scales[0].model[2]
    assert hasattr(conv, "parametrizations")
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma < 1.2  # one power iteration per call: close to 1


def test_discriminator_receptive_field_is_70():
    disc = PatchDiscriminator(ndf=8, norm="none")  # instance norm would spread gradients over the whole image
    x = images(1, 3, 256, 256).requires_grad_(True)
    out = disc(x)
    assert out.shape == (1, 1, 30, 30)
    out[0, 0, 15, 15].backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero()
    cols = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero()
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_resnet9_matches_paper():
    model = ResnetGenerator()
    n = sum(p.numel() for p in model.parameters())
    assert n == 11_378_179
    assert round(n / 1e6, 3) == 11.378
    small = ResnetGenerator(ngf=8, n_blocks=2)
    y = small(images(2, 3, 32, 48))
    assert y.shape == (2, 3, 32, 48) and y.abs().max() <= 1
    with pytest.raises(VitcycleError, match="multiples of 4"):
        small(images(1, 3, 30, 32))
    with pytest.raises(VitcycleError, match="no style input"):
        small(images(1, 3, 32, 32), style=images(1, 3, 32, 32))
