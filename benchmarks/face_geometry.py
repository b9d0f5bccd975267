"""Where the eyes sit in a folder of aligned portraits (e.g. the U-GAT-IT selfies): the target of face alignment.

    python benchmarks/face_geometry.py --folder ../shared/data/selfie2anime/trainA --n 600

Runs the face detector `vitcycle translate --face-crop` uses (MTCNN landmarks with the `faces`
extra; `--detector haar` for OpenCV's cascades) on each image and takes the largest face whose eyes
were found. Prints, as shares of the image side, the median eye-line height (from the top), the
median distance between the eye centres, the median tilt of the eye line, and how many images
were measured. `vitcycle.faces.align.EYE_LINE` and `EYE_DISTANCE` hold the MTCNN figures.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from vitcycle.data.imageio import find_images, read_image
from vitcycle.faces.detect import face_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--n", type=int, default=600, help="images to try (the first n, sorted)")
    parser.add_argument("--detector", default="auto", help="auto, mtcnn or haar")
    args = parser.parse_args()
    detector = face_detector(args.detector)
    files = find_images(args.folder)[: args.n]
    heights, distances, tilts = [], [], []
    for f in files:
        rgb = read_image(f)
        found = [face for face in detector(rgb) if face.eyes is not None]  # largest first
        if not found:
            continue
        (lx, ly), (rx, ry) = found[0].eyes
        heights.append((ly + ry) / 2 / rgb.shape[0])
        distances.append(math.hypot(rx - lx, ry - ly) / rgb.shape[1])
        tilts.append(math.degrees(math.atan2(ry - ly, rx - lx)))
    print(f"{args.folder}: {len(heights)} of {len(files)} images with both eyes found ({detector.name})")
    print("| eye line from the top | distance between the eyes | tilt of the eye line (median, IQR) |")
    print("|---:|---:|---:|")
    q = lambda v: np.percentile(v, [25, 50, 75])  # noqa: E731
    h, d, t = q(heights), q(distances), q(tilts)
    print(f"| {h[1]:.3f} of the height ({h[0]:.3f}-{h[2]:.3f}) | {d[1]:.3f} of the width ({d[0]:.3f}-{d[2]:.3f}) "
          f"| {t[1]:.1f} deg ({t[0]:.1f} to {t[2]:.1f}) |")


if __name__ == "__main__":
    main()
