"""`InitArgsMixin`: a network that remembers the arguments it was built with, so a checkpoint can name them.

A checkpoint describes each generator as `{"class_path": ..., "init_args": {...}}` (`spec()`), the
layout LightningCLI configs use, and is rebuilt from it without the code or config that built it
(`vitcycle.checkpoint`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from vitcycle.errors import VitcycleError

__all__ = ["InitArgsMixin"]


def _plain(value: Any, where: str) -> Any:
    """`value` as JSON-able data (tuples become lists); anything else is refused, naming `where`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise VitcycleError(
        f"{where}={value!r} is not plain data (str, number, bool, None, list, dict with str keys), "
        "so a checkpoint cannot record it; pass plain values"
    )


def _recording(init: Callable[..., None]) -> Callable[..., None]:
    """`init` that also stores its bound arguments (defaults filled in) as `self.init_args`."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is not __init__:  # a subclass's own __init__ records its arguments
            return
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        recorded: dict[str, Any] = {}
        for name, param in list(signature.parameters.items())[1:]:
            if param.kind is param.VAR_KEYWORD:
                recorded |= bound.arguments.get(name, {})
            elif param.kind is not param.VAR_POSITIONAL:
                recorded[name] = bound.arguments[name]
        self.init_args = recorded

    return __init__


class InitArgsMixin:
    """Records `init_args`: every argument of the class's `__init__` by name, defaults filled in.

    `weight_args` names the arguments that only choose initial weights, with the value that turns
    them off; `spec()` writes them off, since the checkpoint that holds a spec holds the weights.
    """

    init_args: dict[str, Any]
    weight_args: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__init__)  # type: ignore[method-assign]

    def spec(self) -> dict[str, Any]:
        """`{"class_path": ..., "init_args": {...}}` of this network, plain data, weight loading off.

        Raises:
            VitcycleError: an argument is not plain data (e.g. a class or a module).
        """
        cls = type(self)
        init_args = {**self.init_args, **{k: v for k, v in self.weight_args.items() if k in self.init_args}}
        return {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": {k: _plain(v, f"{cls.__name__} argument {k}") for k, v in init_args.items()},
        }
