"""One training run per folder: an exclusive lock on `<checkpoint folder>/.fit.lock`, held until the process ends.

Two `vitcycle fit` started together into one `default_root_dir` would both pass the "already holds
checkpoints" check and then overwrite each other's `best` and `last.ckpt`. The lock is an OS file lock
(`fcntl.flock`), so it goes with the process however it ends (a crash or `kill -9` leaves no stale lock);
the file keeps the holder's pid for the message. Where `fcntl` is missing (Windows) there is no lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from vitcycle.errors import VitcycleError

LOCK_NAME = ".fit.lock"

_held: dict[str, IO] = {}  # lock path -> its open file in this process (closing it would release the lock)


def hold_run_lock(folder: str | os.PathLike) -> Path:
    """Take the run lock of `folder` (made if missing) for the rest of this process; the lock file's path.

    Raises:
        VitcycleError: another process holds it; the message names that process and the fix.
    """
    try:
        import fcntl
    except ImportError:  # no flock on this platform: one run per folder is the user's to keep
        return Path(folder) / LOCK_NAME
    path = Path(folder) / LOCK_NAME
    if os.path.realpath(path) in _held:  # this process holds it already (a resume after a fit, in one Python)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+")  # noqa: SIM115 - kept open on purpose: the lock lives as long as the file is open
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise VitcycleError(
            f"{Path(folder)} is in use by another `vitcycle fit` (pid {holder}); wait for it to end, "
            "or train into another --trainer.default_root_dir"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _held[os.path.realpath(path)] = lock
    return path
