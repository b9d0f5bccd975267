"""`vitcycle translate` on files: planning input -> output paths, then `PathTranslator`.

`plan_translation` maps an image, a video or a folder of them to output paths and refuses unsafe
combinations before anything is computed. `PathTranslator` translates the plan file by file with a
progress bar: images in batches, videos frame by frame, optionally aligned face crops
(`vitcycle.faces.align`) pasted back or not, skipping unreadable inputs with a warning.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from vitcycle.data.imageio import IMAGE_EXTENSIONS, MAX_PIXELS, find_files, read_image, write_image
from vitcycle.errors import ImageReadError, ImageTooLargeError, TranslateError, VitcycleError, VitcycleWarning
from vitcycle.faces.align import Alignment, align_faces, crop_face, paste_back
from vitcycle.faces.detect import FaceDetector
from vitcycle.inference.translator import Translator
from vitcycle.outputs import replaced_atomically

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm")
"""Video file endings `vitcycle translate` reads and writes (compared case-insensitively)."""

# mp4v works in every container OpenCV's FFmpeg writes except WebM, which needs VP8.
_FOURCC = {".webm": "VP80"}
_DEFAULT_FOURCC = "mp4v"


@dataclass(frozen=True)
class Job:
    """One input file and where its translation goes."""

    src: Path
    dst: Path
    video: bool


@dataclass
class TranslateSummary:
    """What `PathTranslator.run` did: files written and (file, reason) of those skipped."""

    translated: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    no_face: int = 0


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _normalise_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    ext = "." + ext.lower().lstrip(".")
    if ext not in IMAGE_EXTENSIONS:
        raise TranslateError(f"extension {ext} is not an image format; use one of {' '.join(IMAGE_EXTENSIONS)}")
    return ext


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_translation(input: str | os.PathLike, output: str | os.PathLike, ext: str | None = None) -> list[Job]:
    """Input -> output paths for `vitcycle translate`, checked before anything is computed.

    An image or video file goes to `output` (a file), or into `output` when it is a folder or has
    no suffix. A folder is searched recursively and mirrored under `output`. Images keep their
    extension unless `ext` is given; videos keep theirs. Refuses outputs that would overwrite an
    input, an output folder inside the input folder, and two inputs mapping to one output.
    """
    src, out = Path(input).expanduser(), Path(output).expanduser()
    ext = _normalise_ext(ext)
    known = " ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    if not src.exists():
        raise TranslateError(f"input {src} does not exist; give an image, a video or a folder of them")

    def renamed(path: Path) -> Path:
        return path if ext is None or _is_video(path) else path.with_suffix(ext)

    if src.is_file():
        video = _is_video(src)
        if not video and src.suffix.lower() not in IMAGE_EXTENSIONS:
            raise TranslateError(f"input {src} is not an image or video file (known endings: {known})")
        if out.is_dir() or not out.suffix:
            jobs = [Job(src, out / renamed(Path(src.name)), video)]
        else:
            wanted = VIDEO_EXTENSIONS if video else IMAGE_EXTENSIONS
            if out.suffix.lower() not in wanted:
                kind = "a video" if video else "an image"
                raise TranslateError(
                    f"output {out}: the input is {kind}, so the output must end in one of {' '.join(wanted)} "
                    "(or be a folder)"
                )
            jobs = [Job(src, out, video)]
    else:
        if out.is_file():
            raise TranslateError(f"output {out} is a file; a folder input needs an output folder")
        src_r, out_r = src.resolve(), out.resolve()
        if _is_within(out_r, src_r):
            raise TranslateError(
                f"output {out} is inside the input folder {src}; choose an output folder outside it "
                "(it would be read as input next time and risks overwriting inputs)"
            )
        files = sorted(find_files(src, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))
        if not files:
            raise TranslateError(f"input {src} holds no images or videos (known endings: {known}, searched recursively)")
        jobs = [Job(f, out / renamed(f.relative_to(src)), _is_video(f)) for f in files]

    inputs = {j.src.resolve() for j in jobs}
    seen: dict[Path, Path] = {}
    for job in jobs:
        dst = job.dst.resolve()
        if dst in inputs:
            raise TranslateError(f"output {out} would overwrite the input {job.src}; choose another output path")
        if dst in seen:
            raise TranslateError(
                f"{seen[dst]} and {job.src} would both be written to {job.dst}; keep their extensions or rename one"
            )
        seen[dst] = job.src
    return jobs


def batched(items: Sequence, n: int) -> Iterator[Sequence]:
    """Consecutive slices of `items` of length `n` (the last may be shorter)."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


