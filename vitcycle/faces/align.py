"""Face alignment: a similarity warp that puts a face's eyes where the training portraits have them, and back.

A portrait translator is trained on aligned faces (the U-GAT-IT selfies: eyes level, the eye line
at 0.351 of the height, the eyes 0.299 of the width apart; `benchmarks/face_geometry.py`). A photo
is warped the same way before translation (`crop_face`) and the translated face warped back into
the photo (`paste_back`): only the pixels the face crop covers change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from vitcycle.errors import VitcycleError
from vitcycle.faces.detect import Face, FaceDetector

EYE_LINE = 0.351
"""Height of the eye line in an aligned face, as a share of the crop side (median of MTCNN on 573 of the first 600 U-GAT-IT selfies)."""
EYE_DISTANCE = 0.299
"""Distance between the eye centres in an aligned face, as a share of the crop side (same measurement)."""


@dataclass(frozen=True)
class Alignment:
    """Where a face crop comes from: `matrix` (2, 3) maps image pixels to crop pixels; the crop is size x size."""

    matrix: np.ndarray
    size: int

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image points -> (N, 2) crop points."""
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]


def face_alignment(
    face: Face, eye_line: float = EYE_LINE, eye_distance: float = EYE_DISTANCE, margin: float = 0.5,
    size: int | None = None,
) -> Alignment:
    """The similarity transform that levels the eyes of `face` and puts them at (0.5 -+ eye_distance / 2,
    eye_line) of the crop side; a face without eyes found gets a square around its box grown by `margin`.

    size: the crop side in pixels (None: the face's own resolution, so no detail is lost before
    the translator resizes it).
    """
    if not (0 < eye_line < 1 and 0 < eye_distance < 1):
        raise VitcycleError(f"eye line {eye_line} and eye distance {eye_distance} must be shares of the crop side, in (0, 1)")
    if face.eyes is not None and math.dist(*face.eyes) >= 1.0:
        (lx, ly), (rx, ry) = face.eyes
        side = math.dist(*face.eyes) / eye_distance  # the crop side in image pixels
        angle = math.atan2(ry - ly, rx - lx)
        centre, goal = ((lx + rx) / 2.0, (ly + ry) / 2.0), (0.5, eye_line)  # the eyes' midpoint, and where it goes
    else:
        x0, y0, x1, y1 = face.box
        side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
        angle = 0.0
        centre, goal = ((x0 + x1) / 2.0, (y0 + y1) / 2.0), (0.5, 0.5)
    out = max(1, round(side)) if size is None else size
    cos, sin = out / side * math.cos(angle), out / side * math.sin(angle)
    matrix = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])  # rotation by -angle, scaled
    matrix[:, 2] = np.array(goal) * out - matrix[:, :2] @ np.array(centre)
    return Alignment(matrix, out)


def crop_face(rgb: np.ndarray, alignment: Alignment) -> np.ndarray:
    """The aligned face crop, (size, size, 3); beyond the photo's edge its border pixels repeat."""
    size = (alignment.size, alignment.size)
    return cv2.warpAffine(rgb, alignment.matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def paste_back(rgb: np.ndarray, patch: np.ndarray, alignment: Alignment, feather: float = 0.1) -> np.ndarray:
    """`rgb` with the translated crop `patch` warped back where it came from.

    The blend weight ramps from 0 at the crop's edge to 1 inside over `feather` of its side, so no
    seam shows; pixels the crop does not cover are returned unchanged, bit for bit.
    """
    size = alignment.size
    if patch.shape[:2] != (size, size):
        patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_LINEAR)
    ramp = max(1.0, feather * size)
    d = np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5  # distance to the nearer edge
    edge = np.clip(d / ramp, 0.0, 1.0).astype(np.float32)
    alpha = edge[:, None] * edge[None, :]  # (size, size)
    h, w = rgb.shape[:2]
    inverse = cv2.invertAffineTransform(alignment.matrix)
    back = cv2.warpAffine(patch, inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(alpha, inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inside = weight > 0  # (h, w)
    out = rgb.copy()
    wt = weight[inside][:, None]  # (n, 1)
    out[inside] = np.round(wt * back[inside].astype(np.float32) + (1.0 - wt) * rgb[inside].astype(np.float32)).astype(np.uint8)
    return out




def align_face(
    rgb: np.ndarray, face: Face, detector: FaceDetector, refine: int = 1, eye_line: float = EYE_LINE,
    eye_distance: float = EYE_DISTANCE, margin: float = 0.5, size: int | None = None,
) -> Alignment:
    """`face_alignment`, refined: the eyes are found again in the aligned crop, where the face is
    upright (landmark detectors are most precise there), and the alignment redone from them."""
    geometry = dict(eye_line=eye_line, eye_distance=eye_distance, margin=margin, size=size)
    alignment = face_alignment(face, **geometry)
    for _ in range(refine if face.eyes is not None else 0):
        target = np.array([alignment.size / 2.0, eye_line * alignment.size])
        found = [f for f in detector(crop_face(rgb, alignment)) if f.eyes is not None]
        if not found:
            break
        eyes = min((np.array(f.eyes) for f in found), key=lambda e: np.linalg.norm(e.mean(0) - target))  # (2, 2)
        inverse = cv2.invertAffineTransform(alignment.matrix)
        left, right = eyes @ inverse[:, :2].T + inverse[:, 2]  # back to image pixels
        alignment = face_alignment(Face(face.box, (tuple(left), tuple(right)), face.score), **geometry)
    return alignment


def align_faces(rgb: np.ndarray, detector: FaceDetector, all_faces: bool = False, **kwargs) -> list[Alignment]:
    """The alignment of every face in `rgb` (largest first), or of the largest alone; [] when none is found.

    kwargs: those of `align_face` (refine, eye_line, eye_distance, margin, size).
    """
    faces = detector(rgb)  # largest first
    return [align_face(rgb, face, detector, **kwargs) for face in (faces if all_faces else faces[:1])]
