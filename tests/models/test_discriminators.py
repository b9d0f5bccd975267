"""The transformer discriminator (`vitcycle.models.ViTDiscriminator`): shapes, independence, spectral norm, training."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_config

from vitcycle.cli import cli_main
from vitcycle.errors import VitcycleError
from vitcycle.models import ViTDiscriminator

TINY = {"img_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "num_heads": 2}


@pytest.mark.parametrize(("size", "grid"), [(32, 4), (64, 8), (128, 16)])
def test_one_logit_per_patch_at_any_size(size, grid):
    torch.manual_seed(0)
    logits = ViTDiscriminator(**TINY)(torch.rand(2, 3, size, size) * 2 - 1)
    assert logits.shape == (2, 1, grid, grid) and torch.isfinite(logits).all()


def test_each_image_is_judged_on_its_own():
    """The CycleGAN judges real and fake images in one batch: no image may change another's logits."""
    torch.manual_seed(0)
    disc = ViTDiscriminator(**TINY).eval()
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    together = disc(images)
    alone = torch.cat([disc(images[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_spectral_norm_bounds_every_layer_and_can_be_left_out():
    torch.manual_seed(0)
    disc = ViTDiscriminator(**TINY)
    for _ in range(30):  # the power iteration converges in training mode
        disc(torch.rand(2, 3, 32, 32))
    layers = [m for m in disc.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    sigmas = [torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() for m in layers]
    assert len(layers) == 1 + 4 * TINY["depth"] + 1 and max(abs(s - 1) for s in sigmas) < 0.05
    plain = ViTDiscriminator(**TINY, spectral_norm=False)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())
    with pytest.raises(VitcycleError, match="patch_size must be a multiple of 4"):
        ViTDiscriminator(patch_size=6)


def test_a_cyclegan_with_transformer_discriminators_trains_and_resumes(tiny_data, tmp_path):
    disc = {"class_path": "vitcycle.models.ViTDiscriminator", "init_args": TINY}
    config = tiny_config(tmp_path, tiny_data, disc_a=disc, disc_b=disc)
    first = cli_main(["fit", "--config", str(config)])
    assert isinstance(first.model.disc_a, ViTDiscriminator) and torch.isfinite(first.trainer.logged_metrics["loss/d_a"])
    resumed = cli_main(["fit", "--config", str(config), "--trainer.max_epochs=2", f"--ckpt_path={tmp_path / 'ckpt/last.ckpt'}"])
    assert resumed.trainer.global_step == 16  # the checkpoint's weights and optimizer states came back: 2 epochs in all
    state = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("disc_a.blocks.") for k in state)
