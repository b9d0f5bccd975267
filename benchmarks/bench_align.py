"""How well face alignment undoes a known rotation: real selfies turned by known angles.

    python benchmarks/bench_align.py --folder ../shared/data/selfie2anime/trainA --n 40

Each selfie is placed upright on a larger grey photo; its eyes found there are the reference. The
photo is turned by each angle, aligned (`vitcycle.faces.align.align_face`, with 0, 1 or 2 refinements),
and the reference eyes carried through the rotation and the alignment: their tilt and eye-line
height in the crop are the alignment's error. Prints one row per refinement count; `--grid PNG`
also draws the first two selfies' turned photos over their aligned faces.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np

from vitcycle.data.imageio import find_images, read_image, write_image
from vitcycle.faces.align import EYE_LINE, align_face, crop_face
from vitcycle.faces.detect import face_detector


def write_grid(path: Path, photos: list[np.ndarray], detector, side: int = 160) -> None:
    """Row 1: the turned photos; row 2: their aligned faces (the default alignment)."""
    top, bottom = [], []
    for photo in photos:
        faces = detector(photo)
        crop = crop_face(photo, align_face(photo, faces[0], detector)) if faces else np.zeros_like(photo)
        top.append(cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA))
        bottom.append(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA))
    write_image(path, np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--n", type=int, default=40, help="selfies (the first n, sorted)")
    parser.add_argument("--angles", type=float, nargs="+", default=[-30, -15, 15, 30])
    parser.add_argument("--detector", default="auto", help="auto, mtcnn or haar")
    parser.add_argument("--grid", type=Path, default=None, help="also write a PNG: turned photos over their aligned crops")
    args = parser.parse_args()
    detector = face_detector(args.detector)
    cases = []  # (photo, reference eyes in it)
    for path in find_images(args.folder)[: args.n]:
        selfie = read_image(path)
        side = 2 * max(selfie.shape[:2])
        canvas = np.full((side, side, 3), 90, np.uint8)
        top, left = (side - selfie.shape[0]) // 2, (side - selfie.shape[1]) // 2
        canvas[top : top + selfie.shape[0], left : left + selfie.shape[1]] = selfie
        found = [f for f in detector(canvas) if f.eyes is not None]
        if not found:
            continue
        for angle in args.angles:
            turn = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
            photo = cv2.warpAffine(canvas, turn, (side, side), borderValue=(90, 90, 90))
            cases.append((photo, np.array(found[0].eyes) @ turn[:, :2].T + turn[:, 2]))
    print(f"{len(cases)} turned photos ({len(cases) // len(args.angles)} selfies x angles {args.angles}), {detector.name}")
    print("| refinements | faces found | tilt error median / 90% / max | eye-line error median / max | s per photo |")
    print("|---:|---:|---:|---:|---:|")
    for refine in (0, 1, 2):
        tilts, lines, found, start = [], [], 0, time.perf_counter()
        for photo, eyes in cases:
            faces = detector(photo)
            if not faces:
                continue
            found += 1
            alignment = align_face(photo, faces[0], detector, refine=refine)
            (lx, ly), (rx, ry) = alignment.to_crop(eyes)
            tilts.append(abs(math.degrees(math.atan2(ry - ly, rx - lx))))
            lines.append(abs((ly + ry) / 2 / alignment.size - EYE_LINE))
        seconds = (time.perf_counter() - start) / len(cases)
        t, line = np.percentile(tilts, [50, 90, 100]), np.percentile(lines, [50, 100])
        if refine == 1 and args.grid is not None:
            write_grid(args.grid, [photo for photo, _ in cases[: 2 * len(args.angles)]], detector)
        print(f"| {refine} | {found}/{len(cases)} | {t[0]:.1f} / {t[1]:.1f} / {t[2]:.1f} deg "
              f"| {line[0]:.3f} / {line[1]:.3f} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
