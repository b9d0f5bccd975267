"""`vitcycle data align`: a folder of photos -> a folder of aligned face crops to train on.

Each photo's largest face (or every face) is aligned as `vitcycle.faces.align` does for translation, so
a model trained on the output sees faces framed the way `translate --face-crop` will show them.
Paths are planned as `vitcycle translate` plans them (mirrored folders, no input overwritten).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm.auto import tqdm

from vitcycle.data.imageio import MAX_PIXELS, read_image, write_image
from vitcycle.errors import ImageReadError, ImageTooLargeError, VitcycleError, VitcycleWarning
from vitcycle.faces.align import align_faces, crop_face
from vitcycle.faces.detect import FaceDetector
from vitcycle.inference.files import plan_translation


@dataclass
class AlignSummary:
    """What `align_folder` did: crops written, photos without a face, and (file, reason) of those skipped."""

    written: list[Path] = field(default_factory=list)
    no_face: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def align_folder(
    input: str | os.PathLike, output: str | os.PathLike, detector: FaceDetector, size: int = 256,
    all_faces: bool = False, max_pixels: float = MAX_PIXELS, **geometry,
) -> AlignSummary:
    """Write the aligned face crops (size x size) of the photos under `input` to `output`.

    The largest face keeps the photo's name; with `all_faces` the others are `<name>_face2`, ...
    geometry: `eye_line`, `eye_distance` (see `vitcycle.faces.align`).
    """
    if size < 8:
        raise VitcycleError(f"aligned face size {size} is too small; give at least 8 pixels")
    jobs = plan_translation(input, output)
    summary = AlignSummary()
    for job in tqdm(jobs, desc="align", unit="img", disable=None, file=sys.stderr):
        if job.video:
            summary.skipped.append((job.src, "a video (align photos)"))
            continue
        try:
            rgb = read_image(job.src, max_pixels)
        except ImageTooLargeError as err:
            summary.skipped.append((job.src, f"{err.width}x{err.height} is over the pixel limit {max_pixels:.0f}"))
            continue
        except ImageReadError as err:
            summary.skipped.append((job.src, str(err).removeprefix(f"cannot read image {job.src}: ")))
            continue
        found = align_faces(rgb, detector, all_faces, **geometry)
        if not found:
            summary.no_face.append(job.src)
        for i, alignment in enumerate(found):
            crop = crop_face(rgb, alignment)  # at the face's own resolution, then resized without aliasing
            shrink = cv2.INTER_AREA if alignment.size > size else cv2.INTER_LINEAR
            dst = job.dst if i == 0 else job.dst.with_name(f"{job.dst.stem}_face{i + 1}{job.dst.suffix}")
            write_image(dst, cv2.resize(crop, (size, size), interpolation=shrink))
            summary.written.append(dst)
    for path, reason in summary.skipped:
        warnings.warn(f"skipped {path}: {reason}", VitcycleWarning, stacklevel=2)
    if summary.no_face:
        warnings.warn(f"no face found in {len(summary.no_face)} photo(s), e.g. {summary.no_face[0]}; not written",
                      VitcycleWarning, stacklevel=2)
    return summary
