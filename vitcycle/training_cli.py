"""LightningCLI of vitcycle: `vitcycle fit|validate|test|predict`, configured from YAML."""

from __future__ import annotations

from pytorch_lightning.cli import LightningCLI

from vitcycle.data import UnpairedImageDataModule
from vitcycle.module import CycleGAN


class VitCycleCLI(LightningCLI):
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


class PretrainCLI(LightningCLI):
    """LightningCLI for `MaskedInpainting` on an `UnpairedImageDataModule`: `vitcycle pretrain` (fit only).

    The generator is chosen in YAML with `class_path`/`init_args`, as for `vitcycle fit`; the
    optimizer is the module's `OptimizerCallable` argument.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": LightningCLI.subcommands()["fit"]}

    def __init__(self, *args, **kwargs) -> None:
        from vitcycle.pretrain import MaskedInpainting

        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(MaskedInpainting, UnpairedImageDataModule, *args, **kwargs)
