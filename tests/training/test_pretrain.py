"""Masked-patch inpainting pretraining and starting a CycleGAN from it."""

from __future__ import annotations

import pytest
import torch
import yaml
from tiny import ROOT, TINY_VIT, tiny_cyclegan

from vitcycle.cli import cli_main
from vitcycle.errors import VitcycleError
from vitcycle.models import ViTTranslator
from vitcycle.training.pretrain import MaskedInpainting, mask_patch_size, random_patch_mask


def test_the_mask_is_seeded_and_masks_the_asked_share_of_patches():
    mask = random_patch_mask(3, 32, 32, 8, 0.4, torch.Generator().manual_seed(5))  # 16 cells, 6 masked each
    again = random_patch_mask(3, 32, 32, 8, 0.4, torch.Generator().manual_seed(5))
    other = random_patch_mask(3, 32, 32, 8, 0.4, torch.Generator().manual_seed(6))
    assert mask.shape == (3, 1, 32, 32) and torch.equal(mask, again) and not torch.equal(mask, other)
    cells = mask[:, 0, ::8, ::8]  # (3, 4, 4): one value per cell
    assert cells.sum(dim=(1, 2)).tolist() == [6.0, 6.0, 6.0]
    assert torch.equal(cells.repeat_interleave(8, 1).repeat_interleave(8, 2), mask[:, 0])  # whole cells
    assert not torch.equal(mask[0], mask[1])  # each image its own draw


def test_the_mask_patch_scales_with_the_image_in_encoder_patches():
    assert mask_patch_size(256, 16) == 32 and mask_patch_size(64, 8) == 8 and mask_patch_size(128, 16) == 16
    with pytest.raises(VitcycleError, match="multiple of the encoder patch 8"):
        mask_patch_size(64, 8, mask_patch=12)


class _Echo(torch.nn.Module):
    """A "generator" that returns a fixed image, so the loss can be checked by hand."""

    patch_size = (8, 8)

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output + 0 * self.weight


def test_the_loss_is_taken_on_the_masked_patches_only_by_default():
    images = torch.zeros(2, 3, 32, 32)
    module = MaskedInpainting(_Echo(torch.zeros(2, 3, 32, 32)), mask_ratio=0.5)
    mask = module.mask_for(images, step=3)
    outside = (1 - mask) * 0.7  # error only where nothing was masked
    inside = mask * 0.7
    assert module.loss(outside, images, mask).item() == 0.0
    assert module.loss(inside, images, mask).item() == pytest.approx(0.7)
    whole = MaskedInpainting(_Echo(images), mask_ratio=0.5, loss_on="image")
    assert whole.loss(inside, images, mask).item() == pytest.approx(0.35)
    _, _, mask_again = module.inpaint(images, step=3)
    assert torch.equal(mask, mask_again)  # the mask is a function of (seed, step)


def _pretrain_config(tmp_path, data, epochs: int) -> list[str]:
    config = yaml.safe_load((ROOT / "configs/pretrain_quickstart.yaml").read_text())
    config["trainer"].update(accelerator="cpu", max_epochs=epochs, enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=str(tmp_path), log_every_n_steps=1,
                             logger={"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                                     "init_args": {"save_dir": str(tmp_path), "name": "tb", "version": 0}})
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    config["model"]["generator"] = {"class_path": "vitcycle.models.ViTTranslator", "init_args": dict(TINY_VIT)}
    config["model"]["optimizer"]["init_args"]["lr"] = 3e-3
    config["data"].update(dir_a=str(data / "trainA"), dir_b=str(data / "trainB"), val_pairs=str(data / "pairs_val.csv"),
                          image_size=32, batch_size=4, num_workers=0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["pretrain", "--config", str(path)]


def test_a_short_pretraining_lowers_its_loss_and_starts_a_cycle_gan_exactly(tiny_data, tmp_path):
    cli = cli_main(_pretrain_config(tmp_path, tiny_data, epochs=10))
    logged = cli.trainer.logged_metrics
    assert cli.trainer.global_step == 40  # 4 batches x 10 epochs, one optimizer
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb/version_0"))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("loss/inpaint")]
    assert len(losses) == 40 and sum(losses[-8:]) / 8 < 0.9 * sum(losses[:8]) / 8, losses  # 0.85 measured
    assert "val/inpaint_l1" in logged
    assert {"grid/inpaint_a", "grid/inpaint_b"} <= set(acc.Tags()["images"])

    ckpt = tmp_path / "ckpt/last.ckpt"
    gan = tiny_cyclegan(pretrained_generator=str(ckpt))
    pretrained = cli.model.generator.state_dict()
    for name in ("gen_ab", "gen_ba", "gen_ab_ema.module", "gen_ba_ema.module"):
        own = gan.get_submodule(name).state_dict()
        assert all(torch.equal(own[k], v) for k, v in pretrained.items()), name


def test_a_pretrained_generator_of_another_shape_is_refused_naming_both_shapes(tiny_data, tmp_path):
    cli = cli_main(_pretrain_config(tmp_path, tiny_data, epochs=1))
    assert cli.trainer.global_step == 4
    with pytest.raises(VitcycleError, match=r"does not fit this generator: shapes differ \(.*\(16, .*\) in .*, \(32, .*\) here"):
        tiny_cyclegan(gen={"head_dim": 32}, pretrained_generator=str(tmp_path / "ckpt/last.ckpt"))


def test_adamw_exempts_the_generators_no_weight_decay_set():
    module = MaskedInpainting(ViTTranslator(**TINY_VIT),
                              optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05))
    opt = module.configure_optimizers()
    no_decay, decay = opt.param_groups
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    names = {id(p): n for n, p in module.generator.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert "style_tokens" in exempt and "encoder.pos_embed" in exempt
    assert all(p.ndim > 1 for p in decay["params"])


def test_pretraining_resumes_exactly_mid_epoch(tiny_data, tmp_path):
    """6 steps straight against 2 (mid-epoch: 4 batches an epoch) and then resumed to 6: the same weights."""
    straight = cli_main([*_pretrain_config(tmp_path / "straight", tiny_data, epochs=10), "--trainer.max_steps=6"])
    first = _pretrain_config(tmp_path / "half", tiny_data, epochs=10)
    cli_main([*first, "--trainer.max_steps=2"])
    ckpt = tmp_path / "half/ckpt/last.ckpt"
    assert torch.load(ckpt, weights_only=True)["UnpairedImageDataModule"] == {"train_position": [0, 2]}
    resumed = cli_main([*first, "--trainer.max_steps=6", f"--ckpt_path={ckpt}"])
    assert resumed.trainer.global_step == straight.trainer.global_step == 6
    a, b = straight.model.generator.state_dict(), resumed.model.generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


@pytest.mark.parametrize(("pretrain", "cyclegan"), [("pretrain_quickstart.yaml", "quickstart.yaml"), ("pretrain.yaml", "cycle.yaml")])
def test_each_pretraining_config_builds_its_cyclegan_generator(pretrain, cyclegan):
    """`--model.pretrained_generator` refuses other shapes: both configs must name the same generator."""
    generator = yaml.safe_load((ROOT / "configs" / pretrain).read_text())["model"]["generator"]
    assert generator == yaml.safe_load((ROOT / "configs" / cyclegan).read_text())["model"]["gen_ab"]
