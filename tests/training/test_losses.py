"""Losses against hand-computed values, and the image pool's behaviour."""

import math

import pytest
import torch
from torch import nn

from vitcycle.training.image_pool import ImagePool
from vitcycle.training.losses import GAN_LOSSES, cycle_l1, gradient_penalty, luma
from vitcycle.training.patch_nce import PatchNCE

REAL = torch.tensor([[1.0, 0.5], [0.0, 2.0]])  # D outputs on real images
FAKE = torch.tensor([[0.0, -1.0], [1.0, 0.5]])  # D outputs on fakes


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


@pytest.mark.parametrize(
    ("name", "d_expected", "g_expected"),
    [
        # lsgan: 0.5 * (mean((r-1)^2) + mean(f^2)); g: mean((f-1)^2)
        ("lsgan", 0.5 * ((0 + 0.25 + 1 + 1) / 4 + (0 + 1 + 1 + 0.25) / 4), (1 + 4 + 0 + 0.25) / 4),
        # hinge: 0.5 * (mean(relu(1-r)) + mean(relu(1+f))); g: -mean(f)
        ("hinge", 0.5 * ((0 + 0.5 + 1 + 0) / 4 + (1 + 0 + 2 + 1.5) / 4), -(0 - 1 + 1 + 0.5) / 4),
        (
            "vanilla",
            0.5 * (sum(_bce(r, 1) for r in (1, 0.5, 0, 2)) / 4 + sum(_bce(f, 0) for f in (0, -1, 1, 0.5)) / 4),
            sum(_bce(f, 1) for f in (0, -1, 1, 0.5)) / 4,
        ),
    ],
)
def test_adversarial_losses_match_hand_computed_values(name, d_expected, g_expected):
    d_loss, g_loss = GAN_LOSSES[name]
    assert d_loss(REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    assert g_loss(FAKE).item() == pytest.approx(g_expected, rel=1e-6)


def test_multiscale_outputs_average_over_scales():
    d_loss, g_loss = GAN_LOSSES["lsgan"]
    scale2_real, scale2_fake = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)  # perfect D: loss 0
    single = d_loss(REAL, FAKE)
    assert d_loss([REAL, scale2_real], [FAKE, scale2_fake]).item() == pytest.approx(single.item() / 2)
    assert g_loss([FAKE, FAKE]).item() == pytest.approx(g_loss(FAKE).item())


def test_luma_cycle_ignores_hue_and_counts_brightness():
    real = torch.zeros(1, 3, 2, 2)  # mid grey
    red = torch.tensor([0.587, -0.299, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)  # another hue, the same luminance
    assert luma(real + 0.5).flatten().tolist() == pytest.approx([0.5] * 4)  # (1, 1, 2, 2): weights sum to 1
    assert cycle_l1(real + red, real, "luma").item() == pytest.approx(0.0, abs=1e-6)
    assert cycle_l1(real + red, real, "rgb").item() == pytest.approx((0.587 + 0.299) / 3)
    assert cycle_l1(real + 0.25, real, "luma").item() == pytest.approx(0.25)  # brighter: counted in full


def test_downsampled_cycle_ignores_detail_finer_than_a_block_and_counts_the_rest():
    real = torch.zeros(1, 3, 4, 4)  # mid grey
    checker = (torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)) % 2 * 1.0 - 0.5  # (4, 4): +-0.5, mean 0 per 2x2
    assert cycle_l1(real + checker, real).item() == pytest.approx(0.5)
    assert cycle_l1(real + checker, real, downsample=2).item() == pytest.approx(0.0, abs=1e-6)
    assert cycle_l1(real + 0.25, real, downsample=2).item() == pytest.approx(0.25)  # brighter: counted in full
    assert cycle_l1(real + checker + 0.25, real, "luma", downsample=2).item() == pytest.approx(0.25)  # both options


def test_patch_nce_is_low_for_tokens_in_place_and_high_for_moved_ones():
    torch.manual_seed(0)
    nce = PatchNCE([16, 16], proj_dim=32)
    tokens = [torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)]  # (B, D, h, w) per depth
    moved = [t.roll(1, dims=-1) for t in tokens]  # every token one place to the right
    in_place, off_place = nce(tokens, tokens).item(), nce(moved, tokens).item()
    assert in_place < 0.5 < math.log(16) < off_place  # 16 positions: chance is log(16)


def test_patch_nce_trains_the_output_side_and_its_heads_alone():
    torch.manual_seed(0)
    nce = PatchNCE([8], proj_dim=8)
    out_map, in_map = torch.randn(1, 8, 2, 2, requires_grad=True), torch.randn(1, 8, 2, 2, requires_grad=True)
    nce([out_map], [in_map]).backward()
    assert out_map.grad.abs().sum() > 0 and in_map.grad is None  # the input side is a fixed target
    assert all(p.grad is not None for p in nce.parameters())


def test_gradient_penalty_of_a_linear_critic_is_known():
    # D(x) = sum(w * x): its gradient is w everywhere, so the penalty is (||w|| - center)^2.
    critic = nn.Conv2d(3, 1, kernel_size=2, bias=False)
    with torch.no_grad():
        critic.weight.fill_(0.5)
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    w_norm = math.sqrt(12 * 0.25)
    assert gradient_penalty(critic, real, fake, center=1.0).item() == pytest.approx((w_norm - 1) ** 2, rel=1e-5)
    assert gradient_penalty(critic, real, fake, center=0.0).item() == pytest.approx(w_norm**2, rel=1e-5)


def test_gradient_penalty_reaches_discriminator_weights():
    critic = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Conv2d(4, 1, 3))
    gradient_penalty(critic, torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)).backward()
    weights = [m.weight for m in critic if isinstance(m, nn.Conv2d)]  # biases do not change dD/dx
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)


def test_image_pool_fills_then_mixes_history():
    pool = ImagePool(size=4)
    first = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    assert torch.equal(pool.query(first), first)  # filling: images pass through and are stored
    assert pool.images.shape == (4, 3, 2, 2)
    new = (100 + torch.arange(64.0)).view(64, 1, 1, 1).expand(64, 3, 2, 2)
    out = pool.query(new, torch.Generator().manual_seed(0))
    from_history = (out[:, 0, 0, 0] != new[:, 0, 0, 0]).sum().item()
    assert out.shape == new.shape
    assert 16 < from_history < 48  # about half come from the history (p = 0.5)
    assert (pool.images >= 100).all()  # returned history slots were replaced by new images


def test_image_pool_is_reproducible_from_its_generator_and_state():
    images = torch.randn(12, 3, 2, 2)
    pool_1, pool_2 = ImagePool(size=5), ImagePool(size=5)
    pool_1.query(images[:6])
    saved = pool_1.state_dict()
    assert list(saved) == ["_extra_state"]  # in checkpoints, but not a buffer that DDP would broadcast
    pool_2.load_state_dict(saved)  # as after a resume
    out_1 = pool_1.query(images[6:], torch.Generator().manual_seed(3))
    out_2 = pool_2.query(images[6:], torch.Generator().manual_seed(3))
    assert torch.equal(out_1, out_2)
    assert torch.equal(pool_1.images, pool_2.images)


def test_image_pool_of_size_zero_is_a_pass_through():
    pool = ImagePool(size=0)
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    out = pool.query(x * 2)
    assert torch.equal(out, x * 2) and not out.requires_grad  # detached: the discriminator step cannot reach G
