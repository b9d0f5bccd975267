"""The module paths of vitcycle before its subpackages, kept importable, so that YAML configs
(`class_path: vitcycle.callbacks.ImageGridLogger`), notebooks and scripts written for them still work.

A meta-path finder answers an old name with the module that now holds its code (the same module
object, imported on first use): nothing heavy is imported until an old name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

OLD_PATHS = {
    "vitcycle.align": "vitcycle.faces.align",
    "vitcycle.callbacks": "vitcycle.training.callbacks",
    "vitcycle.compiling": "vitcycle.training.compiling",
    "vitcycle.diff_augment": "vitcycle.training.diff_augment",
    "vitcycle.domain_score": "vitcycle.quality.domain_score",
    "vitcycle.ema": "vitcycle.training.ema",
    "vitcycle.export": "vitcycle.inference.export",
    "vitcycle.face_folder": "vitcycle.faces.folder",
    "vitcycle.image_pool": "vitcycle.training.image_pool",
    "vitcycle.imageio": "vitcycle.data.imageio",
    "vitcycle.judge": "vitcycle.quality.judge",
    "vitcycle.losses": "vitcycle.training.losses",
    "vitcycle.metrics": "vitcycle.quality.metrics",
    "vitcycle.module": "vitcycle.training.cyclegan",
    "vitcycle.patch_nce": "vitcycle.training.patch_nce",
    "vitcycle.pretrain": "vitcycle.training.pretrain",
    "vitcycle.serve": "vitcycle.inference.serve",
    "vitcycle.splits": "vitcycle.data.splits",
    "vitcycle.synthetic": "vitcycle.data.synthetic",
    "vitcycle.training_cli": "vitcycle.training.cli",
    "vitcycle.translate": "vitcycle.inference.files",
    "vitcycle.translator": "vitcycle.inference.translator",
}
"""Old module path -> the module that holds its code now. `vitcycle.data` and `vitcycle.faces` became
packages; their old names resolve through the packages' `__getattr__`."""


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001 - the finder protocol
        return importlib.util.spec_from_loader(name, self) if name in OLD_PATHS else None

    def create_module(self, spec) -> ModuleType:  # noqa: ANN001
        return importlib.import_module(OLD_PATHS[spec.name])

    def exec_module(self, module: ModuleType) -> None:  # the module was executed under its new name
        pass


def install() -> None:
    """Answer the old module paths (once per interpreter)."""
    if not any(isinstance(finder, _OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())
