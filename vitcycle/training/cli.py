"""LightningCLI of vitcycle: `vitcycle fit|validate|test|predict`, configured from YAML."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.cli import LightningCLI

from vitcycle.data.datamodule import UnpairedImageDataModule
from vitcycle.errors import VitcycleError
from vitcycle.training.checkpoint_io import AtomicCheckpointIO
from vitcycle.training.cyclegan import CycleGAN
from vitcycle.training.options import migrate_flat
from vitcycle.training.preemption import Preemption, last_checkpoint_path
from vitcycle.training.run_lock import hold_run_lock

NETWORKS = ("gen_ab", "gen_ba", "disc_a", "disc_b")
LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


def _differs(saved: Any, given: Any) -> bool:
    """Whether two hyperparameter values differ; dicts only on the keys both have (an older
    checkpoint lacks options added since, which then had their defaults)."""
    if isinstance(saved, dict) and isinstance(given, dict):
        return any(_differs(saved[k], given[k]) for k in saved.keys() & given.keys())
    return json.dumps(saved, default=str) != json.dumps(given, default=str)  # tuples and lists compare equal


def _built_spec(spec: Any, source: Path) -> Any:
    """What a generator spec builds, as the generator records it (a named size such as vit_tiny_p8
    and the ViTTranslator arguments it stands for compare equal); the spec itself if it cannot be
    built. Built once per resume, randomly initialised (no weights are read)."""
    from vitcycle.checkpoint import build_generator

    try:
        return build_generator(spec, source).spec()
    except (VitcycleError, AttributeError, TypeError, RuntimeError):
        return spec


def check_resume(path: str, given: dict, given_data: dict | None = None) -> list[str]:
    """The resume policy for `fit --ckpt_path`: the checkpoint must be readable (read safely) and
    of the architecture the config gives; any other hyperparameter the config changes is applied,
    and returned as "name: old -> new" lines so that the change is said, not silent; so are
    changed data settings (`given_data`: other folders, another size), as "data.name: old -> new"."""
    from vitcycle.checkpoint import safe_load

    ckpt = safe_load(path, hint="pass a .ckpt written by `vitcycle fit` to --ckpt_path")
    saved = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(saved, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise VitcycleError(f"--ckpt_path {path} is not a checkpoint of `vitcycle fit` (no hyper_parameters/state_dict)")
    saved, removed = migrate_flat(saved)  # a checkpoint from before the option groups
    source = Path(path)
    effective = {k: (_built_spec(saved[k], source), _built_spec(given[k], source)) if k.startswith("gen_") else (saved[k], given[k])
                 for k in NETWORKS if k in saved and k in given}
    nets = [k for k, (old, new) in effective.items() if _differs(old, new)]
    if nets:
        raise VitcycleError(
            f"--ckpt_path {path} was trained with other networks ({', '.join(nets)}) than the --config given; "
            "resume with the config it was trained with"
        )
    changed = [f"{k}: {saved[k]} -> {given[k]}" for k in sorted(given.keys() & saved.keys())
               if k not in NETWORKS and not k.startswith("_") and _differs(saved[k], given[k])]
    data = ckpt.get("datamodule_hyper_parameters")
    if isinstance(data, dict) and given_data:
        changed += [f"data.{k}: {data[k]} -> {given_data[k]}" for k in sorted(given_data.keys() & data.keys())
                    if not k.startswith("_") and _differs(data[k], given_data[k])]
    return changed + [f"{option} -> removed from vitcycle (benchmarks/RESULTS.md, the ledger)" for option in removed]


def link_image_size(section: Any) -> None:
    """The generators' `img_size` follows `data.image_size`: a ViT builds its position-embedding grid
    for it (other sizes would be interpolated on every step). Generators without `img_size`
    (ResNet-9) are left alone. `section` is one subcommand's parsed config."""
    size = section["data"]["image_size"]
    for name, value in vars(section["model"]).items():  # gen_ab, gen_ba (fit) or generator (pretrain), ...
        init_args = getattr(value, "init_args", None)
        if init_args is not None and "img_size" in init_args:
            if init_args["img_size"] != size:
                print(f"model.{name} img_size {init_args['img_size']} -> {size} (follows data.image_size)", file=sys.stderr)
            init_args["img_size"] = size


