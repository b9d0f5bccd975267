"""CycleGAN training through LightningCLI: configs, learning, resume, DDP, the non-finite guard."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from tiny import TINY_DISC, TINY_VIT, checkpoint_state, tiny_config, tiny_cyclegan

import vitcycle.models
from vitcycle.cli import cli_main, main
from vitcycle.errors import NonFiniteLossError, VitcycleError
from vitcycle.models import PatchDiscriminator, ResnetGenerator, ViTTranslator
from vitcycle.training.cli import VitCycleCLI, check_resume
from vitcycle.training.cyclegan import CycleGAN
from vitcycle.training.losses import cycle_l1
from vitcycle.training.options import DiscriminatorInput

ROOT = Path(__file__).resolve().parents[2]
TINY_GEN = {"class_path": "vitcycle.models.ViTTranslator", "init_args": TINY_VIT}


@pytest.mark.parametrize(
    ("config", "size", "lr", "cycle_weight", "identity_weight"),
    [("configs/cycle.yaml", "vit_small_p16", 2e-4, 5.0, 0.5), ("configs/quickstart.yaml", "vit_tiny_p8", 6e-4, 5.0, 0.0)],
)  # the paper's recipe; the CPU one
def test_print_config_of_shipped_configs(config, size, lr, cycle_weight, identity_weight, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(ROOT / config), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["gen_ab"]["class_path"] == f"vitcycle.models.{size}"  # a named size, values in one place
    defaults = inspect.signature(getattr(vitcycle.models, size)).parameters
    assert printed["model"]["gen_ab"]["init_args"]["img_size"] == defaults["img_size"].default
    assert printed["model"]["optimizer_gen"]["init_args"]["lr"] == pytest.approx(lr)
    assert printed["model"]["optimizer_gen"]["init_args"]["betas"] == [0.5, 0.999]
    assert printed["model"]["cycle_a"]["weight"] == printed["model"]["cycle_b"]["weight"] == cycle_weight
    assert printed["model"]["identity"]["weight"] == identity_weight


def test_the_gpu_config_takes_the_cpu_recipes_losses_scaled_to_its_size():
    gpu, cpu = (yaml.safe_load((ROOT / "configs" / name).read_text()) for name in ("cycle.yaml", "selfie2anime_cpu.yaml"))
    for group in ("cycle_a", "cycle_b", "disc_input"):
        shared = gpu["model"][group].keys() - {"downsample"}
        assert {k: gpu["model"][group][k] for k in shared} == {k: cpu["model"][group][k] for k in shared}, group
    assert gpu["model"]["gen_ab"]["init_args"] == cpu["model"]["gen_ab"]["init_args"] == {"head_norm": True}
    blocks = [c["model"]["cycle_b"]["downsample"] / c["data"]["image_size"] for c in (gpu, cpu)]
    assert blocks[0] == blocks[1]  # the anime cycle's blocks cover the same share of the face


def test_cpu_overlay_config_layers_on_cycle_yaml(capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(ROOT / "configs/cycle.yaml"), "--config", str(ROOT / "configs/cpu_64px.yaml"),
                  "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["image_size"] == 64 and printed["model"]["gen_ab"]["init_args"]["img_size"] == 64
    assert printed["model"]["optimizer_gen"]["init_args"]["lr"] == pytest.approx(2e-4)  # kept from cycle.yaml
    assert printed["trainer"]["precision"] == "32-true"


def test_fast_dev_run_of_the_quickstart_config(tiny_data, tmp_path):
    """The shipped quickstart networks (vit_tiny_p8 sizes), one batch, in-process."""
    cli = cli_main([
        "fit", "--config", str(ROOT / "configs/quickstart.yaml"), "--trainer.fast_dev_run=true",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator=cpu",
        f"--data.dir_a={tiny_data / 'trainA'}", f"--data.dir_b={tiny_data / 'trainB'}",
        f"--data.val_pairs={tiny_data / 'pairs_val.csv'}", "--data.num_workers=0", "--data.image_size=32",
    ])
    assert isinstance(cli.model, CycleGAN)
    assert cli.trainer.global_step == 2  # manual optimization: one generator and one discriminator step
    assert "loss/cycle_a" in cli.trainer.logged_metrics


def test_training_logs_losses_checkpoints_and_image_grids(tiny_data, tmp_path):
    # the quickstart recipe has no identity loss; switch it on so that its logging is covered too
    cli = cli_main(["fit", "--config", str(tiny_config(tmp_path, tiny_data, identity={"weight": 0.5}))])
    logged = cli.trainer.logged_metrics
    for key in ("loss/g_adv_ab", "loss/d_a", "loss/idt_b", "d_out/real_b", "lr/gen", "val/cycle_l1", "val/sharpness_ab",
                "val/paired_ratio_ab", "val/paired_ratio_ba", "val/identity_l1"):
        assert key in logged, key
    assert torch.isfinite(torch.stack([torch.as_tensor(v) for v in logged.values()])).all()
    assert logged["schedule/identity_weight"].item() == pytest.approx(0.5)  # no fade: the schedules are logged as set
    assert {p.name for p in (tmp_path / "ckpt").glob("*.ckpt")} == {"last.ckpt", "best.ckpt"}
    events = list((tmp_path / "run/tb/version_0").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0]), size_guidance={"images": 0})
    acc.Reload()
    assert {"grid/a2b", "grid/b2a"} <= set(acc.Tags()["images"])
    # The checkpoint is loadable without running pickled code, and holds the EMA generators.
    ckpt = torch.load(tmp_path / "ckpt/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["gen_ab"]["class_path"] == "vitcycle.models.ViTTranslator"
    assert any(k.startswith("gen_ab_ema.module.") for k in ckpt["state_dict"])
    assert ckpt["datamodule_hyper_parameters"]["image_size"] == 32


def test_bf16_mixed_precision_trains_with_fp32_weights(tiny_data, tmp_path):
    """`--trainer.precision=bf16-mixed` (autocast on the CPU here): finite losses, fp32 weights and EMA."""
    cli = cli_main(["fit", "--config", str(tiny_config(tmp_path, tiny_data)), "--trainer.precision=bf16-mixed",
                    "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1"])
    assert cli.trainer.precision == "bf16-mixed"
    logged = cli.trainer.logged_metrics
    assert {"loss/gen", "loss/disc", "val/paired_ratio_ab"} <= set(logged)
    assert torch.isfinite(torch.stack([torch.as_tensor(v).float() for v in logged.values()])).all()
    state = torch.load(tmp_path / "ckpt/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["gen_ab.head_out.weight"].dtype == torch.float32
    assert state["gen_ab_ema.module.head_out.weight"].dtype == torch.float32
    assert cli.trainer.global_step == 6  # 3 batches, two optimizer steps each


def test_a_few_dozen_steps_lower_the_cycle_loss(tiny_data, tmp_path):
    """Generators of random output at the start: the cycle loss starts high and must fall."""
    config = tiny_config(tmp_path, tiny_data)
    history: list[float] = []

    class Recorder(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            history.append(float(trainer.callback_metrics["loss/cycle_a"] + trainer.callback_metrics["loss/cycle_b"]))

    cli = VitCycleCLI(args=["fit", "--config", str(config), "--trainer.max_epochs=8",
                            "--trainer.check_val_every_n_epoch=8", "--trainer.log_every_n_steps=1"],
                      trainer_defaults={"callbacks": [Recorder()]})
    assert len(history) == 32
    first, last = sum(history[:4]) / 4, sum(history[-4:]) / 4
    assert last < 0.75 * first, (first, last)
    assert cli.trainer.global_step == 64


def _with_workers(config: Path, num_workers: int) -> Path:
    data = yaml.safe_load(config.read_text())
    data["data"]["num_workers"] = num_workers
    config.write_text(yaml.safe_dump(data))
    return config


EPOCHS = ("--trainer.max_epochs=3",)  # 4 batches an epoch, 2 optimizer steps a batch
STEPS = ("--trainer.max_steps=28", "--trainer.max_epochs=10")  # stops mid-epoch 3


@pytest.mark.parametrize(
    ("num_workers", "total", "first", "position"),
    [
        (0, EPOCHS, ("--trainer.max_epochs=2",), [2, 0]),  # at an epoch end (max_epochs: Lightning does not "restart")
        (2, STEPS, ("--trainer.max_steps=16", "--trainer.max_epochs=10"), [2, 0]),  # at an epoch end, two workers
        (2, STEPS, ("--trainer.max_steps=12", "--trainer.max_epochs=10"), [1, 2]),  # mid-epoch, two workers
        (0, (*EPOCHS, "--trainer.limit_train_batches=3"), ("--trainer.max_epochs=2", "--trainer.limit_train_batches=3"), [2, 0]),
    ],
    ids=["epoch-end", "epoch-end-by-steps-workers", "mid-epoch-workers", "limit-train-batches"],
)
def test_resume_gives_the_same_weights_as_a_straight_run(tiny_data, tmp_path, num_workers, total, first, position):
    straight, first_half = tmp_path / "straight", tmp_path / "half"
    cli_main(["fit", "--config", str(_with_workers(tiny_config(straight, tiny_data), num_workers)), *total])
    half_config = _with_workers(tiny_config(first_half, tiny_data), num_workers)
    cli_main(["fit", "--config", str(half_config), *first])
    saved = torch.load(first_half / "ckpt/last.ckpt", weights_only=True)
    assert saved["UnpairedImageDataModule"] == {"train_position": position}  # (epoch, batches of it trained)
    resumed = cli_main(["fit", "--config", str(half_config), *total, f"--ckpt_path={first_half / 'ckpt/last.ckpt'}"])
    straight_ckpt = torch.load(straight / "ckpt/last.ckpt", weights_only=True)
    assert resumed.trainer.global_step == straight_ckpt["global_step"]
    a, b = checkpoint_state(straight / "ckpt/last.ckpt"), checkpoint_state(first_half / "ckpt/last.ckpt")
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, differing[:5]


def test_resume_from_a_checkpoint_written_at_validation_mid_epoch_is_exact(tiny_data, tmp_path):
    """best.ckpt is written at validation end (here after batch 2 of 4): it carries the data position too."""
    total = ["--trainer.max_steps=12", "--trainer.max_epochs=10", "--trainer.val_check_interval=2"]
    cli_main(["fit", "--config", str(tiny_config(tmp_path / "straight", tiny_data)), *total])
    half = tiny_config(tmp_path / "half", tiny_data)
    cli_main(["fit", "--config", str(half), "--trainer.max_steps=6", "--trainer.max_epochs=10",
              "--trainer.val_check_interval=2"])
    best = tmp_path / "half/ckpt/best.ckpt"
    saved = torch.load(best, weights_only=True)
    assert saved["global_step"] == 4 and saved["UnpairedImageDataModule"] == {"train_position": [0, 2]}
    resumed = cli_main(["fit", "--config", str(half), *total, f"--ckpt_path={best}"])
    assert resumed.trainer.global_step == 12
    a, b = checkpoint_state(tmp_path / "straight/ckpt/last.ckpt"), checkpoint_state(tmp_path / "half/ckpt/last.ckpt")
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_non_finite_loss_stops_training_with_a_clear_message(tmp_path):
    module = tiny_cyclegan()
    bad = torch.full((2, 3, 32, 32), float("nan"))
    loader = torch.utils.data.DataLoader([{"a": bad[0], "b": bad[1]}] * 2, batch_size=2)
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at batch 0 .*loss/g_adv_ab.*loss/cycle_a"):
        trainer.fit(module, loader)


class _GraphCounts(pl.Callback):
    """The number of compiled graphs at the end of each training epoch."""

    def __init__(self):
        self.counts: list[int] = []

    def on_train_epoch_end(self, trainer, module):
        from vitcycle.training.compiling import compile_graph_count

        self.counts.append(compile_graph_count())


def _train_two_epochs(compile: str, tmp_path: Path, *callbacks: pl.Callback) -> CycleGAN:
    torch.manual_seed(0)
    module = tiny_cyclegan(compile={"when": compile, "backend": "aot_eager"}, disc_input={"instance_noise": 0.1})
    g = torch.Generator().manual_seed(1)
    items = [{"a": torch.rand(3, 32, 32, generator=g) * 2 - 1, "b": torch.rand(3, 32, 32, generator=g) * 2 - 1}
             for _ in range(4)]
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=list(callbacks))
    trainer.fit(module, torch.utils.data.DataLoader(items, batch_size=2))
    return module


def test_compiled_training_matches_eager_and_compiles_once(tmp_path):
    """compile="always" with the aot_eager backend (no code generation, so it runs on any CPU)."""
    from vitcycle.training.compiling import compile_graph_count

    eager = _train_two_epochs("never", tmp_path)
    assert not eager._compiled
    graphs_before, graphs = compile_graph_count(), _GraphCounts()
    compiled = _train_two_epochs("always", tmp_path, graphs)
    assert compiled._compiled and graphs.counts[0] > graphs_before
    assert graphs.counts[1] == graphs.counts[0]  # nothing compiled in epoch 2: no recompiles in steady state
    logged = compiled.trainer.callback_metrics
    assert logged["compile/first_batch_s"] > 0 and logged["compile/graphs"] == graphs.counts[1]
    # The same losses (of the last batch) within tolerance: compiled kernels round differently, and
    # Adam turns the near-zero gradients of biases before InstanceNorm into lr-sized steps either way.
    for name in ("loss/gen", "loss/disc", "loss/cycle_a", "loss/cycle_b", "loss/g_adv_ab", "loss/d_b"):
        torch.testing.assert_close(logged[name], eager.trainer.callback_metrics[name], atol=1e-3, rtol=1e-3, msg=name)


def test_a_deferred_non_finite_check_still_stops_within_its_interval(tmp_path):
    """finite_check_every=3: the flags stay on the device; a NaN in batch 4 stops training after batch 5."""
    module = tiny_cyclegan(finite_check_every=3)
    good = torch.zeros(3, 32, 32)
    items = [{"a": good, "b": good}] * 4 + [{"a": torch.full_like(good, float("nan")), "b": good}] + [{"a": good, "b": good}] * 3
    loader = torch.utils.data.DataLoader(items, batch_size=1)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at one of batches 3-5 .*loss/cycle_a"):
        trainer.fit(module, loader)
    assert module.batches_seen == 5  # stopped in batch 5, before its optimizer steps, not at the end of the epoch


def test_a_nan_after_the_last_periodic_check_is_never_saved(tmp_path):
    """finite_check_every=50, a NaN in the last of 6 batches: the checkpoint at the epoch end is refused."""
    module = tiny_cyclegan(finite_check_every=50)
    good = torch.zeros(3, 32, 32)
    items = [{"a": good, "b": good}] * 5 + [{"a": torch.full_like(good, float("nan")), "b": good}]
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="last", save_on_train_epoch_end=True)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, callbacks=[checkpoint],
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at one of batches 0-5 "):
        trainer.fit(module, torch.utils.data.DataLoader(items, batch_size=1))
    assert not list(tmp_path.glob("*.ckpt"))


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    code = main(["fit", "--config", str(ROOT / "configs/quickstart.yaml"), f"--data.dir_a={tmp_path / 'nope'}",
                 "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("vitcycle fit: error:") and "nope" in err[-1]


def test_checkpoints_follow_default_root_dir_and_a_new_run_never_overwrites_them(tiny_data, tmp_path, capsys):
    config = yaml.safe_load(tiny_config(tmp_path, tiny_data).read_text())
    del config["trainer"]["logger"]  # as the shipped configs: Lightning's logger, checkpoint callbacks without dirpath
    for callback in config["trainer"]["callbacks"]:
        callback["init_args"].pop("dirpath", None)
    path = tmp_path / "shipped_like.yaml"
    path.write_text(yaml.safe_dump(config))
    root = tmp_path / "elsewhere"
    args = ["fit", "--config", str(path), f"--trainer.default_root_dir={root}"]
    assert main(args) == 0
    last = root / "checkpoints/last.ckpt"
    assert last.is_file() and list((root / "lightning_logs/version_0").glob("events.out.tfevents.*"))
    assert not (tmp_path / "run/checkpoints").exists()  # the config's own default_root_dir is not used
    before = last.read_bytes()
    assert main(args) == 2  # a second fresh run into the same folder
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"vitcycle fit: error: {root / 'checkpoints'} already holds checkpoints (")
    assert f"resume with --ckpt_path {last}" in err
    assert last.read_bytes() == before
    assert main([*args, "--trainer.max_epochs=2", f"--ckpt_path={last}"]) == 0  # resuming writes there
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_generator_img_size_follows_data_image_size(tiny_data, tmp_path):
    config = yaml.safe_load(tiny_config(tmp_path, tiny_data).read_text())
    config["model"]["gen_ab"] = {"class_path": "vitcycle.models.vit_tiny_p8",  # a named size: 64 px
                                 "init_args": {"encoder_kwargs": TINY_VIT["encoder_kwargs"], "encoder_indices": [0, 1]}}
    path = tmp_path / "sized.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = cli_main(["fit", "--config", str(path), "--trainer.fast_dev_run=1"])  # the data: 32 px
    assert cli.model.gen_ab.img_size == 32 and cli.model.gen_ba.img_size == 32
    assert cli.model.hparams.gen_ab["init_args"]["img_size"] == 32  # what a resume compares against


def test_a_folder_of_only_corrupt_images_is_one_line_from_a_worker(tiny_data, tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for k in range(4):
        (corrupt / f"{k}.png").write_bytes(b"not a png")
    config = _with_workers(tiny_config(tmp_path, tiny_data), 1)  # the error is raised in a worker process
    code = main(["fit", "--config", str(config), f"--data.dir_a={corrupt}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == f"vitcycle fit: error: none of the 4 images of domain A can be read (folder(s): {corrupt})"
    assert not any("Traceback" in line or "Caught" in line for line in err)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_ddp_with_two_cpu_processes(tiny_data, tmp_path):
    """Two gloo processes train, and validation figures are means over both processes' images."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vitcycle.data.datamodule import UnpairedImageDataModule

    config = tiny_config(tmp_path, tiny_data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "vitcycle.cli", "fit", "--config", str(config), "--trainer.strategy=ddp_find_unused_parameters_true",
         "--trainer.devices=2", "--trainer.max_epochs=1"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    assert "sync_dist" not in result.stderr  # Lightning's warning for an epoch-level value logged unsynced
    ckpt = torch.load(tmp_path / "ckpt/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4  # 16 items / 2 ranks / batch 4 = 2 batches, 2 optimizer steps each

    # val/identity_l1 depends on the data only: over all 8 pairs, not over rank 0's 4 (DistributedSampler: 0, 2, 4, 6)
    data = UnpairedImageDataModule(str(tiny_data / "trainA"), str(tiny_data / "trainB"), val_pairs=str(tiny_data / "pairs_val.csv"),
                                   image_size=32, batch_size=8, num_workers=0)
    data.setup("fit")
    pairs = next(iter(data.val_dataloader()))
    per_pair = (pairs["a"] - pairs["b"]).abs().mean((1, 2, 3))  # (8,)
    acc = EventAccumulator(str(tmp_path / "run/tb/version_0"))
    acc.Reload()
    logged = acc.Scalars("val/identity_l1")[-1].value
    assert len(per_pair) == 8 and per_pair[::2].mean().item() != pytest.approx(per_pair.mean().item(), abs=1e-4)
    assert logged == pytest.approx(per_pair.mean().item(), abs=1e-5)


def test_ema_follows_the_warmed_up_decay():
    """EMA after updates with weights w_1, w_2, w_3: a copy of w_1, then lerps with decay min(d, (1+n)/(10+n))."""
    from vitcycle.training.ema import GeneratorEMA

    model = torch.nn.Linear(1, 1, bias=False)
    ema = GeneratorEMA(model, decay=0.5)
    expected = None
    for n, w in enumerate([1.0, 3.0, 7.0]):
        with torch.no_grad():
            model.weight.fill_(w)
        ema.update(model)
        if expected is None:
            expected = w
        else:
            d = min(0.5, (1 + n) / (10 + n))  # n updates averaged so far
            expected = d * expected + (1 - d) * w
        assert ema.module.weight.item() == pytest.approx(expected)
        assert ema.n_averaged.item() == n + 1
    assert not any(p.requires_grad for p in ema.parameters())
    assert set(ema.state_dict()) == {"module.weight", "n_averaged"}  # AveragedModel's keys: old checkpoints load


def test_ema_update_reads_nothing_on_the_host():
    """No `.item()` (aten._local_scalar_dense) in an update: on a GPU that would be a sync per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from vitcycle.training.ema import GeneratorEMA

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    model = ViTTranslator(**TINY_VIT)
    ema = GeneratorEMA(model, decay=0.99)
    ema.update(model)
    with Ops() as ops:
        ema.update(model)
    assert ops.names and not [name for name in ops.names if "_local_scalar_dense" in name]
    # The other branch, taken on a GPU: on the meta device any host read would raise.
    meta_model, meta_ema = ViTTranslator(**TINY_VIT).to("meta"), GeneratorEMA(model, decay=0.99).to("meta")
    with Ops() as ops:
        meta_ema.update(meta_model)
    assert "aten._foreach_mul_.Tensor" in ops.names and not [name for name in ops.names if "_local_scalar_dense" in name]


def test_learning_rate_is_constant_then_decays_linearly_to_zero_and_stays_there():
    module = tiny_cyclegan(schedule={"decay_start_epoch": 2, "decay_epochs": 3})
    (opt_gen, _), (scheduler, _) = module.configure_optimizers()
    lrs = []
    for _ in range(8):
        lrs.append(opt_gen.param_groups[0]["lr"])
        scheduler.step()
    base = lrs[0]
    assert lrs == pytest.approx([base, base, 0.75 * base, 0.5 * base, 0.25 * base, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("identity", [0.5, 0.0])
def test_generator_step_gives_the_losses_of_separate_generator_calls(identity):
    """The step batches the identity passes into the other generator calls (3 calls, not 5): the same losses."""
    torch.manual_seed(0)
    module = tiny_cyclegan(identity={"weight": identity})
    real_a, real_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1  # (B, 3, H, W)

    with torch.no_grad():
        _, g, fake_a, fake_b = module._generator_step(real_a, real_b)
        gen_ab, gen_ba = module.gen_ab, module.gen_ba
        ref_fake_b, ref_fake_a = gen_ab(real_a), gen_ba(real_b)
        ref = {"loss/cycle_a": F.l1_loss(gen_ba(ref_fake_b), real_a), "loss/cycle_b": F.l1_loss(gen_ab(ref_fake_a), real_b),
               "loss/g_adv_ab": module.g_loss_fn(module.disc_b(ref_fake_b)),
               "loss/g_adv_ba": module.g_loss_fn(module.disc_a(ref_fake_a))}
        if identity:
            ref |= {"loss/idt_a": F.l1_loss(gen_ba(real_a), real_a), "loss/idt_b": F.l1_loss(gen_ab(real_b), real_b)}
    assert set(g) == set(ref) | {"loss/gen"}
    for name, value in ref.items():
        assert g[name].item() == pytest.approx(value.item(), rel=1e-5), name
    torch.testing.assert_close(fake_b, ref_fake_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fake_a, ref_fake_a, atol=1e-5, rtol=1e-5)


class _RecordingDisc(torch.nn.Module):
    """A discriminator that remembers every input it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.disc = PatchDiscriminator(**TINY_DISC)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.disc(x)


@pytest.mark.parametrize("std", [0.0, 0.1])
def test_instance_noise_reaches_every_discriminator_input(std):
    disc_a, disc_b = _RecordingDisc(), _RecordingDisc()
    identity_start = {**TINY_VIT, "global_residual": True}  # a new generator maps an image to (nearly) itself
    module = CycleGAN(ViTTranslator(**identity_start), ViTTranslator(**identity_start), disc_a, disc_b,
                      disc_input=DiscriminatorInput(instance_noise=std))
    flat = torch.zeros(3, 32, 32)  # real images without any pixel noise
    loader = torch.utils.data.DataLoader([{"a": flat, "b": flat}] * 8, batch_size=8)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    # generator step: the fake; discriminator step: one batch of the real images, then the pooled fakes
    assert [len(x) for x in disc_a.inputs] == [len(x) for x in disc_b.inputs] == [8, 16]
    real_b_seen, pooled_fake_b_seen = disc_b.inputs[1].split(8)  # (8, 3, 32, 32) each
    assert real_b_seen.std().item() == pytest.approx(std, abs=0.005)
    assert real_b_seen.mean().item() == pytest.approx(0.0, abs=0.005)
    # the fakes too: a new generator maps a flat image to (nearly) itself, so what varies is the noise
    for fake_seen in (disc_b.inputs[0], pooled_fake_b_seen):
        assert fake_seen.std().item() == pytest.approx(std, abs=0.01)
    if std > 0:  # fresh noise for every input, drawn from the step's own generator
        assert not torch.equal(disc_b.inputs[1], disc_a.inputs[1])
        assert not torch.equal(real_b_seen, pooled_fake_b_seen)


def test_batched_passes_give_the_losses_of_one_pass_per_image_set():
    """gen_ba and each discriminator see real and fake images in one call; the losses must not change."""
    from vitcycle.training.losses import lsgan_d_loss, lsgan_g_loss

    torch.manual_seed(0)
    module = tiny_cyclegan(disc_input={"pool_size": 0})  # random output at init, so the passes differ
    real_a, real_b = torch.rand(2, 3, 3, 32, 32) * 2 - 1  # (3, 3, 32, 32) each
    with torch.no_grad():
        _, g, fake_a, fake_b = module._generator_step(real_a, real_b)
        _, d, _ = module._discriminator_step(real_a, real_b, fake_a, fake_b)
        assert torch.allclose(fake_a, module.gen_ba(real_b), atol=1e-5)
        assert g["loss/cycle_a"].item() == pytest.approx(F.l1_loss(module.gen_ba(fake_b), real_a).item(), rel=1e-5)
        assert g["loss/g_adv_ba"].item() == pytest.approx(lsgan_g_loss(module.disc_a(fake_a)).item(), rel=1e-5)
        expected_d_b = lsgan_d_loss(module.disc_b(real_b), module.disc_b(fake_b))
        assert d["loss/d_b"].item() == pytest.approx(expected_d_b.item(), rel=1e-5)


def test_source_negatives_make_each_discriminator_call_the_other_domain_fake():
    """source_negatives: disc_a's fakes are its pooled fakes and the real B images (disc_b alike);
    the gradient penalty still pairs each real image with one generated fake."""
    from vitcycle.training.losses import lsgan_d_loss

    torch.manual_seed(0)
    module = tiny_cyclegan(disc_input={"pool_size": 0, "source_negatives": True}, gradient_penalty={"weight": 1.0})
    real_a, fake_a, fake_b = torch.rand(3, 3, 3, 32, 32) * 2 - 1  # (3, 3, 32, 32) each
    real_b = torch.ones(3, 3, 32, 32)  # flat white: unlike the noise images to a random discriminator
    _, d, preds = module._discriminator_step(real_a, real_b, fake_a, fake_b)
    with torch.no_grad():
        expected_d_a = lsgan_d_loss(module.disc_a(real_a), module.disc_a(torch.cat([fake_a, real_b])))
        without_negatives = lsgan_d_loss(module.disc_a(real_a), module.disc_a(fake_a))
        expected_d_b = lsgan_d_loss(module.disc_b(real_b), module.disc_b(torch.cat([fake_b, real_a])))
    assert d["loss/d_a"].item() == pytest.approx(expected_d_a.item(), rel=1e-5)
    assert d["loss/d_a"].item() != pytest.approx(without_negatives.item(), rel=1e-4)
    assert d["loss/d_b"].item() == pytest.approx(expected_d_b.item(), rel=1e-5)
    assert preds["fake_a"][0].shape[0] == 6  # 3 fakes + 3 real B
    expected = d["loss/d_a"] + d["loss/d_b"] + d["loss/gp_a"] + d["loss/gp_b"]
    assert d["loss/disc"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_warm_up_ramps_the_learning_rates_and_the_identity_weight_fades(tiny_data, tmp_path):
    """schedule.warmup_batches=8: after batch k (k = 1..4) the rates are k/8 of the configured ones;
    identity.fade_batches=4 takes the identity loss from 0.5 to 0 over the first 4 batches."""
    weights: list[float] = []

    class Recorder(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            weights.append(module.identity_weight())

    cli = VitCycleCLI(args=["fit", "--config", str(tiny_config(tmp_path, tiny_data, identity={"weight": 0.5, "fade_batches": 4},
                                                                 schedule={"warmup_batches": 8}))],
                      trainer_defaults={"callbacks": [Recorder()]})
    opt_gen, opt_disc = cli.trainer.optimizers
    assert opt_gen.param_groups[0]["lr"] == pytest.approx(6e-4 * 4 / 8)
    assert opt_disc.param_groups[0]["lr"] == pytest.approx(4e-4 * 4 / 8)
    assert weights == pytest.approx([0.5, 0.375, 0.25, 0.125])
    assert cli.trainer.global_step == 8  # 4 batches: the warm-up (8 batches) was still running


def test_cycle_b_weight_applies_to_the_b_cycle_alone():
    torch.manual_seed(0)
    module = tiny_cyclegan(cycle_a={"weight": 5.0}, cycle_b={"weight": 1.0}, identity={"weight": 0.0})
    real_a, real_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1  # (B, 3, H, W)
    with torch.no_grad():
        loss, g, _, _ = module._generator_step(real_a, real_b)
    expected = g["loss/g_adv_ab"] + g["loss/g_adv_ba"] + 5.0 * g["loss/cycle_a"] + 1.0 * g["loss/cycle_b"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert g["loss/cycle_b"].item() > 0.01  # a random generator: the weight makes a difference


@pytest.mark.parametrize(("cycle", "cycle_l1_args"), [("b", {"space": "luma"}), ("b", {"downsample": 4}),
                                                       ("a", {"space": "luma"}), ("a", {"downsample": 4})])
def test_cycle_options_change_their_cycle_alone(cycle, cycle_l1_args):
    """cycle_b: {space: luma} / {downsample: 4} (cycle_a alike): that cycle is the luminance / block-mean L1
    of the same reconstruction; the other cycle stays the RGB pixel L1."""
    other = "a" if cycle == "b" else "b"
    losses = {}
    for name, options in (("plain", {}), ("option", {f"cycle_{cycle}": cycle_l1_args})):
        torch.manual_seed(0)
        module = tiny_cyclegan(identity={"weight": 0.0}, **options)
        torch.manual_seed(1)
        real = {"a": torch.rand(2, 3, 32, 32) * 2 - 1, "b": torch.rand(2, 3, 32, 32) * 2 - 1}  # (B, 3, H, W) each
        with torch.no_grad():
            _, g, fake_a, fake_b = module._generator_step(real["a"], real["b"])
            rec = {"a": module.gen_ba(fake_b), "b": module.gen_ab(fake_a)}  # (B, 3, H, W) each
        losses[name] = g, rec[cycle], real[cycle]
    (g_plain, rec, real), (g_option, _, _) = losses["plain"], losses["option"]
    assert g_option[f"loss/cycle_{other}"].item() == pytest.approx(g_plain[f"loss/cycle_{other}"].item())
    assert g_option[f"loss/cycle_{cycle}"].item() == pytest.approx(cycle_l1(rec, real, **cycle_l1_args).item(), rel=1e-5)
    assert g_option[f"loss/cycle_{cycle}"].item() < g_plain[f"loss/cycle_{cycle}"].item()  # random images: part of the error is hue / detail


@pytest.mark.parametrize(("options", "message"), [
    ({"cycle_b": {"space": "lab"}}, r"cycle space 'lab' must be one of 'rgb', 'luma'"),
    ({"cycle_b": {"downsample": 0}}, r"cycle.downsample \(0\) must be >= 1"),
    ({"cycle_a": {"weight": -1.0}}, r"cycle.weight \(-1.0\) must be >= 0"),
    ({"identity": {"fade_batches": -5}}, r"identity.fade_batches \(-5\) must be >= 0"),
    ({"disc_input": {"instance_noise": -0.1}}, r"disc_input.instance_noise \(-0.1\) must be >= 0"),
    ({"schedule": {"warmup_batches": -1}}, r"schedule.warmup_batches \(-1\) must be >= 0"),
    ({"schedule": {"decay_epochs": -1}}, r"schedule.decay_epochs \(-1\) must be >= 0"),
    ({"gradient_penalty": {"weight": -1.0}}, r"gradient_penalty.weight \(-1.0\) must be >= 0"),
    ({"gan_loss": "ralsgan"}, r"gan_loss 'ralsgan' must be one of 'lsgan', 'hinge', 'vanilla'"),
    ({"finite_check_every": 0}, r"finite_check_every \(0\) must be >= 1"),
])
def test_bad_options_are_refused_naming_their_group(options, message):
    with pytest.raises(VitcycleError, match=message):
        tiny_cyclegan(**options)


def test_patch_nce_replaces_the_b_cycle():
    """cycle_b.weight 0 + lambda_nce_b: no B cycle (nor its generator call), CUT's loss on gen_ba instead,
    and its projection heads train with the generators."""
    torch.manual_seed(0)
    module = tiny_cyclegan(cycle_a={"weight": 5.0}, cycle_b={"weight": 0.0}, lambda_nce_b=2.0, identity={"weight": 0.0})
    real_a, real_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1  # (B, 3, H, W)
    calls = []
    module.gen_ab.register_forward_hook(lambda *_: calls.append("gen_ab"))
    loss, g, _, _ = module._generator_step(real_a, real_b)
    assert "loss/cycle_b" not in g and calls == ["gen_ab"]  # fake_b only: no rebuilt B
    expected = g["loss/g_adv_ab"] + g["loss/g_adv_ba"] + 5.0 * g["loss/cycle_a"] + 2.0 * g["loss/nce_b"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert g["loss/nce_b"].item() > 0.1
    loss.backward()
    assert all(p.grad is not None for p in module.patch_nce_b.parameters())
    opt_gen, _ = module.configure_optimizers()[0]
    trained = {id(p) for group in opt_gen.param_groups for p in group["params"]}
    assert {id(p) for p in module.patch_nce_b.parameters()} <= trained
    with pytest.raises(VitcycleError, match="lambda_nce_b needs a ViTTranslator gen_ba .* not ResnetGenerator; set lambda_nce_b: 0"):
        tiny_cyclegan(gen_ba=ResnetGenerator(ngf=8, n_blocks=1), lambda_nce_b=1.0)
    with pytest.raises(VitcycleError, match=r"lambda_nce_b \(-1.0\) must be >= 0"):
        tiny_cyclegan(lambda_nce_b=-1.0)


def test_fit_with_patch_nce_writes_a_checkpoint_that_translates(tiny_data, tmp_path):
    from vitcycle.inference.translator import Translator

    cli = VitCycleCLI(args=["fit", "--config", str(tiny_config(tmp_path, tiny_data, cycle_b={"weight": 0.0}, lambda_nce_b=1.0))])
    assert "loss/nce_b" in cli.trainer.logged_metrics and "loss/cycle_b" not in cli.trainer.logged_metrics
    x = torch.rand(1, 3, 32, 32) * 2 - 1  # (1, 3, H, W)
    for direction in ("a2b", "b2a"):  # the heads' weights in the checkpoint do not disturb loading
        assert Translator.from_checkpoint(tmp_path / "ckpt" / "last.ckpt", direction, device="cpu").translate_tensor(x).shape == x.shape


@pytest.mark.parametrize(("overlays", "size"), [([], 64), (["configs/selfie2anime_cpu128.yaml"], 128)])
def test_selfie2anime_cpu_configs_run_three_batches(judge_data, judge_file, tmp_path, overlays, size):
    """The shipped real-data CPU config as it is (networks, losses, validation with a judge), and its 128 px
    overlay, on the built-in data with a held-out split, for three batches."""
    from vitcycle.data.splits import make_split

    run = tmp_path / "run"  # the config's run folder (split, judge, checkpoints, logs) moved here
    make_split(judge_data / "trainA", judge_data / "trainB", run / "split", n_test=10, seed=0)
    shutil.copy(judge_file, run / "judge.pt")
    config = tmp_path / "selfie2anime_cpu.yaml"
    text = (ROOT / "configs/selfie2anime_cpu.yaml").read_text()
    config.write_text(text.replace("runs/selfie2anime_cpu", str(run)).replace("save_dir: runs", f"save_dir: {run}"))
    cli = cli_main([
        "fit", "--config", str(config), *[f"--config={ROOT / o}" for o in overlays], "--trainer.max_steps=6",
        "--trainer.val_check_interval=3", f"--trainer.default_root_dir={run}", "--trainer.enable_progress_bar=false",
        f"--data.dir_a={judge_data / 'trainA'}", f"--data.dir_b={judge_data / 'trainB'}", "--data.num_workers=0",
    ])
    assert cli.trainer.global_step == 6  # 3 batches x (generator + discriminator step)
    assert cli.datamodule.image_size == size and cli.model.gen_ab.img_size == size
    assert cli.model.cycle_b.space == "luma" and cli.model.disc_input.source_negatives  # the adopted recipe
    assert 0.0 <= float(cli.trainer.logged_metrics["val/domain_ab"]) <= 1.0
    assert (run / "checkpoints/last.ckpt").is_file() and (run / "checkpoints/best.ckpt").is_file()


def test_resume_from_a_bad_file_or_another_architecture_is_one_clear_error(tiny_data, tmp_path, capsys):
    config = tiny_config(tmp_path, tiny_data)
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(b"\x01\x02 not a checkpoint")
    for path, message in ((tmp_path / "missing.ckpt", "does not exist"), (noise, "it is not a PyTorch file")):
        assert main(["fit", "--config", str(config), f"--ckpt_path={path}"]) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err and "Traceback" not in err
    cli_main(["fit", "--config", str(config)])  # a real checkpoint of the tiny architecture
    ckpt = tmp_path / "ckpt/last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert main(["fit", "--config", str(config), f"--ckpt_path={truncated}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"vitcycle fit: error: cannot read checkpoint {truncated}") and "Traceback" not in "".join(err)
    wider = {"class_path": TINY_GEN["class_path"], "init_args": {**TINY_VIT, "head_dim": 32}}
    other = tiny_config(tmp_path / "other", tiny_data, gen_ab=wider, gen_ba=wider)
    before = ckpt.read_bytes()
    assert main(["fit", "--config", str(other), f"--ckpt_path={ckpt}"]) == 2
    err = capsys.readouterr().err
    assert f"--ckpt_path {ckpt} was trained with other networks (gen_ab, gen_ba)" in err
    assert ckpt.read_bytes() == before
    # the same networks written as a named size (as the shipped configs now do) are the same architecture
    named = {"class_path": "vitcycle.models.vit_tiny_p8", "init_args": dict(TINY_VIT)}
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert check_resume(str(ckpt), {**saved, "gen_ab": named, "gen_ba": named}) == []


def test_changed_hyperparameters_on_resume_are_applied_and_said(tiny_data, tmp_path, capsys):
    config = tiny_config(tmp_path, tiny_data)
    cli_main(["fit", "--config", str(config)])
    resumed = cli_main(["fit", "--config", str(config), "--trainer.max_epochs=2", "--model.cycle_a.weight=20",
                        "--model.gan_loss=hinge", f"--ckpt_path={tmp_path / 'ckpt/last.ckpt'}"])
    assert resumed.model.cycle_a.weight == 20 and resumed.model.hparams.gan_loss == "hinge"
    assert resumed.trainer.global_step == 16  # it did resume: 2 epochs of 4 batches in all
    err = capsys.readouterr().err
    assert "cycle_a: {'weight': 5.0, 'space': 'rgb', 'downsample': 1} -> {'weight': 20.0, 'space': 'rgb', 'downsample': 1}" in err
    assert "gan_loss: lsgan -> hinge" in err


def test_a_resume_on_other_data_is_said_and_a_hostile_last_is_one_line(tiny_data, judge_data, tmp_path, capsys):
    config = tiny_config(tmp_path, tiny_data)
    cli_main(["fit", "--config", str(config)])
    last = tmp_path / "ckpt/last.ckpt"
    cli_main(["fit", "--config", str(config), "--trainer.max_epochs=2", f"--data.dir_a={judge_data / 'trainA'}",
              f"--ckpt_path={last}"])
    err = capsys.readouterr().err
    assert f"data.dir_a: {tiny_data / 'trainA'} -> {judge_data / 'trainA'}" in err and "data.dir_b" not in err
    # `--ckpt_path last` (Lightning's keyword) reads the run's last.ckpt as safely as a named path
    last.write_bytes(b"PK\x03\x04 a forged zip, no checkpoint")
    assert main(["fit", "--config", str(config), "--trainer.max_epochs=3", "--ckpt_path=last"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"vitcycle fit: error: cannot read checkpoint {last}") and "Traceback" not in "".join(err)
