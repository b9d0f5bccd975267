"""The checkpoint format (`vitcycle.checkpoint`): the `vitcycle` entry, plain-Python CycleGANs, old files."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tiny import SIZE, TINY_DISC, TINY_VIT, edited_checkpoint, legacy_checkpoint
from torch import nn
from torch.utils.data import DataLoader

from vitcycle.checkpoint import load_checkpoint, model_entry, model_spec
from vitcycle.errors import CheckpointError, VitcycleError
from vitcycle.inference.translator import Translator
from vitcycle.models import PatchDiscriminator, ResnetGenerator, ViTTranslator
from vitcycle.training.cyclegan import CycleGAN


def _defaults(cls: type) -> dict:
    return {n: p.default for n, p in inspect.signature(cls).parameters.items()}


def test_fit_writes_the_vitcycle_entry(tiny_ckpt: Path, tiny_resnet_ckpt: Path) -> None:
    entry = torch.load(tiny_ckpt, weights_only=True)["vitcycle"]
    json.dumps(entry)  # plain data
    vit = {**_defaults(ViTTranslator), **TINY_VIT}
    assert entry == {
        "format": 1,
        "generators": {name: {"class_path": "vitcycle.models.generator.ViTTranslator", "init_args": vit}
                       for name in ("gen_ab", "gen_ba")},
        "image_size": SIZE,  # the data module's
    }
    resnet = torch.load(tiny_resnet_ckpt, weights_only=True)["vitcycle"]["generators"]["gen_ba"]
    assert resnet == {"class_path": "vitcycle.models.baselines.ResnetGenerator", "init_args": {"ngf": 8, "n_blocks": 1}}


def test_a_cyclegan_built_in_python_loads_through_translator(tmp_path: Path) -> None:
    """No LightningCLI: generators passed as modules, a plain Trainer, `trainer.save_checkpoint`."""
    encoder_file = tmp_path / "encoder.pth"  # initial encoder weights from a local file: not needed to load
    torch.save(ViTTranslator(**TINY_VIT).encoder.state_dict(), encoder_file)
    torch.manual_seed(0)
    model = CycleGAN(
        ViTTranslator(**TINY_VIT, pretrained_path=str(encoder_file)), ViTTranslator(**TINY_VIT),
        PatchDiscriminator(**TINY_DISC), PatchDiscriminator(**TINY_DISC),
    )
    images = [{"a": torch.rand(3, SIZE, SIZE) * 2 - 1, "b": torch.rand(3, SIZE, SIZE) * 2 - 1} for _ in range(4)]
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(images, batch_size=2))
    assert trainer.global_step == 4  # 2 batches, two optimizer steps each
    path = tmp_path / "python.ckpt"
    trainer.save_checkpoint(path)
    encoder_file.unlink()

    ckpt = load_checkpoint(path)  # weights_only: no module or class pickled in the hyperparameters
    spec = ckpt["vitcycle"]["generators"]["gen_ab"]
    assert spec["init_args"]["pretrained_path"] is None and spec["init_args"]["pretrained"] is False
    assert ckpt["vitcycle"]["image_size"] == SIZE  # no data module: the generator's img_size
    assert ckpt["hyper_parameters"]["gen_ab"] == spec and ckpt["hyper_parameters"]["optimizer_gen"] == "torch.optim.adam.Adam"

    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1  # (B, 3, H, W)
    for direction, ema, raw in (("a2b", model.gen_ab_ema.module, model.gen_ab), ("b2a", model.gen_ba_ema.module, model.gen_ba)):
        with torch.no_grad():
            expected_ema, expected_raw = ema.eval()(x), raw.eval()(x)
        tr = Translator.from_checkpoint(path, direction, device="cpu")
        assert tr.image_size == SIZE
        torch.testing.assert_close(tr.translate_tensor(x), expected_ema, atol=1e-5, rtol=0)
        raw_tr = Translator.from_checkpoint(path, direction, use_ema=False, device="cpu")
        torch.testing.assert_close(raw_tr.translate_tensor(x), expected_raw, atol=1e-5, rtol=0)
    assert (expected_ema - expected_raw).abs().max() > 1e-4  # the two weight sets differ: each was checked


def test_a_checkpoint_of_the_lightningcli_layout_still_loads(tiny_ckpt: Path, tmp_path: Path) -> None:
    """Files written before the `vitcycle` entry: generators and size from LightningCLI's hyperparameters."""
    old = legacy_checkpoint(tiny_ckpt, tmp_path / "old.ckpt")
    entry = model_spec(load_checkpoint(old), old)
    assert entry["image_size"] == SIZE
    assert entry["generators"]["gen_ab"]["class_path"] == "vitcycle.models.ViTTranslator"  # as the config named it
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    for direction in ("a2b", "b2a"):
        migrated = Translator.from_checkpoint(old, direction, device="cpu")
        assert migrated.image_size == SIZE
        expected = Translator.from_checkpoint(tiny_ckpt, direction, device="cpu").translate_tensor(x)
        torch.testing.assert_close(migrated.translate_tensor(x), expected, atol=0, rtol=0)


