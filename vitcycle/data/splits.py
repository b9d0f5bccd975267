"""A fixed, seeded held-out test split of two image folders, written as file lists.

`vitcycle data split` holds out `n_test` images of each folder. The lists (`test_a.txt`,
`test_b.txt`) are what eval takes as its test sets and the judge as its held-out lists,
and what the data module's `exclude` keeps out of training and validation, so neither the GAN nor
the judge ever sees the images they are scored on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vitcycle.data.imageio import find_images, read_file_list, write_file_list
from vitcycle.errors import DataError

SPLIT_FILES = ("test_a.txt", "test_b.txt")
"""Names of the two lists in a split folder."""


def hold_out(files: list[Path], n_test: int, seed: int, side: int) -> list[Path]:
    """`n_test` of `files` (sorted), chosen by (seed, side); the same call gives the same files."""
    if not 0 < n_test < len(files):
        raise DataError(f"cannot hold out {n_test} of {len(files)} images; ask for between 1 and {len(files) - 1}")
    picked = np.random.default_rng([seed, side, 7]).permutation(len(files))[:n_test]
    return [files[i] for i in sorted(picked.tolist())]


def make_split(
    dir_a: str | os.PathLike, dir_b: str | os.PathLike, out: str | os.PathLike, n_test: int = 200, seed: int = 0
) -> tuple[Path, Path]:
    """Write `out/test_a.txt` and `out/test_b.txt`: `n_test` held-out images of each folder.

    Writing the same split again is a no-op; an existing different split is refused (never
    overwritten), since models trained around it would no longer be scored on unseen images.
    """
    out = Path(out)
    paths = tuple(out / name for name in SPLIT_FILES)
    for side, (folder, path) in enumerate(zip((dir_a, dir_b), paths, strict=True)):
        files = find_images(folder)
        if not files:
            raise DataError(f"{folder} holds no images")
        test = hold_out(files, n_test, seed, side)
        if path.exists():
            if [f.resolve() for f in read_file_list(path)] != [f.resolve() for f in test]:
                raise DataError(
                    f"{path} already holds a different split; keep it, or delete it (and the models "
                    "trained around it) to make a new one"
                )
            continue
        write_file_list(test, path)
    return paths
