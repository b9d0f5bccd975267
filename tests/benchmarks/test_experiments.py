"""The experiments runner (benchmarks/experiments/run.py): its table, its ledger row, and the recipe's bound."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("experiments_run", ROOT / "benchmarks/experiments/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(a2b: float, b2a: float) -> dict:
    row = {"neither": 0.05, "layout_ssim": 0.7}
    return {"domain": {"a2b": {"model": {**row, "target": a2b}}, "b2a": {"model": {**row, "target": b2a, "sharpness": 0.4}}}}


def test_the_recipe_is_bounded_by_batches_not_minutes():
    trainer = yaml.safe_load((ROOT / "configs/selfie2anime_cpu.yaml").read_text())["trainer"]
    assert trainer["max_steps"] == 8000 and "max_time" not in trainer  # 4000 batches, two optimizer steps each


def test_the_table_gives_each_seed_and_the_min_and_mean_per_direction(runner):
    lines = runner.table({0: _report(0.80, 0.90), 1: _report(0.60, 0.95)})
    assert lines[2].startswith("| 0 | 80.0% | 5.0% | 0.70 | – | 90.0% | 5.0% | 0.70 | 0.40 |")
    assert lines[4] == "| **min** | 60.0% | | | | 90.0% | | | |"
    assert lines[5] == "| **mean** | 70.0% | | | | 92.5% | | | |"


def test_the_ledger_row_names_the_change_and_lands_at_the_end_of_the_ledger(runner, tmp_path, monkeypatch):
    overlay = ROOT / "benchmarks/experiments/recipe.yaml"
    row = runner.ledger_row(overlay, {1: _report(0.8, 0.9), 3: _report(0.7, 0.6)}, "4000")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0].startswith("`{}` (`python benchmarks/experiments/run.py benchmarks/experiments/recipe.yaml --seeds 1 3`)")
    assert cells[1:6] == ["1; 3", "4000 batches", "80.0 / 90.0; 70.0 / 60.0", "(recipe row)", "– / 0.40; – / 0.40"]
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Ablation ledger\n\n| change |\n|---|\n| old row |\n\nnotes\n\n| old name | new |\n"
                       "\n## Speed\n\n| x |\n")
    monkeypatch.setattr(runner, "RESULTS", results)
    runner.append_to_ledger("| new row |")
    assert results.read_text().splitlines()[6:8] == ["| old row |", "| new row |"]
    assert results.read_text().endswith("notes\n\n| old name | new |\n\n## Speed\n\n| x |\n")  # later tables untouched
