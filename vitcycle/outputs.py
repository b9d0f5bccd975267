"""Output files: never written onto a file the command reads, and replaced atomically.

A command checks its output paths against its inputs before any work (`refuse_inputs_as_outputs`),
and writes each output through `replaced_atomically`: into a temporary file beside it that takes
the output's place only once complete, so a failure (or an interrupt) leaves whatever was there
before untouched and no half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from vitcycle.errors import VitcycleError


def refuse_inputs_as_outputs(outputs: Mapping[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike]) -> None:
    """Raise if an output path (by name, e.g. "--out") is one of `inputs` (the same file, via any path)."""
    read = {Path(p).expanduser().resolve() for p in inputs}
    for name, out in outputs.items():
        if out is not None and Path(out).expanduser().resolve() in read:
            raise VitcycleError(f"{name} {out} is a file this command reads; choose another output path")


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so encoders pick the same format); when
    the block succeeds it replaces `path` in one step, when it fails it is removed."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VitcycleError(f"cannot write {path}: cannot create the folder {path.parent} ({err.strerror or err})") from None
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
