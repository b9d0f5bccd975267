"""Side-by-side translations of several runs, from the grids `vitcycle eval --grid` wrote.

    python benchmarks/grid_compare.py --out docs/cmp.png --rows 4 runs/a/grid.png runs/b/grid.png

Each eval grid holds rows of input | translation | ... (128 px cells), the A inputs first, then the
B inputs. The figure takes the first `--rows` rows of each direction: the input once, then the
translation column of every grid given, in order, at `--cell` px.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from vitcycle.data.imageio import read_image, write_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grids", nargs="+", help="eval grid PNGs (same test images, same order)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=4, help="rows per direction")
    parser.add_argument("--per-direction", type=int, default=8, help="rows per direction in the eval grids")
    parser.add_argument("--cell", type=int, default=96, help="cell size in the figure")
    args = parser.parse_args()
    grids = [read_image(g) for g in args.grids]
    cell_in = grids[0].shape[1] // 3

    def cell(grid: np.ndarray, row: int, col: int) -> np.ndarray:
        img = grid[row * cell_in:(row + 1) * cell_in, col * cell_in:(col + 1) * cell_in]
        return cv2.resize(img, (args.cell, args.cell), interpolation=cv2.INTER_AREA)

    rows = []
    for start in (0, args.per_direction):
        for r in range(start, start + args.rows):
            rows.append(np.concatenate([cell(grids[0], r, 0)] + [cell(g, r, 1) for g in grids], axis=1))
    write_image(Path(args.out), np.concatenate(rows, axis=0))
    print(f"wrote {args.out}: {len(rows)} rows, columns: input, " + ", ".join(args.grids))


if __name__ == "__main__":
    main()
