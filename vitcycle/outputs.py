"""Output files: never written onto a file the command reads, and replaced atomically.

A command checks its output paths before any work (`check_outputs`): none may be a file it reads,
each must be writable, and those that exist are returned so the command can say it replaces them.
It then writes each output through `replaced_atomically`: into a temporary file beside it that
takes the output's place only once complete, so a failure (or an interrupt) leaves whatever was
there before untouched and no half-written file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from vitcycle.errors import VitcycleError


def _partial(path: Path) -> Path:
    """The temporary file beside `path` that an output is written into (same suffix)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def check_outputs(
    outputs: Mapping[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike]
) -> list[Path]:
    """Before any work: raise if an output (by the name the caller gives it) is one of `inputs` (via any path),
    another output, a folder, or cannot be written (its folder is tried with a temporary file, which works for
    root too). Returns the outputs that exist already (the command replaces them and says so)."""
    read = {Path(p).expanduser().resolve() for p in inputs}
    existing = []
    claimed: dict[Path, str] = {}
    for name, out in outputs.items():
        if out is None:
            continue
        path = Path(out).expanduser()
        if path.resolve() in read:
            raise VitcycleError(f"{name} {out} is a file this command reads; choose another output path")
        if path.resolve() in claimed:
            raise VitcycleError(f"{name} {out} is also {claimed[path.resolve()]}; give each output its own path")
        claimed[path.resolve()] = name
        if path.is_dir():
            raise VitcycleError(f"{name} {out} is a folder; give a file path")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _partial(path).touch()
            _partial(path).unlink()
        except OSError as err:
            raise VitcycleError(f"{name} {out} cannot be written ({err.strerror or err}); choose a writable place") from None
        if path.exists():
            existing.append(path)
    return existing


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _flush_to_disk(path: Path) -> None:
    """Wait until the file's bytes are on the disk (fsync), so a crash after the rename cannot leave it empty."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike, durable: bool = False, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so encoders pick the same format); when
    the block succeeds it replaces `path` in one step, when it fails it is removed. `durable` files
    (checkpoints, judges, exports, reports) are flushed to the disk first. A full disk is one line
    that names the folder (and `size`, the bytes to write, when given); `path` stays as it was."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VitcycleError(f"cannot write {path}: cannot create the folder {path.parent} ({err.strerror or err})") from None
    tmp = _partial(path)
    try:
        yield tmp
        if durable:
            _flush_to_disk(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in _DISK_FULL:
            raise
        needs = f" (about {size / 1e6:.1f} MB)" if size else ""
        raise VitcycleError(f"no space left in {path.parent} to write {path.name}{needs}; {path} is as it was; "
                            "free space there or write elsewhere") from None
    finally:
        tmp.unlink(missing_ok=True)
