"""Checkpoints replace their predecessors only when complete (`vitcycle.training.checkpoint_io`)."""

from __future__ import annotations

import errno
import hashlib
import os

from tiny import tiny_config

from vitcycle.cli import main


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_full_disk_during_a_save_keeps_every_earlier_checkpoint(tiny_data, tmp_path, capsys, monkeypatch):
    config = tiny_config(tmp_path, tiny_data)
    assert main(["fit", "--config", str(config)]) == 0
    folder = tmp_path / "ckpt"
    before = {p.name: _sha(p) for p in folder.glob("*.ckpt")}
    assert set(before) == {"best.ckpt", "last.ckpt"} and not list(folder.glob(".*partial*"))

    def disk_full(fd: int) -> None:  # what fsync says when the disk filled up under delayed allocation
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    last = folder / "last.ckpt"
    assert main(["fit", "--config", str(config), "--trainer.max_epochs=2", f"--ckpt_path={last}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"vitcycle fit: error: no space left in {folder} to write ") and "MB)" in err[-1]
    assert err[-1].endswith("is as it was; free space there or write elsewhere") and "Traceback" not in "".join(err)
    assert {p.name: _sha(p) for p in folder.glob("*.ckpt")} == before  # byte for byte
    assert not list(folder.glob(".*partial*"))  # no half-written file left behind