def test_a_newer_or_broken_entry_is_one_clear_error(tiny_ckpt: Path, tmp_path: Path) -> None:
    newer = edited_checkpoint(tiny_ckpt, tmp_path / "newer.ckpt", lambda c: c["vitcycle"].update(format=2))
    with pytest.raises(CheckpointError, match=r"newer.ckpt is of checkpoint format 2, newer .*upgrade vitcycle"):
        Translator.from_checkpoint(newer)
    broken = edited_checkpoint(tiny_ckpt, tmp_path / "broken.ckpt", lambda c: c["vitcycle"].pop("generators"))
    with pytest.raises(CheckpointError, match="broken.ckpt: its vitcycle entry is malformed"):
        Translator.from_checkpoint(broken)


class _Wider(ResnetGenerator):
    def __init__(self, width: int = 2) -> None:
        super().__init__(ngf=4 * width, n_blocks=1)


def test_generators_record_their_own_arguments() -> None:
    assert _Wider(3).init_args == {"width": 3}  # the subclass's arguments, not those it passed on
    assert ResnetGenerator(8, n_blocks=2).spec() == {
        "class_path": "vitcycle.models.baselines.ResnetGenerator", "init_args": {"ngf": 8, "n_blocks": 2}
    }
    gen = ViTTranslator(**{**TINY_VIT, "encoder_kwargs": {**TINY_VIT["encoder_kwargs"], "act_layer": nn.GELU}})
    with pytest.raises(VitcycleError, match="encoder_kwargs.act_layer=.* is not plain data"):
        gen.spec()
    with pytest.warns(UserWarning, match="gen_ab is not recorded in the checkpoint"):
        entry = model_entry({"gen_ab": gen, "gen_ba": nn.Identity()})
    assert entry == {"format": 1, "generators": {"gen_ab": None, "gen_ba": None}, "image_size": SIZE}


# ---------------------------------------------------------------- checkpoints from before the option groups

FLAT = Path(__file__).parent / "fixtures/cyclegan_flat_options.ckpt"
"""A one-epoch `vitcycle fit` of very small networks (4 batches of 4, 32 px, the built-in data; 0.9 MB), written by
vitcycle at commit 4cb106e: flat hyperparameters (lambda_cycle_b 2.5, cycle_b_space luma, cycle_b_downsample 2,
identity_fade_steps 3, source_negatives, instance_noise 0.05, warmup_steps 2, pool_size 2) and generators of the
ViTTranslator defaults of that day (global_residual, pixel_shuffle)."""
FLAT_AS_GROUPS = {
    "cycle_a": {"weight": 5.0},
    "cycle_b": {"weight": 2.5, "space": "luma", "downsample": 2},
    "identity": {"weight": 0.5, "fade_batches": 3},
    "disc_input": {"pool_size": 2, "source_negatives": True, "instance_noise": 0.05},
    "schedule": {"warmup_batches": 2, "decay_start_epoch": 2, "decay_epochs": 2},
}


