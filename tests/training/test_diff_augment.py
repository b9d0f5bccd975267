"""DiffAugment of the discriminators' inputs: each transform's values, its gradient, the policy check,
and the module showing every discriminator input, in both steps, through the transforms."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_config, tiny_cyclegan

from vitcycle.errors import VitcycleError
from vitcycle.training.cli import VitCycleCLI
from vitcycle.training.diff_augment import (
    CUTOUT_RATIO,
    TRANSFORMS,
    check_policy,
    color,
    cutout,
    diff_augment,
    shift,
    translation,
)


def _images(n: int = 6, size: int = 16) -> torch.Tensor:
    """Images with no pixel exactly 0 (in [0.1, 1] or [-1, -0.1]), so zeroed pixels are the transform's."""
    g = torch.Generator().manual_seed(0)
    magnitude = 0.1 + 0.9 * torch.rand(n, 3, size, size, generator=g)  # (N, 3, S, S)
    return magnitude * torch.where(torch.rand(n, 3, size, size, generator=g) < 0.5, -1.0, 1.0)


def test_shift_moves_each_image_by_its_own_offset_and_fills_zeros():
    x = _images(2)
    out = shift(x, torch.tensor([2, -3]), torch.tensor([-1, 0]))
    assert torch.equal(out[0, :, 2:, :-1], x[0, :, :-2, 1:])  # down 2, left 1
    assert (out[0, :, :2] == 0).all() and (out[0, :, :, -1:] == 0).all()
    assert torch.equal(out[1, :, :-3], x[1, :, 3:])  # up 3
    assert (out[1, :, -3:] == 0).all()


def test_translation_is_a_shift_within_an_eighth_of_the_size():
    x = _images(8, size=16)  # at most 2 pixels each way
    out = translation(x, torch.Generator().manual_seed(1))
    offsets = []
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(out[i], shift(x[i:i + 1], torch.tensor([dy]), torch.tensor([dx]))[0])]
        assert len(found) == 1, f"image {i} is no shift of up to 2 pixels"
        offsets += found
    assert len(set(offsets)) > 1  # drawn per image


def test_cutout_zeroes_one_square_per_image_and_keeps_the_rest():
    x = _images(8, size=16)
    out = cutout(x, torch.Generator().manual_seed(2))
    side = int(16 * CUTOUT_RATIO)
    for i in range(len(x)):
        zero = (out[i] == 0).all(0)  # (S, S): every channel zeroed
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 0 < len(rows) <= side and 0 < len(cols) <= side  # one square, maybe cut off at the border
        assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # solid
        assert torch.equal(out[i][:, ~zero], x[i][:, ~zero])  # the rest unchanged
    assert len({tuple((out[i] == 0).all(0).nonzero()[0].tolist()) for i in range(len(x))}) > 1  # drawn per image


def test_color_changes_brightness_saturation_and_contrast_per_image():
    x = _images(4)
    out = color(x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    shifts = (out - x).mean((1, 2, 3))  # (N,): differs per image
    assert shifts.unique().numel() == len(x)
    gray = torch.full((2, 3, 8, 8), 0.2)  # no colour, no contrast: only the brightness moves it
    moved = color(gray, torch.Generator().manual_seed(4))
    for image in moved:
        assert torch.allclose(image, image.flatten()[0].expand_as(image), atol=1e-6)
        assert -0.3 - 1e-6 <= image.flatten()[0] <= 0.7 + 1e-6


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_each_transform_passes_a_gradient_and_is_seeded(name):
    x = _images(4).requires_grad_()
    out = TRANSFORMS[name](x, torch.Generator().manual_seed(5))
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).any()
    again = TRANSFORMS[name](x.detach(), torch.Generator().manual_seed(5))
    assert torch.equal(out.detach(), again)


def test_the_policy_applies_in_order_and_an_empty_policy_is_the_input():
    x = _images(4)
    assert diff_augment(x, (), torch.Generator()) is x
    rng = torch.Generator().manual_seed(6)
    expected = cutout(translation(x, rng), rng)
    assert torch.equal(diff_augment(x, ("translation", "cutout"), torch.Generator().manual_seed(6)), expected)


def test_bad_policies_are_refused_with_the_name():
    with pytest.raises(VitcycleError, match=r"disc_input.augment: unknown transform 'flip'; choose from 'color', 'translation', 'cutout'"):
        check_policy(["translation", "flip"])
    with pytest.raises(VitcycleError, match=r"disc_input.augment names a transform twice"):
        check_policy(["cutout", "cutout"])
    with pytest.raises(VitcycleError, match=r"unknown transform 'flip'"):
        tiny_cyclegan(disc_input={"augment": ["flip"]})


def test_every_discriminator_input_is_cut_out_in_both_steps():
    """disc_input.augment=["cutout"]: each image a discriminator sees (real, pooled fake, source negative; in the
    discriminator step and in the generators' step) has its zeroed square; the generators' outputs do not."""
    torch.manual_seed(0)
    module = tiny_cyclegan(disc_input={"source_negatives": True, "augment": ["cutout"]})
    seen: list[torch.Tensor] = []
    for disc in (module.disc_a, module.disc_b):
        disc.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    real_a, real_b = _images(3, 32), _images(3, 32).flip(0)  # (3, 3, 32, 32) each
    with torch.no_grad():
        _, _, fake_a, fake_b = module._generator_step(real_a, real_b)
        module._discriminator_step(real_a, real_b, fake_a, fake_b)
    assert [len(x) for x in seen] == [3, 3, 9, 9]  # g_adv_ab, g_adv_ba; then real + pooled fake + negative, each
    for images in seen:
        zeroed = (images == 0).all(1).flatten(1).sum(1)  # (N,): pixels zeroed in every channel
        assert (zeroed > 0).all() and (zeroed <= (32 * CUTOUT_RATIO) ** 2).all()
    assert ((fake_a == 0).all(1).flatten(1).sum(1) == 0).all()  # the translations themselves are whole


def test_disc_augment_from_the_config_trains(tiny_data, tmp_path):
    """`disc_input: {augment: [translation, cutout]}` in the YAML reaches the module, and a fit with it saves a
    checkpoint whose hyperparameters name the policy."""
    config = tiny_config(tmp_path, tiny_data, disc_input={"augment": ["translation", "cutout"]})
    cli = VitCycleCLI(args=["fit", "--config", str(config), "--trainer.max_steps", "4"])
    assert list(cli.model.disc_input.augment) == ["translation", "cutout"]
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert list(ckpt["hyper_parameters"]["disc_input"]["augment"]) == ["translation", "cutout"]