class _RunFolder:
    """`fit` writes into `trainer.default_root_dir`, and a new run never overwrites checkpoints;
    the generators' `img_size` is linked to `data.image_size` (`link_image_size`).

    Checkpoint callbacks without a `dirpath` write to `<default_root_dir>/checkpoints` (Lightning's
    own default is a new versioned folder per run, which `make` and the README could not name);
    the TensorBoard logs go to Lightning's default logger there too. A fit without `--ckpt_path`
    into a checkpoint folder that already holds .ckpt files is refused before any work, and so is a
    fit into a folder another fit is using (`run_lock`). Every fit saves atomically
    (`checkpoint_io`) and stops on SIGTERM, SIGUSR1 or Ctrl+C with a resumable last.ckpt (`preemption`).
    """

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is not None:
            link_image_size(self.config[subcommand])

    def before_fit(self) -> None:
        trainer = self.trainer
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath is None:
                callback.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default: not atomic on a full disk
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if not any(isinstance(c, Preemption) for c in trainer.callbacks):
            trainer.callbacks.append(Preemption())  # a stop signal saves last.ckpt and exits 128 + its number
        if trainer.global_rank == 0:  # one run per folder: before the checkpoint check, so no race passes it
            for folder in sorted({Path(c.dirpath) for c in trainer.checkpoint_callbacks}):
                hold_run_lock(folder)
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path == "last":  # Lightning's keyword: the file it would resume is read safely and checked first
            last = last_checkpoint_path(trainer)
            if last.is_file():
                check_resume(str(last), self.config[self.subcommand]["model"].as_dict())
        if ckpt_path:
            return
        for folder in sorted({Path(c.dirpath) for c in trainer.checkpoint_callbacks}):
            found = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
            if found:
                last = folder / "last.ckpt"
                resume = f"resume with --ckpt_path {last}, " if last.is_file() else ""
                raise VitcycleError(
                    f"{folder} already holds checkpoints ({', '.join(found[:3])}) that a new run would overwrite; "
                    f"{resume}move them away, or train into another --trainer.default_root_dir"
                )


class VitCycleCLI(_RunFolder, LightningCLI):
    """LightningCLI for a `CycleGAN` trained on an `UnpairedImageDataModule`: `fit` and `validate`.

    Generators and discriminators are chosen in YAML with `class_path`/`init_args`; the two
    optimizers are `OptimizerCallable` arguments of the module, so `--optimizer` is not used.
    Testing and prediction have no loop here: `vitcycle eval` and `vitcycle translate` do that.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: args for name, args in LightningCLI.subcommands().items() if name in ("fit", "validate")}

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(CycleGAN, UnpairedImageDataModule, *args, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Replaces LightningCLI's, which overwrites the given config with the checkpoint's
        hyperparameters, so that a resume silently trained the checkpoint's networks and dropped
        changed flags. Here: another architecture is refused, other changes are applied and said."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in LIGHTNING_CKPT_KEYWORDS:
            return
        config = self.config[subcommand]
        changes = check_resume(ckpt_path, config["model"].as_dict(), config["data"].as_dict())
        if changes:
            print(f"resuming {ckpt_path} with these hyperparameters changed by the config or flags:", file=sys.stderr)
            for line in changes:
                print(f"  {line}", file=sys.stderr)


class PretrainCLI(_RunFolder, LightningCLI):
    """LightningCLI for `MaskedInpainting` on an `UnpairedImageDataModule`: `vitcycle pretrain` (fit only).

    The generator is chosen in YAML with `class_path`/`init_args`, as for `vitcycle fit`; the
    optimizer is the module's `OptimizerCallable` argument.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": LightningCLI.subcommands()["fit"]}

    def __init__(self, *args, **kwargs) -> None:
        from vitcycle.training.pretrain import MaskedInpainting

        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(MaskedInpainting, UnpairedImageDataModule, *args, **kwargs)
