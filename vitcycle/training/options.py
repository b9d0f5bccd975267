"""The CycleGAN's option groups: small typed dataclasses that YAML fills and that check themselves.

    model:
      cycle_b: {weight: 5.0, space: luma, downsample: 4}     # or --model.cycle_b.weight 5
      identity: {weight: 0.5, fade_batches: 400}
      disc_input: {source_negatives: true, instance_noise: 0.1}

Schedules are pure functions of the batch or epoch count, so a resumed run continues exactly.
`migrate_flat` turns the flat hyperparameters of checkpoints written before the groups into them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from vitcycle.errors import VitcycleError
from vitcycle.training.compiling import CompileWhen
from vitcycle.training.diff_augment import DiffAugmentName, check_policy
from vitcycle.training.losses import CycleSpace


def _at_least(group: str, **values: float) -> None:
    for name, (value, low) in values.items():
        if value < low:
            raise VitcycleError(f"{group}.{name} ({value}) must be >= {low}")


def _faded(value: float, batch: int, fade_batches: int) -> float:
    """`value` at `batch`, falling linearly to 0 over `fade_batches` batches (0: never faded)."""
    if fade_batches <= 0:
        return value
    return value * max(0.0, 1.0 - batch / fade_batches)


@dataclass(frozen=True)
class CycleLoss:
    """One cycle's L1 (Eq. 2 of Zhu et al. 2017): `cycle_a` rebuilds A from its translation, `cycle_b` B.

    Args:
        weight: its weight in the generator objective (paper: 10). A `cycle_b` of 0 skips the B cycle's
            generator call (with CUT's PatchNCE in its place, say).
        space: "rgb", or "luma": compare luminance alone, so a translation need not carry its source's
            hues to be rebuilt (an anime face's pink hair on a photo).
        downsample: compare means of blocks this many pixels wide (1: pixels), so a translation need not
            carry its source's finer detail (an anime face's outlined eyes).
    """

    weight: float = 10.0
    space: CycleSpace = "rgb"
    downsample: int = 1

    def __post_init__(self) -> None:
        _at_least("cycle", weight=(self.weight, 0), downsample=(self.downsample, 1))
        if self.space not in get_args(CycleSpace):
            raise VitcycleError(f"cycle space {self.space!r} must be one of {', '.join(map(repr, get_args(CycleSpace)))}")


@dataclass(frozen=True)
class IdentityLoss:
    """The identity L1 (Sec. 5.2 of the paper): ||G_ab(b) - b||_1 + ||G_ba(a) - a||_1.

    Args:
        weight: relative to `cycle_a.weight`, as the paper's 0.5 * lambda; 0 skips its generator passes.
        fade_batches: if > 0, the weight falls linearly to 0 over this many batches: it keeps a new
            generator near its input early, then lets go.
    """

    weight: float = 0.5
    fade_batches: int = 0

    def __post_init__(self) -> None:
        _at_least("identity", weight=(self.weight, 0), fade_batches=(self.fade_batches, 0))

    def weight_at(self, batch: int) -> float:
        return _faded(self.weight, batch, self.fade_batches)


@dataclass(frozen=True)
class DiscriminatorInput:
    """What the discriminators see besides the real images of their own domain.

    Args:
        pool_size: fakes come from a history pool of this many images (Shrivastava et al. 2017; paper: 50);
            0: this batch's fakes.
        source_negatives: the other domain's real images count as fakes too (a selfie is no anime face), so
            a translation that keeps its source's look is called fake from the first batch.
        instance_noise: std of Gaussian noise on every discriminator input, real and fake (Sønderby et al.
            2017), so that pixel noise (photos have it, drawings do not) is no easy cue; 0: none.
        augment: DiffAugment transforms (Zhao et al. 2020) on every discriminator input, in this order:
            "color", "translation", "cutout"; applied before the noise. The gradient penalty sees none.
    """

    pool_size: int = 50
    source_negatives: bool = False
    instance_noise: float = 0.0
    augment: Sequence[DiffAugmentName] = ()

    def __post_init__(self) -> None:
        _at_least("disc_input", pool_size=(self.pool_size, 0), instance_noise=(self.instance_noise, 0))
        check_policy(self.augment)


@dataclass(frozen=True)
class GradientPenalty:
    """A gradient penalty on the discriminators (Gulrajani et al. 2017), on real/fake interpolates.

    Args:
        weight: its weight in the discriminator objective; 0: off.
        center: the target gradient norm (1: WGAN-GP; 0: zero-centred).
    """

    weight: float = 0.0
    center: float = 1.0

    def __post_init__(self) -> None:
        _at_least("gradient_penalty", weight=(self.weight, 0))


@dataclass(frozen=True)
class Schedule:
    """Both learning rates over training: a linear warm-up, constant, then a linear decay to zero
    (the paper: 100 epochs constant, 100 decaying). Stepped by hand: Lightning ignores scheduler
    intervals under manual optimization.

    Args:
        warmup_batches: if > 0, the rates rise linearly from 0 over this many batches.
        decay_start_epoch: epochs at the configured rates before the decay.
        decay_epochs: epochs of the decay.
    """

    warmup_batches: int = 0
    decay_start_epoch: int = 100
    decay_epochs: int = 100

    def __post_init__(self) -> None:
        _at_least("schedule", warmup_batches=(self.warmup_batches, 0), decay_start_epoch=(self.decay_start_epoch, 0),
                  decay_epochs=(self.decay_epochs, 0))

    def epoch_scale(self, epoch: int) -> float:
        """The decay's factor in `epoch`: 1 for `decay_start_epoch` epochs, then down to 0 (never below)."""
        return max(0.0, 1.0 - max(0, epoch + 1 - self.decay_start_epoch) / float(self.decay_epochs + 1))

    def batch_scale(self, batch: int) -> float:
        """The warm-up's factor in `batch`: min(1, (batch + 1) / warmup_batches)."""
        return min(1.0, (batch + 1) / self.warmup_batches) if self.warmup_batches > 0 else 1.0


@dataclass(frozen=True)
class Compile:
    """`torch.compile` of the generators and discriminators (`vitcycle.training.compiling`).

    Args:
        when: "never", "cuda" (only when training on a GPU) or "always"; where it is not available, a
            warning and eager mode. Discriminators stay eager under a gradient penalty (no double backward).
        mode: the `torch.compile` mode, e.g. "reduce-overhead" (CUDA graphs); None: the default.
        backend: the `torch.compile` backend ("inductor"; "aot_eager" compiles without code generation).
    """

    when: CompileWhen = "never"
    mode: str | None = None
    backend: str = "inductor"


# ---------------------------------------------------------------------------------------------- migration

_MOVED = {
    "cycle_b_space": ("cycle_b", "space"),
    "cycle_b_downsample": ("cycle_b", "downsample"),
    "cycle_a_downsample": ("cycle_a", "downsample"),
    "lambda_identity": ("identity", "weight"),
    "identity_fade_steps": ("identity", "fade_batches"),
    "pool_size": ("disc_input", "pool_size"),
    "source_negatives": ("disc_input", "source_negatives"),
    "instance_noise": ("disc_input", "instance_noise"),
    "disc_augment": ("disc_input", "augment"),
    "lambda_gp": ("gradient_penalty", "weight"),
    "gp_center": ("gradient_penalty", "center"),
    "warmup_steps": ("schedule", "warmup_batches"),
    "decay_start_epoch": ("schedule", "decay_start_epoch"),
    "decay_epochs": ("schedule", "decay_epochs"),
    "compile": ("compile", "when"),
    "compile_mode": ("compile", "mode"),
    "compile_backend": ("compile", "backend"),
}
"""Flat hyperparameter of the checkpoints before the groups -> (group, field)."""

REMOVED = {
    "blurred_negatives": 0,
    "cycle_noise": 0.0,
    "cycle_noise_b": None,
    "instance_noise_fade_steps": 0,
    "decay_start_batch": 0,
    "decay_batches": 0,
}
"""Options that lost in every measurement and left the code (benchmarks/RESULTS.md, the ledger), with
the value that had them off; commit 4cb106e is the last that has them."""


def migrate_flat(hparams: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A checkpoint's hyperparameters in today's groups, and the removed options it had switched on.

    Checkpoints written before the groups hold a flat list (`lambda_cycle`, `instance_noise`, ...);
    grouped ones come back unchanged. "ralsgan", a removed loss, counts as a removed option.
    """
    if "lambda_cycle" not in hparams:
        return dict(hparams), []
    grouped: dict[str, Any] = {}
    removed = [f"{k}: {hparams[k]}" for k, off in REMOVED.items() if k in hparams and hparams[k] != off]
    if hparams.get("gan_loss") == "ralsgan":
        removed.append("gan_loss: ralsgan")
    lambda_b = hparams.get("lambda_cycle_b")
    grouped.setdefault("cycle_a", {})["weight"] = hparams["lambda_cycle"]
    grouped.setdefault("cycle_b", {})["weight"] = hparams["lambda_cycle"] if lambda_b is None else lambda_b
    for key, value in hparams.items():
        if key in _MOVED:
            group, field = _MOVED[key]
            grouped.setdefault(group, {})[field] = value
        elif key not in REMOVED and key not in ("lambda_cycle", "lambda_cycle_b"):
            grouped[key] = value
    return grouped, removed
