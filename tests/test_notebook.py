"""notebooks/quickstart.ipynb runs top to bottom (tiny settings) in a kernel of this interpreter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat (in [dev]) is not installed: the notebook cannot be executed")
nbclient = pytest.importorskip("nbclient", reason="nbclient (in [dev]) is not installed: the notebook cannot be executed")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def _tiny_parameters(work: Path) -> str:
    """Papermill-style injected parameters: a few images, one training batch, and this interpreter."""
    fit_args = [
        "--data.batch_size=2",
        "--data.num_workers=0",
        "--trainer.limit_val_batches=1",
        "--trainer.check_val_every_n_epoch=1",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.accelerator=cpu",
    ]
    for gen in ("gen_ab", "gen_ba"):  # a narrower, shallower generator: the same code in a fraction of the time
        fit_args += [
            f"--model.{gen}.init_args.encoder_indices=[0, 1]",
            f'--model.{gen}.init_args.encoder_kwargs={{"patch_size": 8, "depth": 2, "embed_dim": 64, "num_heads": 1}}',
            f"--model.{gen}.init_args.decoder_depth=1",
            f"--model.{gen}.init_args.head_dim=32",
        ]
    for disc in ("disc_a", "disc_b"):
        fit_args += [f"--model.{disc}.init_args.ndf=8", f"--model.{disc}.init_args.n_layers=2"]
    return "\n".join([
        "import sys",
        f"assert sys.executable == {sys.executable!r}, sys.executable",
        f"WORK = {str(work)!r}",
        "N_TRAIN, N_VAL, IMAGE_SIZE, MAX_EPOCHS, LIMIT_TRAIN_BATCHES, N_SHOW = 4, 4, 32, 1, 1, 2",
        f"EXTRA_ARGS = {fit_args!r}",
    ])


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernelspec that runs this very interpreter (CI calls .venv/bin/python -m pytest without activating).
    spec_dir = tmp_path / "jupyter" / "kernels" / "vitcycle-test"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "vitcycle test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("NO_ALBUMENTATIONS_UPDATE", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    work = tmp_path / "work"
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(_tiny_parameters(work), metadata={"tags": ["injected-parameters"]}))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="vitcycle-test", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()

    assert (work / "quickstart_grid.png").is_file()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the pairs and the sample grid
    text = "".join(o.get("text", "") for o in outputs)
    assert "checkpoint:" in text and ".ckpt" in text
    for row in ("| a2b |", "| b2a |", "| identity |"):
        assert row in text
