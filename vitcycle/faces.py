"""Face crops for translating portraits: OpenCV's Haar face detector, a square box, a feathered paste-back."""

from __future__ import annotations

import functools
import os

import cv2
import numpy as np

from vitcycle.errors import VitcycleError

FACE_CASCADE = "haarcascade_frontalface_default.xml"
"""OpenCV's frontal-face Haar cascade, shipped with opencv-python(-headless) under cv2.data.haarcascades."""


@functools.cache
def _face_cascade() -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, FACE_CASCADE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise VitcycleError(f"face crop: cannot load OpenCV's face detector {path}; reinstall opencv-python-headless")
    return cascade


def detect_largest_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest frontal face OpenCV's Haar cascade finds, or None."""
    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    min_side = max(24, min(gray.shape) // 10)
    faces = _face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return int(x), int(y), int(w), int(h)


def face_box(face: tuple[int, int, int, int], shape: tuple[int, ...], margin: float = 0.5) -> tuple[int, int, int, int]:
    """A square (x0, y0, x1, y1) around `face` grown by `margin` of its side each way, clipped to the image."""
    x, y, w, h = face
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    H, W = shape[:2]
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(W, round(cx + side / 2)), min(H, round(cy + side / 2))
    return x0, y0, x1, y1


def paste_back(image: np.ndarray, patch: np.ndarray, box: tuple[int, int, int, int], feather: float = 0.1) -> np.ndarray:
    """`image` with `patch` blended into `box`; the blend weight ramps from 0 at the box edge to 1 inside.

    The ramp is `feather` of the box side wide (at least 1 px), so no seam shows.
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if patch.shape[:2] != (h, w):
        raise VitcycleError(f"paste_back: patch {patch.shape[:2]} does not match box {h}x{w}")
    ramp = max(1.0, feather * min(h, w))

    def edge_weight(n: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) + 0.5  # distance to the nearer edge
        return np.clip(d / ramp, 0.0, 1.0)

    alpha = (edge_weight(h)[:, None] * edge_weight(w)[None, :])[:, :, None]  # (h, w, 1)
    out = image.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.round(alpha * patch.astype(np.float32) + (1.0 - alpha) * region).astype(np.uint8)
    return out