class PathTranslator:
    """Translates the files of a plan (`plan_translation`): images in batches, videos frame by frame.

    Args:
        translator: the loaded generator.
        size: processing size of the longer side (None: the training size).
        batch_size: images or video frames per forward pass.
        faces: translate the aligned faces this detector finds instead of the whole image (None: whole images).
        paste_back: with faces, blend each translated face back into the original image.
        all_faces: with faces and paste_back, translate every face found (default: the largest).
        style: reference image (RGB uint8) for a generator with a style encoder.
        grid: write input | output side by side instead of the output alone.
        max_pixels: skip images or videos whose frames have more pixels than this.
        margin: crop margin around a face whose eyes were not found, as a share of its side each way.
    """

    def __init__(
        self,
        translator: Translator,
        size: int | None = None,
        batch_size: int = 8,
        faces: FaceDetector | None = None,
        paste_back: bool = False,
        all_faces: bool = False,
        style: np.ndarray | None = None,
        grid: bool = False,
        max_pixels: float = MAX_PIXELS,
        margin: float = 0.5,
    ) -> None:
        if batch_size < 1:
            raise VitcycleError(f"batch size {batch_size} must be at least 1")
        if all_faces and not (faces and paste_back):
            raise VitcycleError("every face can only be translated when the faces are pasted back into the image")
        self.translator = translator
        self.size = int(size or translator.image_size)
        self.batch_size = batch_size
        self.faces = faces
        self.face_crop = faces is not None
        self.paste_back = paste_back
        self.all_faces = all_faces
        self.style = translator.prepare_style(style, self.size) if style is not None else None  # (1, 3, h, w)
        self.grid = grid
        self.max_pixels = max_pixels
        self.margin = margin

    def run(self, jobs: Sequence[Job]) -> TranslateSummary:
        """Translate every job; unreadable or too large inputs are skipped with a warning."""
        summary = TranslateSummary()
        images = [j for j in jobs if not j.video]
        if images:
            with tqdm(total=len(images), desc="translate", unit="img", disable=None, file=sys.stderr) as bar:
                for chunk in batched(images, self.batch_size):
                    self._run_images(chunk, summary)
                    bar.update(len(chunk))
        for job in (j for j in jobs if j.video):
            self._run_video(job, summary)
        return summary

    def _skip(self, summary: TranslateSummary, path: Path, reason: str) -> None:
        summary.skipped.append((path, reason))
        warnings.warn(f"skipped {path}: {reason}", VitcycleWarning, stacklevel=3)

    # ------------------------------------------------------------------ images
    def _crop_inputs(self, frames: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[list[Alignment]]]:
        """The images to translate (aligned face crops, or whole frames) and each frame's alignments
        ([] for a frame translated whole)."""
        if self.faces is None:
            return list(frames), [[] for _ in frames]
        crops, alignments = [], []
        for frame in frames:
            found = align_faces(frame, self.faces, self.all_faces, margin=self.margin)
            crops.extend([crop_face(frame, a) for a in found] if found else [frame])
            alignments.append(found)
        return crops, alignments

    def _compose(
        self, frame: np.ndarray, crops: list[np.ndarray], outs: list[np.ndarray], found: list[Alignment], paste: bool
    ) -> np.ndarray:
        """The image to write: the output (faces pasted back when asked), or input | output (`grid`)."""
        if found and paste:
            shown, out = frame, frame
            for alignment, face in zip(found, outs, strict=True):
                out = paste_back(out, face, alignment)
        else:
            shown, out = crops[0], outs[0]
        return np.concatenate([shown, out], axis=1) if self.grid else out  # (h, 2w, 3) or (h, w, 3)

    def _translate_frames(self, frames: Sequence[np.ndarray], paste: bool) -> tuple[list[np.ndarray], list[bool]]:
        """The composed output of each frame, and whether faces were asked for but none was found in it."""
        crops, alignments = self._crop_inputs(frames)
        outs = self.translator.translate_batch(crops, size=self.size, style=self.style)
        composed, start = [], 0
        for frame, found in zip(frames, alignments, strict=True):
            n = max(1, len(found))
            composed.append(self._compose(frame, crops[start : start + n], outs[start : start + n], found, paste))
            start += n
        return composed, [self.face_crop and not found for found in alignments]

    def _run_images(self, chunk: Sequence[Job], summary: TranslateSummary) -> None:
        loaded: list[tuple[Job, np.ndarray]] = []
        for job in chunk:
            try:
                loaded.append((job, read_image(job.src, self.max_pixels)))  # the header is checked first
            except ImageTooLargeError as err:
                self._skip(summary, job.src, f"{err.width}x{err.height} is over the pixel limit {self.max_pixels:.0f}")
            except ImageReadError as err:
                self._skip(summary, job.src, str(err).removeprefix(f"cannot read image {job.src}: "))
        if not loaded:
            return
        composed, no_face = self._translate_frames([img for _, img in loaded], self.paste_back)
        for (job, _), out, missing in zip(loaded, composed, no_face, strict=True):
            if missing:
                summary.no_face += 1
                warnings.warn(f"no face found in {job.src}; translating the whole image", VitcycleWarning, stacklevel=3)
            write_image(job.dst, out)
            summary.translated.append(job.dst)

    # ------------------------------------------------------------------ videos
    def _run_video(self, job: Job, summary: TranslateSummary) -> None:
        cap = cv2.VideoCapture(str(job.src))
        try:
            if not cap.isOpened():
                self._skip(summary, job.src, "cannot open the video (unsupported codec or not a video)")
                return
            width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if width * height > self.max_pixels:
                self._skip(summary, job.src, f"{width}x{height} frames are over the pixel limit {self.max_pixels:.0f}")
                return
            fps = cap.get(cv2.CAP_PROP_FPS)
            if not fps or not math.isfinite(fps) or fps <= 0:
                warnings.warn(f"{job.src} reports no frame rate; writing 25 fps", VitcycleWarning, stacklevel=3)
                fps = 25.0
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            paste = self.paste_back or not self.face_crop
            if self.face_crop and not self.paste_back:
                warnings.warn(
                    f"{job.src}: face crops of a video are pasted back (frames must keep one size)",
                    VitcycleWarning,
                    stacklevel=3,
                )
            # Written to a temporary file that replaces job.dst only when frames were written, so a
            # video that cannot be decoded leaves an existing file at the output path untouched.
            with contextlib.suppress(_NoFrames), replaced_atomically(job.dst) as tmp:
                if self._write_video(cap, job, tmp, fps, total, paste, summary) == 0:
                    raise _NoFrames
                summary.translated.append(job.dst)
        finally:
            cap.release()
        if job.dst not in summary.translated:
            self._skip(summary, job.src, "no frame could be decoded")

    def _write_video(
        self, cap: cv2.VideoCapture, job: Job, path: Path, fps: float, total: int | None, paste: bool,
        summary: TranslateSummary,
    ) -> int:
        """Translate the frames of `cap` into a video at `path`; the number of frames written."""
        writer: cv2.VideoWriter | None = None
        done, no_face = 0, 0
        bar = tqdm(total=total, desc=job.src.name, unit="frame", disable=None, file=sys.stderr)
        try:
            while True:
                frames = []
                while len(frames) < self.batch_size:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                if not frames:
                    break
                outs, missing = self._translate_frames(frames, paste)
                no_face += sum(missing)
                for composed in outs:
                    if writer is None:
                        writer = self._open_writer(path, job.dst, fps, composed.shape[1], composed.shape[0])
                    writer.write(cv2.cvtColor(composed, cv2.COLOR_RGB2BGR))
                done += len(frames)
                bar.update(len(frames))
        finally:
            bar.close()
            if writer is not None:
                writer.release()
        if no_face:
            summary.no_face += no_face
            warnings.warn(
                f"no face found in {no_face} of {done} frames of {job.src}; those frames were translated whole",
                VitcycleWarning,
                stacklevel=3,
            )
        return done

    @staticmethod
    def _open_writer(path: Path, shown: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
        """A writer of `path` (a temporary file); errors name `shown`, the output the user asked for."""
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(path.suffix.lower(), _DEFAULT_FOURCC))
        writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
        if not writer.isOpened():
            if not os.access(path.parent, os.W_OK):
                raise TranslateError(f"cannot write video {shown}: the folder {shown.parent} is not writable")
            other = ".avi" if path.suffix.lower() == ".mp4" else ".mp4"
            raise TranslateError(f"cannot write video {shown}: OpenCV has no encoder for {path.suffix} here; try {other}")
        return writer


class _NoFrames(Exception):
    """No frame of a video could be decoded (internal: discards the partial output)."""

