"""Faces in photos, with their eyes: MTCNN landmarks (the `faces` extra) or OpenCV's Haar cascades.

`face_detector()` gives MTCNN from facenet-pytorch when it is installed (`pip install
'vitcycle[faces]'`): its weights ship inside the wheel (2 MB), so nothing is downloaded, and it
finds five landmarks per face, of which alignment uses the two eyes. Without the extra it falls
back to the Haar cascades that ship with OpenCV: a face box, and the eyes when exactly two are
found side by side in the upper part of the box (otherwise the face is cropped unrotated).
facenet-pytorch stays below 2.6, whose wheel pins torch<2.3 and numpy<2 (2.5.3 pins neither).
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from vitcycle.errors import VitcycleError

Point = tuple[float, float]
"""(x, y) in pixels of the image."""

DETECTORS = ("auto", "mtcnn", "haar")
"""What `face_detector` accepts: auto is MTCNN when the `faces` extra is installed, else Haar."""


@dataclass(frozen=True)
class Face:
    """One detected face: its box (x0, y0, x1, y1), its eye centres (image-left first, or None) and score."""

    box: tuple[float, float, float, float]
    eyes: tuple[Point, Point] | None
    score: float = 1.0

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class FaceDetector(Protocol):
    name: str

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        """The faces in an (H, W, 3) RGB uint8 image, largest first."""
        ...


def _eyes_in_order(a: Point, b: Point) -> tuple[Point, Point]:
    return (a, b) if a[0] <= b[0] else (b, a)


class MtcnnDetector:
    """facenet-pytorch's MTCNN (P/R/O-Net cascade), five landmarks per face; runs on the CPU.

    MTCNN is small (0.5 M parameters) and its cascade runs many tiny forward passes: it is
    faster on the CPU than a GPU round trip for one photo, and leaves the GPU to the generator.
    """

    name = "mtcnn"

    def __init__(self, min_score: float = 0.9) -> None:
        from facenet_pytorch import MTCNN

        self._mtcnn = MTCNN(keep_all=True, device="cpu")
        self.min_score = min_score
        self._lock = threading.Lock()  # one detection at a time (serve calls it from several threads)

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        with self._lock:
            boxes, scores, points = self._mtcnn.detect(np.ascontiguousarray(rgb), landmarks=True)
        if boxes is None:
            return []
        faces = []
        for box, score, pts in zip(boxes, scores, points, strict=True):
            if float(score) < self.min_score:
                continue
            pts = np.asarray(pts, dtype=np.float64)  # (5, 2): the two eyes, nose, the mouth corners
            eyes = _eyes_in_order((pts[0, 0], pts[0, 1]), (pts[1, 0], pts[1, 1]))
            faces.append(Face(tuple(float(v) for v in box), eyes, float(score)))
        return sorted(faces, key=lambda f: f.area, reverse=True)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, and its eye cascade inside each face (no extra needed)."""

    name = "haar"

    def __init__(self) -> None:
        self._face = _cascade("haarcascade_frontalface_default.xml")
        self._eye = _cascade("haarcascade_eye.xml")
        self._lock = threading.Lock()

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        min_side = max(24, min(gray.shape) // 10)
        with self._lock:
            found = self._face.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
            faces = [Face((x, y, x + w, y + h), self._eyes(gray, x, y, w, h)) for x, y, w, h in map(list, found)]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _eyes(self, gray: np.ndarray, x: int, y: int, w: int, h: int) -> tuple[Point, Point] | None:
        """Both eye centres when exactly two eyes sit side by side in the upper 60% of the face box."""
        top = gray[y : y + int(0.6 * h), x : x + w]
        eyes = self._eye.detectMultiScale(top, scaleFactor=1.1, minNeighbors=6, minSize=(w // 8, w // 8))
        if len(eyes) != 2:
            return None
        (ax, ay), (bx, by) = ((x + ex + ew / 2, y + ey + eh / 2) for ex, ey, ew, eh in eyes)
        if abs(bx - ax) < w / 5:  # two boxes on one eye
            return None
        return _eyes_in_order((float(ax), float(ay)), (float(bx), float(by)))


def _cascade(name: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, name)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise VitcycleError(f"face detection: cannot load OpenCV's cascade {path}; reinstall opencv-python-headless")
    return cascade


def mtcnn_available() -> bool:
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def face_detector(kind: str = "auto") -> FaceDetector:
    """The detector `kind` names (one instance per process): auto, mtcnn or haar."""
    if kind not in DETECTORS:
        raise VitcycleError(f"face detector {kind!r} is not one of {', '.join(DETECTORS)}")
    if kind == "haar" or (kind == "auto" and not mtcnn_available()):
        return HaarDetector()
    if not mtcnn_available():
        raise VitcycleError("the mtcnn face detector needs the faces extra: pip install 'vitcycle[faces]'")
    return MtcnnDetector()
