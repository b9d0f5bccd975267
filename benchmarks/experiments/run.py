"""Train the real-data recipe with a YAML overlay on several seeds, score each run, print its ledger row.

    python benchmarks/experiments/run.py benchmarks/experiments/recipe.yaml --seeds 0 1 2 3
    python benchmarks/experiments/run.py my_change.yaml --seeds 1 3 --append   # the row into RESULTS.md

Every run is `configs/selfie2anime_cpu.yaml` + the overlay (later --config files override earlier ones
key by key), bounded by the config's batches (`--batches` to change), on the held-out split and with the
judge of `make selfie2anime-cpu` (made here first if missing; the same seed-0 split and judge, so runs
compare). Seeds run `--jobs` at a time, on one thread each, into runs/experiments/<overlay>/seed<S>; a
seed with a last.ckpt is not trained again, nor scored again with an eval.json (delete it to rescore).
`vitcycle eval` scores best.ckpt (last.ckpt before the first validation) on the 200 + 200 held-out faces.
Printed: a table per seed with the min and the mean per direction, then the ledger row
(benchmarks/RESULTS.md, "Ablation ledger"); `--append` adds that row at the end of the ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs/selfie2anime_cpu.yaml"
RUNS = ROOT / "runs/selfie2anime_cpu"  # the make target's split and judge
RESULTS = ROOT / "benchmarks/RESULTS.md"
VITCYCLE = [sys.executable, "-m", "vitcycle.cli"]


def _run(args: list[str], log: Path | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log, "w") if log else open(os.devnull, "w") as out:
        done = subprocess.run(VITCYCLE + args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if log else None)
    if done.returncode != 0:
        _fail(f"vitcycle {' '.join(args[:1])} failed (exit {done.returncode}); see {log or 'above'}")


def _fail(message: str) -> None:
    print(f"run.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def split_and_judge(s2a: Path, judge_seeds: list[str]) -> None:
    """The make target's held-out split (seed 0) and judge, made once and shared by every run."""
    _run(["data", "split", "--dir-a", f"{s2a}/trainA", "--dir-b", f"{s2a}/trainB", "--out", str(RUNS / "split"),
          "--n-test", "200", "--seed", "0"])
    if not (RUNS / "judge.pt").is_file():
        _run(["judge", "fit", "--dir-a", f"{s2a}/trainA", "--dir-b", f"{s2a}/trainB", "--holdout",
              str(RUNS / "split/test_a.txt"), str(RUNS / "split/test_b.txt"), "--seed", *judge_seeds,
              "--out", str(RUNS / "judge.pt")])


def train_and_score(overlay: Path, seed: int, batches: int | None, s2a: Path, folder: Path) -> dict:
    """One seed: fit the recipe + overlay, then eval its best.ckpt; the eval report."""
    report = folder / "eval.json"
    if not (folder / "checkpoints/last.ckpt").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        bound = ["--trainer.max_steps", str(2 * batches)] if batches else []  # two optimizer steps per batch
        change = ["--config", str(overlay)] if yaml.safe_load(overlay.read_text()) else []  # an empty file: the recipe
        _run(["fit", "--config", str(RECIPE), *change, "--seed_everything", str(seed), *bound,
              "--trainer.default_root_dir", str(folder), "--trainer.enable_progress_bar", "false",
              "--data.dir_a", f"{s2a}/trainA", "--data.dir_b", f"{s2a}/trainB"], log=folder / "fit.log")
    if not report.is_file():
        best = folder / "checkpoints/best.ckpt"  # none when training ended before its first validation
        ckpt = best if best.is_file() else folder / "checkpoints/last.ckpt"
        _run(["eval", "--ckpt", str(ckpt), "--test-a", str(RUNS / "split/test_a.txt"),
              "--test-b", str(RUNS / "split/test_b.txt"), "--judge", str(RUNS / "judge.pt"), "--no-fid-kid",
              "--grid", str(folder / "grid.png"), "--out", str(report)], log=folder / "eval.log")
    return json.loads(report.read_text())


def _figure(row: dict, key: str) -> str:
    value = row.get(key)
    return "–" if value is None else f"{value:.1%}" if key in ("target", "neither") else f"{value:.2f}"


