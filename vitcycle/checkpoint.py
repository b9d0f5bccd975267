"""The CycleGAN checkpoint as the project's own contract: what it holds besides weights, and how it is read.

`CycleGAN.on_save_checkpoint` writes `checkpoint["vitcycle"]` (`model_entry`), plain JSON-able data:

    {"format": 1,
     "generators": {"gen_ab": {"class_path": "vitcycle.models.generator.ViTTranslator", "init_args": {...}},
                    "gen_ba": {...}},
     "image_size": 64}   # training size: the data module's, else gen_ab's img_size, else None

Pretrained-weight arguments are written as off (`pretrained: false`, `pretrained_path: null`): the
`state_dict` beside it holds the weights (`gen_ab.*`, EMA copies `gen_ab_ema.module.*`). That is all
`Translator.from_checkpoint` needs, however the CycleGAN was built (LightningCLI or plain Python).
Files written before format 1 have no such entry; `model_spec` migrates theirs from LightningCLI's
`hyper_parameters` and `datamodule_hyper_parameters`.

Reading is safe for files from strangers: `safe_load` is `torch.load(weights_only=True)`, and
`build_generator` builds only generators of `vitcycle.models` and never reads or fetches weights.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitcycle.errors import CheckpointError, VitcycleError

KEY = "vitcycle"
"""The checkpoint entry this module writes and reads."""
FORMAT = 1
"""Version of that entry; a reader refuses newer ones."""
GENERATORS = ("gen_ab", "gen_ba")

# timm.create_model keys that would make the encoder read files or fetch weights: a checkpoint's
# init_args may not set them (the trained weights come from the checkpoint itself).
_UNSAFE_ENCODER_KEYS = ("path", "file", "url", "cfg", "cache", "pretrained", "hub")


# ----------------------------------------------------------------------------------------------
# Writing


def model_entry(generators: Mapping[str, nn.Module], datamodule: object = None) -> dict[str, Any]:
    """The `vitcycle` entry of a checkpoint of these generators (a generator that cannot describe
    itself is written as None, with a warning: such a checkpoint cannot be loaded by vitcycle)."""
    specs: dict[str, dict | None] = {}
    for name, generator in generators.items():
        try:
            specs[name] = generator.spec()  # vitcycle.models._init_args.InitArgsMixin
        except (AttributeError, VitcycleError) as err:
            detail = str(err) if isinstance(err, VitcycleError) else f"{type(generator).__name__} has no spec()"
            warnings.warn(f"{name} is not recorded in the checkpoint ({detail}); Translator cannot load it", stacklevel=2)
            specs[name] = None
    image_size = getattr(datamodule, "image_size", None) or getattr(next(iter(generators.values()), None), "img_size", None)
    return {"format": FORMAT, "generators": specs, "image_size": int(image_size) if image_size else None}


def _plain(value: Any) -> Any:
    """A hyperparameter as data `torch.load(weights_only=True)` reads: networks as their spec, classes
    and functions as their import path; plain values as they are."""
    if isinstance(value, nn.Module):
        spec = getattr(value, "spec", None)
        try:
            return spec() if callable(spec) else f"{type(value).__module__}.{type(value).__qualname__}"
        except VitcycleError:
            return f"{type(value).__module__}.{type(value).__qualname__}"
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor | torch.dtype):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # an option group: its fields
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def plain_hyperparameters(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """`hparams` with nothing a weights-only reader refuses (a CycleGAN built in Python holds modules and classes)."""
    return {k: _plain(v) for k, v in hparams.items()}


# ----------------------------------------------------------------------------------------------
# Reading


def safe_load(path: str | os.PathLike, what: str = "checkpoint", hint: str = "pass the .ckpt file written by `vitcycle fit`") -> Any:
    """`torch.load` with `weights_only=True`: the project's one way to read a saved file, so a
    stranger's file can never run code. Errors name the file (`what` it should be, `hint` the fix).

    Raises:
        CheckpointError: missing, truncated, foreign or code-carrying file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"{what} {path} {state}; {hint}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
        raise CheckpointError(f"cannot read {what} {path}: it is not a PyTorch file (empty or foreign bytes); {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every unreadable file becomes one message naming it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights only load failed" in str(err).lower():
            reason = (
                f"it holds Python objects other than tensors and plain containers, which a {what} of "
                "vitcycle never does; refusing to unpickle it (weights_only=True)"
            )
        raise CheckpointError(f"cannot read {what} {path}: {reason} (truncated, corrupt or not a PyTorch file?)") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a CycleGAN checkpoint safely (`safe_load`) and check its structure.

    Raises:
        CheckpointError: missing, truncated or foreign file; the message names it.
    """
    path = Path(path).expanduser()
    ckpt = safe_load(path)
    described = isinstance(ckpt, Mapping) and (
        isinstance(ckpt.get(KEY), Mapping) or isinstance(ckpt.get("hyper_parameters"), Mapping)
    )
    if not described or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(
            f"{path} is not a vitcycle checkpoint (no {KEY} entry or hyper_parameters, or no state_dict, "
            "of a CycleGAN module); pass a .ckpt written by `vitcycle fit` or CycleGAN's trainer"
        )
    return ckpt


_OLD_VIT_DEFAULTS = {"global_residual": True, "upsample": "pixel_shuffle"}
"""ViTTranslator defaults before they became the recipes' (format 1 records every argument; LightningCLI's
hyperparameters of a named size such as vit_tiny_p8 hold only the arguments its config set)."""


def _with_old_defaults(spec: Any) -> Any:
    """A generator spec of the LightningCLI layout with the ViTTranslator defaults of its day filled in."""
    if not isinstance(spec, Mapping) or not str(spec.get("class_path", "")).startswith("vitcycle.models."):
        return spec
    if spec["class_path"].endswith(("ResnetGenerator", "PatchDiscriminator")):
        return spec
    return {**spec, "init_args": {**_OLD_VIT_DEFAULTS, **(spec.get("init_args") or {})}}


def model_spec(ckpt: Mapping, source: Path) -> dict[str, Any]:
    """The `vitcycle` entry of a loaded checkpoint (format 1), migrated from LightningCLI's
    hyperparameters for files written before it.

    Raises:
        CheckpointError: the entry is of a newer format or malformed.
    """
    entry = ckpt.get(KEY)
    if entry is None:  # before format 1: the generators as LightningCLI saved their config
        hparams = ckpt.get("hyper_parameters") or {}
        data = ckpt.get("datamodule_hyper_parameters")
        image_size = data.get("image_size") if isinstance(data, Mapping) else None
        generators = {n: _with_old_defaults(hparams.get(n)) for n in GENERATORS}
        return {"format": FORMAT, "generators": generators, "image_size": image_size}
    version = entry.get("format") if isinstance(entry, Mapping) else None
    if not isinstance(version, int) or not isinstance(entry.get("generators"), Mapping):
        raise CheckpointError(f"{source}: its {KEY} entry is malformed (no format number or generators)")
    if version > FORMAT:
        raise CheckpointError(
            f"{source} is of checkpoint format {version}, newer than this vitcycle's ({FORMAT}); upgrade vitcycle"
        )
    return dict(entry)


def _generator_factory(class_path: object, source: Path) -> type[nn.Module] | Callable[..., nn.Module]:
    """The generator class (or named size, e.g. vit_tiny_p8) that `class_path` names, from a fixed
    allow-list; nothing named by a checkpoint is ever imported."""
    from vitcycle.models import GENERATORS as SIZES
    from vitcycle.models import ResnetGenerator, ViTTranslator

    allowed: dict[str, Callable[..., nn.Module]] = {f"vitcycle.models.{n}": f for n, f in SIZES.items()}
    for cls in (ViTTranslator, ResnetGenerator):
        allowed[f"vitcycle.models.{cls.__name__}"] = allowed[f"{cls.__module__}.{cls.__name__}"] = cls
    if not isinstance(class_path, str) or class_path not in allowed:
        raise CheckpointError(
            f"{source}: generator class_path {class_path!r} is not a generator of vitcycle.models; "
            f"refusing to build it (allowed: {', '.join(sorted(allowed))})"
        )
    return allowed[class_path]


def build_generator(spec: object, source: Path) -> nn.Module:
    """Instantiate `{"class_path": ..., "init_args": {...}}` without pretrained-weight loading."""
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise CheckpointError(
            f"{source}: the generator is not described as a class_path/init_args mapping; "
            "was it written by vitcycle (`vitcycle fit`, or a CycleGAN's trainer)?"
        )
    factory = _generator_factory(spec["class_path"], source)
    init_args = dict(spec.get("init_args") or {})
    unsafe = [k for k in (init_args.get("encoder_kwargs") or {}) if any(w in k.lower() for w in _UNSAFE_ENCODER_KEYS)]
    if unsafe:
        raise CheckpointError(f"{source}: refusing encoder_kwargs that load files or weights: {', '.join(unsafe)}")
    params = inspect.signature(factory).parameters
    forwards_kwargs = not isinstance(factory, type)  # the named sizes pass **kwargs to ViTTranslator
    # The checkpoint has the trained weights: never download or read the encoder's initial ones.
    for key, value in (("pretrained", False), ("pretrained_path", None)):
        if key in params or forwards_kwargs:
            init_args[key] = value
    try:
        generator = factory(**init_args)
    except TypeError as err:
        raise CheckpointError(f"{source}: init_args of {spec['class_path']} do not fit this vitcycle version: {err}") from None
    if not isinstance(generator, nn.Module):
        raise CheckpointError(f"{source}: {spec['class_path']} did not build an nn.Module")
    return generator
