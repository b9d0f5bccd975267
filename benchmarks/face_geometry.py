"""Where the eyes sit in a folder of aligned portraits (e.g. the U-GAT-IT selfies): the target of face alignment.

    python benchmarks/face_geometry.py --folder ../shared/data/selfie2anime/trainA --n 600

OpenCV's Haar eye cascade (shipped in opencv-python-headless) on each image; an image counts when
exactly two eyes are found in its upper 60%, side by side. Prints, as shares of the image side,
the median eye-line height (from the top), the median distance between the eye centres, the
median tilt of the eye line, and how many images were measured.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from vitcycle.imageio import find_images, read_image


def eye_centres(rgb: np.ndarray, cascade: cv2.CascadeClassifier) -> tuple[np.ndarray, np.ndarray] | None:
    """(left, right) eye centres in pixels (x, y), or None unless exactly two eyes sit side by side up top."""
    h, w = rgb.shape[:2]
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[: int(0.6 * h)])
    eyes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=8, minSize=(w // 12, w // 12))
    if len(eyes) != 2:
        return None
    centres = sorted((x + ew / 2, y + eh / 2) for x, y, ew, eh in eyes)
    left, right = np.array(centres[0]), np.array(centres[1])
    if right[0] - left[0] < w / 8:  # overlapping boxes of one eye
        return None
    return left, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--n", type=int, default=600, help="images to try (the first n, sorted)")
    args = parser.parse_args()
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_eye.xml"))
    files = find_images(args.folder)[: args.n]
    heights, distances, tilts = [], [], []
    for f in files:
        rgb = read_image(f)
        found = eye_centres(rgb, cascade)
        if found is None:
            continue
        (lx, ly), (rx, ry) = found
        side = rgb.shape[1]
        heights.append((ly + ry) / 2 / rgb.shape[0])
        distances.append(math.hypot(rx - lx, ry - ly) / side)
        tilts.append(math.degrees(math.atan2(ry - ly, rx - lx)))
    print(f"{args.folder}: {len(heights)} of {len(files)} images with two eyes found (Haar)")
    print("| eye line from the top | distance between the eyes | tilt of the eye line (median, IQR) |")
    print("|---:|---:|---:|")
    q = lambda v: np.percentile(v, [25, 50, 75])  # noqa: E731
    h, d, t = q(heights), q(distances), q(tilts)
    print(f"| {h[1]:.3f} of the height ({h[0]:.3f}-{h[2]:.3f}) | {d[1]:.3f} of the width ({d[0]:.3f}-{d[2]:.3f}) "
          f"| {t[1]:.1f} deg ({t[0]:.1f} to {t[2]:.1f}) |")


if __name__ == "__main__":
    main()
