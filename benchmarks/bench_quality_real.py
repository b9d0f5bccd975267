"""Real data: one table row per `vitcycle eval --judge` report, to compare training recipes.

    python benchmarks/bench_quality_real.py runs/*/eval.json

Each report comes from `vitcycle eval --ckpt X --test-a split/test_a.txt --test-b split/test_b.txt
--judge judge.pt --no-fid-kid --out eval.json` on the held-out split (`vitcycle data split`), which
neither the GAN nor the judge trained on. Columns per direction: share of translations the judge
calls the target domain, share it calls neither, layout SSIM (32x32 grayscale) to the input, cycle
L1, diversity (how far the translations differ from one another, over how far the real target
images do: near 0 for one face for every input); then the batches trained (from the checkpoint) and the judge's accuracy on the real test images.
With an ensemble judge (`vitcycle judge fit --seed 0 1 2`), a last column gives the range of the
target shares over its judges, per direction: how much each figure depends on the judge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def _batches(ckpt: str) -> str:
    try:  # the step count only: a plain read of the file the report names
        return str(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] // 2)
    except Exception:  # noqa: BLE001 - a moved checkpoint leaves the column empty
        return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="eval JSON reports written with --judge")
    parser.add_argument("--method", default="model", help="row of the report: model, identity, cartoon, other_domain")
    args = parser.parse_args()
    reports = [json.loads(Path(path).read_text()) for path in args.reports]
    ensemble = any("target_by_judge" in r["domain"]["a2b"][args.method] for r in reports)
    print("| run | batches | A→B target | A→B neither | A→B SSIM | B→A target | B→A neither | B→A SSIM | cycle L1 A / B "
          "| diversity A→B / B→A | judge acc A / B |" + (" each judge A→B / B→A |" if ensemble else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if ensemble else ""))
    for path, report in zip(args.reports, reports, strict=True):
        cells = []
        for d in ("a2b", "b2a"):
            row = report["domain"][d][args.method]
            cells += [f"{row['target']:.1%}", f"{row['neither']:.1%}", f"{row['layout_ssim']:.3f}"]
        cyc = [report["domain"][d][args.method]["cycle_l1"] for d in ("a2b", "b2a")]
        cycle = " / ".join("-" if c is None else f"{c:.3f}" for c in cyc)
        div = " / ".join(f"{report['domain'][d][args.method]['diversity']:.2f}" if "diversity" in report["domain"][d][args.method]
                         else "-" for d in ("a2b", "b2a"))  # reports from before the diversity figure: "-"
        acc = " / ".join(f"{report['judge_accuracy'][s]['accuracy']:.1%}" for s in ("a", "b"))
        name = Path(path).parent.name if Path(path).name == "eval.json" else Path(path).stem
        line = f"| {name} | {_batches(report['settings']['checkpoint'])} | {' | '.join(cells)} | {cycle} | {div} | {acc} |"
        if ensemble:
            ranges = [report["domain"][d][args.method].get("target_by_judge") for d in ("a2b", "b2a")]
            line += " " + " / ".join(f"{min(r):.1%}–{max(r):.1%}" if r else "-" for r in ranges) + " |"
        print(line)


if __name__ == "__main__":
    main()
