"""Preemption (`vitcycle.training.preemption`): a stop signal saves a resumable last.ckpt and exits 128 + its number."""

from __future__ import annotations

import signal

import pytest
import torch
import yaml
from tiny import checkpoint_state, tiny_config

from vitcycle.cli import main


def _with_signal(config, **signal_at) -> None:
    data = yaml.safe_load(config.read_text())
    data["trainer"]["callbacks"].append({"class_path": "tiny.SignalAt", "init_args": signal_at})
    config.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(("signal_name", "batch", "during_validation", "stopped_after"), [
    ("SIGTERM", 1, False, 2),  # an early batch: it is finished first
    ("SIGUSR1", 5, False, 6),  # mid-epoch in the second epoch
    ("SIGINT", 3, False, 4),  # the last batch of the first epoch: the epoch's validation runs, then it stops
    ("SIGTERM", 3, True, 5),  # during validation: it ends, and the next batch is the last before stopping
    ("SIGTERM", 7, False, 8),  # the very last batch
])
def test_a_stop_signal_saves_a_checkpoint_that_resumes_to_the_same_weights(
        tiny_data, tmp_path, capsys, signal_name, batch, during_validation, stopped_after):
    straight = tiny_config(tmp_path / "straight", tiny_data)
    assert main(["fit", "--config", str(straight), "--trainer.max_epochs=2"]) == 0  # 8 batches of 4
    stopped = tiny_config(tmp_path / "stopped", tiny_data)
    _with_signal(stopped, signal_name=signal_name, batch=batch, during_validation=during_validation)
    assert main(["fit", "--config", str(stopped), "--trainer.max_epochs=2"]) == 128 + getattr(signal, signal_name)
    last = tmp_path / "stopped/ckpt/last.ckpt"
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"vitcycle fit: stopped by {signal_name} after {stopped_after} batches, saved to {last}; "
                       f"resume with the same command and --ckpt_path {last}")
    assert torch.load(last, weights_only=True)["global_step"] == 2 * stopped_after
    resumed = tiny_config(tmp_path / "stopped", tiny_data)  # the same run, without the signal
    assert main(["fit", "--config", str(resumed), "--trainer.max_epochs=2", f"--ckpt_path={last}"]) == 0
    a, b = checkpoint_state(tmp_path / "straight/ckpt/last.ckpt"), checkpoint_state(last)
    assert not [k for k in a if not torch.equal(a[k], b[k])]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back