def table(reports: dict[int, dict]) -> list[str]:
    """Per seed: each direction's share judged the target domain, "neither", layout SSIM, sharpness; then min, mean."""
    lines = ["| seed | A→B target | A→B neither | A→B SSIM | A→B sharpness | B→A target | B→A neither | B→A SSIM "
             "| B→A sharpness |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    keys = ("target", "neither", "layout_ssim", "sharpness")
    for seed, report in reports.items():
        rows = [report["domain"][d]["model"] for d in ("a2b", "b2a")]
        lines.append(f"| {seed} | " + " | ".join(_figure(r, k) for r in rows for k in keys) + " |")
    for name, fn in (("min", min), ("mean", statistics.fmean)):
        cells = [fn(r["domain"][d]["model"]["target"] for r in reports.values()) for d in ("a2b", "b2a")]
        lines.append(f"| **{name}** | {cells[0]:.1%} | | | | {cells[1]:.1%} | | | |")
    return lines


def ledger_row(overlay: Path, reports: dict[int, dict], batches: str) -> str:
    """The ledger's columns: change, seeds, budget, A→B / B→A, recipe of its day, sharpness, verdict, commit."""
    dumper = type("Plain", (yaml.SafeDumper,), {"ignore_aliases": lambda self, data: True})  # no &id001 anchors
    change = yaml.dump(yaml.safe_load(overlay.read_text()) or {}, Dumper=dumper, default_flow_style=True, width=1000).strip()
    seeds = "; ".join(map(str, reports))
    figures = "; ".join(" / ".join(f"{r['domain'][d]['model']['target'] * 100:.1f}" for d in ("a2b", "b2a"))
                        for r in reports.values())
    sharp = "; ".join(" / ".join(_figure(r["domain"][d]["model"], "sharpness") for d in ("a2b", "b2a"))
                      for r in reports.values())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    command = f"`python benchmarks/experiments/run.py {os.path.relpath(overlay, ROOT)} --seeds {' '.join(map(str, reports))}`"
    return f"| `{change}` ({command}) | {seeds} | {batches} batches | {figures} | (recipe row) | {sharp} | (verdict) | {commit} |"


def append_to_ledger(row: str) -> None:
    """Insert `row` after the last row of the ledger: the first table of RESULTS.md's "Ablation ledger" section."""
    lines = RESULTS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## Ablation ledger"))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    last = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines)) - 1
    RESULTS.write_text("\n".join(lines[: last + 1] + [row] + lines[last + 1:]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overlay", type=Path, help="YAML merged over configs/selfie2anime_cpu.yaml ({} for the recipe)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batches", type=int, default=None, help="training batches (default: the config's)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained at once, one thread each")
    parser.add_argument("--s2a", type=Path, default=Path(os.environ.get("S2A", ROOT / "data/selfie2anime")),
                        help="folder with trainA/ and trainB/ (default: $S2A or data/selfie2anime)")
    parser.add_argument("--judge-seeds", nargs="+", default=["0"])
    parser.add_argument("--append", action="store_true", help="add the row to the ledger in benchmarks/RESULTS.md")
    args = parser.parse_args()
    overlay, s2a = args.overlay.resolve(), args.s2a.resolve()
    if not overlay.is_file():
        _fail(f"overlay {args.overlay} does not exist; pass a YAML file (benchmarks/experiments/recipe.yaml: no change)")
    if not (s2a / "trainA").is_dir() or not (s2a / "trainB").is_dir():
        _fail(f"--s2a {args.s2a} has no trainA/ and trainB/ folders; pass the selfie2anime folder (or set S2A=...)")
    split_and_judge(s2a, args.judge_seeds)
    batches = args.batches or yaml.safe_load(RECIPE.read_text())["trainer"]["max_steps"] // 2
    runs = ROOT / "runs/experiments" / overlay.stem
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {s: pool.submit(train_and_score, overlay, s, args.batches, s2a, runs / f"seed{s}") for s in args.seeds}
        reports = {s: f.result() for s, f in futures.items()}
    print("\n".join(table(reports)))
    row = ledger_row(overlay, reports, str(batches))
    print("\nledger row:\n" + row)
    if args.append:
        append_to_ledger(row)
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
