"""One training run per folder (`vitcycle.training.run_lock`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from tiny import tiny_config

from vitcycle.cli import main
from vitcycle.errors import VitcycleError
from vitcycle.training.run_lock import LOCK_NAME, hold_run_lock


def _hold_in_another_process(folder) -> subprocess.Popen:
    """A process that takes `folder`'s lock, says so, and waits for its stdin to close."""
    code = textwrap.dedent(f"""
        import sys
        from vitcycle.training.run_lock import hold_run_lock
        hold_run_lock({str(folder)!r})
        print("held", flush=True)
        sys.stdin.read()
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_folder_locked_by_another_process_is_refused_naming_it(tmp_path):
    holder = _hold_in_another_process(tmp_path)
    try:
        with pytest.raises(VitcycleError, match=rf"{tmp_path} is in use by another `vitcycle fit` \(pid {holder.pid}\)"):
            hold_run_lock(tmp_path)
    finally:
        holder.communicate("")  # the holder ends: its lock goes with it
    assert hold_run_lock(tmp_path) == tmp_path / LOCK_NAME
    assert hold_run_lock(tmp_path) == tmp_path / LOCK_NAME  # taken again by its holder: no error


def test_a_second_fit_into_a_running_ones_folder_is_one_line_and_writes_nothing(tiny_data, tmp_path, capsys):
    config = tiny_config(tmp_path, tiny_data)
    holder = _hold_in_another_process(tmp_path / "ckpt")  # as a running fit holds its checkpoints' folder
    try:
        assert main(["fit", "--config", str(config)]) == 2
    finally:
        holder.communicate("")
    err = capsys.readouterr().err
    assert f"is in use by another `vitcycle fit` (pid {holder.pid})" in err and "Traceback" not in err
    assert not list((tmp_path / "ckpt").glob("*.ckpt"))