def test_flat_hyperparameters_migrate_to_the_groups() -> None:
    from vitcycle.training.options import migrate_flat

    saved = torch.load(FLAT, weights_only=True)["hyper_parameters"]
    grouped, removed = migrate_flat(saved)
    for group, fields in FLAT_AS_GROUPS.items():
        assert {k: grouped[group][k] for k in fields} == fields, group
    assert grouped["gradient_penalty"] == {"weight": 0.0, "center": 1.0}
    assert grouped["compile"] == {"when": "never", "mode": None, "backend": "inductor"}
    assert removed == [] and "lambda_cycle" not in grouped and "blurred_negatives" not in grouped
    _, removed = migrate_flat({**saved, "blurred_negatives": 2, "gan_loss": "ralsgan"})
    assert removed == ["blurred_negatives: 2", "gan_loss: ralsgan"]
    assert migrate_flat(grouped) == (grouped, [])  # grouped ones stay as they are
    # a resume compares the config with the migrated options, and names what it changes
    from vitcycle.training.cli import check_resume

    changes = check_resume(str(FLAT), {"cycle_b": {"weight": 5.0, "space": "luma", "downsample": 2}})
    assert changes == ["cycle_b: {'weight': 2.5, 'space': 'luma', 'downsample': 2} -> "
                       "{'weight': 5.0, 'space': 'luma', 'downsample': 2}"]


def test_a_checkpoint_from_before_the_groups_translates_and_resumes(tiny_data: Path, tmp_path: Path, capsys) -> None:
    from tiny import tiny_config

    from vitcycle.cli import cli_main

    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1  # (2, 3, H, W)
    for direction in ("a2b", "b2a"):
        translator = Translator.from_checkpoint(FLAT, direction, device="cpu")
        assert translator.generator.global_residual and translator.translate_tensor(x).shape == x.shape
    saved = torch.load(FLAT, weights_only=True)["hyper_parameters"]  # its networks, as its config named them
    networks = {name: saved[name] for name in ("gen_ab", "gen_ba", "disc_a", "disc_b")}
    assert networks["gen_ab"]["init_args"]["upsample"] == "pixel_shuffle"  # the old default, recorded
    config = tiny_config(tmp_path, tiny_data, **networks, **FLAT_AS_GROUPS)
    resumed = cli_main(["fit", "--config", str(config), "--trainer.max_epochs=2", f"--ckpt_path={FLAT}"])
    assert resumed.trainer.global_step == 16  # 1 epoch of 4 batches in the file, one more here
    said = [line.strip() for line in capsys.readouterr().err.splitlines() if line.startswith("  ")]
    assert said and all(line.startswith("data.") for line in said)  # the migrated options equal the config's
    assert resumed.model.cycle_b.space == "luma" and resumed.model.disc_input.pool_size == 2


def test_a_legacy_named_size_gets_the_generator_defaults_of_its_day(tmp_path: Path) -> None:
    """LightningCLI's hyperparameters of a named size hold only what its config set: a file without the
    `vitcycle` entry and without global_residual/upsample was trained with the defaults of then."""

    def legacy_without_defaults(ckpt: dict) -> None:
        ckpt.pop("vitcycle")
        for name in ("gen_ab", "gen_ba"):
            for key in ("global_residual", "upsample"):
                del ckpt["hyper_parameters"][name]["init_args"][key]

    old = edited_checkpoint(FLAT, tmp_path / "legacy.ckpt", legacy_without_defaults)
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    expected = Translator.from_checkpoint(FLAT, "a2b", device="cpu").translate_tensor(x)
    torch.testing.assert_close(Translator.from_checkpoint(old, "a2b", device="cpu").translate_tensor(x), expected,
                               atol=0, rtol=0)
