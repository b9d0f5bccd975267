"""Image files: finding them, file lists and pair manifests, reading, writing, and to tensors.

The one way the project reads and writes images (training, translate, eval, the judge): formats
are decided by content, EXIF orientation is applied, every error names the file.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from vitcycle.errors import DataError, ImageReadError, ImageTooLargeError, ImageWriteError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
"""File name endings `find_images` collects (compared case-insensitively)."""

FILE_LIST_SUFFIX = ".txt"
"""A file list: one image path per line, relative to the list's folder unless absolute."""

_EXIF_ORIENTATION_TAG = 0x0112


def find_images(root: str | os.PathLike) -> list[Path]:
    """All images under `root`, recursively and sorted; `root` itself if it is an image file; the
    files it lists if it is a file list (.txt, as `vitcycle data split` writes; see `read_file_list`).

    An image is a file whose name ends in one of IMAGE_EXTENSIONS (any case); see `find_files`.
    """
    if Path(root).suffix.lower() == FILE_LIST_SUFFIX and Path(root).is_file():
        return read_file_list(root)
    return find_files(root, IMAGE_EXTENSIONS)


def read_file_list(path: str | os.PathLike) -> list[Path]:
    """The images listed in a .txt file, one per line (blank lines and "#" comments ignored).

    Raises DataError if the list is missing or empty, or names a file that does not exist.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"file list {path} does not exist (expected a .txt file with one image path per line)")
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    files = [path.parent / line for line in lines if line and not line.startswith("#")]
    if not files:
        raise DataError(f"file list {path} lists no images")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"file list {path} names missing files: {', '.join(missing[:3])}{more}")
    return files


def listed_files(lists: Sequence[str | os.PathLike]) -> set[Path]:
    """The resolved paths of every image named by the file lists `lists` (e.g. a held-out split)."""
    return {f.resolve() for listed in lists for f in read_file_list(listed)}


def write_file_list(files: Sequence[str | os.PathLike], path: str | os.PathLike) -> Path:
    """Write `files` as a file list (paths relative to the list's folder), readable by `read_file_list`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [os.path.relpath(Path(f).resolve(), path.parent.resolve()) for f in files]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def find_files(root: str | os.PathLike, extensions: Sequence[str]) -> list[Path]:
    """Files under `root` whose names end in one of `extensions` (lower case, with the dot; any case
    matches), recursively and sorted; `root` itself if it is such a file.

    Hidden files and folders (name starting with ".", e.g. macOS "._x.jpg" resource forks) are
    skipped. Symlinked folders are followed once; broken or looping symlinked files are skipped with
    a warning. Raises DataError if `root` does not exist.
    """
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix.lower() in extensions else []
    if not root.is_dir():
        raise DataError(f"{root} does not exist (expected a folder, or a file ending in {' '.join(extensions)})")
    found: list[Path] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink loop or a folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith(".") or os.path.splitext(f)[1].lower() not in extensions:
                continue
            path = Path(folder, f)
            if not os.path.isfile(path):  # a broken or looping symbolic link: nothing to read
                warnings.warn(f"skipping {path}: a broken or looping symbolic link", stacklevel=2)
                continue
            found.append(path)
    return sorted(found)


def _sniff(head: bytes) -> str:
    """The container format from the first bytes of a file ("" if unknown)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return ""


def _jpeg_segments(buf: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset) of each segment of a JPEG after its start marker; stops at the buffer's end
    or at a byte that is not a marker (a broken file)."""
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            return
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        yield marker, i
        unsized = 0xD0 <= marker <= 0xD7 or marker == 0x01  # markers without a length
        i += 2 if unsized else 2 + int.from_bytes(buf[i + 2 : i + 4], "big")


def _jpeg_is_complete(buf: bytes) -> bool:
    """True if the JPEG has an end-of-image marker after its first scan (not truncated)."""
    if b"\xff\xd9" in buf[-32:]:
        return True
    # The EOI marker may be followed by padding or appended data: walk the segments to the
    # first scan (skipping an EXIF thumbnail and its own EOI) and look for an EOI after it.
    for marker, i in _jpeg_segments(buf):
        if marker == 0xDA:  # start of scan
            return buf.rfind(b"\xff\xd9") > i
    return False


def _is_truncated(kind: str, buf: bytes) -> bool:
    """Cheap end-of-file checks; some OpenCV versions decode truncated files silently."""
    if kind == "jpeg":
        return not _jpeg_is_complete(buf)
    if kind == "png":
        return b"IEND" not in buf[-32:] and buf.rfind(b"IEND") < 0
    if kind == "webp":
        return int.from_bytes(buf[4:8], "little") + 8 > len(buf)
    return False


def _exif_orientation(buf: bytes) -> int:
    """The EXIF orientation (1..8) stored in an encoded image, 1 if none."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(buf)) as im:
            value = int(im.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # unreadable EXIF never makes a readable image fail
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an (H, W, C) array so that EXIF `orientation` becomes 1 (upright)."""
    if orientation in (5, 6, 7, 8):
        img = np.swapaxes(img, 0, 1)  # transpose: 5 is done; 6, 7, 8 need a flip
        if orientation == 6:
            img = img[:, ::-1]
        elif orientation == 7:
            img = img[::-1, ::-1]
        elif orientation == 8:
            img = img[::-1]
    elif orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float images to uint8 (full range to full range)."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img / 257.0).astype(np.uint8)  # 65535 -> 255
    if np.issubdtype(img.dtype, np.floating):
        return np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0).astype(np.uint8)
    info = np.iinfo(img.dtype)
    return np.round((img.astype(np.float64) - info.min) / (info.max - info.min) * 255).astype(np.uint8)


def _bgr_any_to_rgb(img: np.ndarray) -> np.ndarray:
    """An OpenCV IMREAD_UNCHANGED result (gray, gray+alpha, BGR, BGRA) as (H, W, 3) RGB uint8.

    Transparent pixels are composited on white: the usual look of a transparent PNG, and
    what a user sees in an image viewer.
    """
    img = _to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        color, alpha = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB), img[:, :, 1]
    elif channels == 4:
        color, alpha = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB), img[:, :, 3]
    else:
        return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
    if alpha.min() == 255:
        return color
    a = alpha.astype(np.float32)[:, :, None] / 255.0  # (H, W, 1)
    return np.round(color * a + 255.0 * (1.0 - a)).astype(np.uint8)


MAX_PIXELS = 40e6
"""Images with more pixels than this are refused before decoding, unless a caller raises it."""


def read_image(path: str | os.PathLike, max_pixels: float = MAX_PIXELS) -> np.ndarray:
    """Read an image file as an (H, W, 3) RGB uint8 array.

    The format is decided by the file's content, not its name (PNG data named .jpg is fine).
    EXIF orientation is applied. Grayscale, palette, 16-bit and float images become RGB uint8;
    alpha is composited on a white background. Paths with non-ASCII characters work.

    Raises:
        ImageReadError: the file is missing, empty, truncated or not a decodable image;
            the message names the file.
        ImageTooLargeError: its header says it has more than `max_pixels` pixels (checked
            before decoding: a 20000x20000 PNG would take gigabytes).
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works for any path; cv2.imread does not
    except OSError as err:
        reason = err.strerror or str(err)
        raise ImageReadError(f"cannot read image {path}: {reason}", path) from None
    return decode_image(data.tobytes(), path, max_pixels)


def decode_image(buf: bytes, name: str | os.PathLike, max_pixels: float = MAX_PIXELS) -> np.ndarray:
    """`read_image` of bytes already in memory (an upload, say); `name` is what messages call them."""
    path = name
    data = np.frombuffer(buf, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"cannot read image {path}: the file is empty", path)
    kind = _sniff(buf[:16])
    if _is_truncated(kind, buf):
        raise ImageReadError(f"cannot read image {path}: the {kind.upper()} file is truncated", path)
    size = header_size(buf)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageTooLargeError(path, *size, max_pixels)
    try:
        if kind == "jpeg":
            # 8-bit, never alpha: IMREAD_COLOR applies EXIF orientation and converts gray/CMYK.
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
            rgb = None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        else:
            # IMREAD_UNCHANGED keeps alpha and 16-bit data but ignores EXIF orientation.
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            rgb = None if img is None or img.size == 0 else _bgr_any_to_rgb(img)
    except cv2.error:
        rgb = None
    if rgb is None:
        what = f"not a decodable {kind.upper()} file" if kind else "not a supported image format"
        raise ImageReadError(f"cannot read image {path}: {what}", path)
    has_exif = (kind == "png" and b"eXIf" in buf) or (kind == "webp" and b"EXIF" in buf) or kind == "tiff"
    if has_exif:
        rgb = _apply_orientation(rgb, _exif_orientation(buf))
    return rgb


_SIGNED_LUT = (np.arange(256, dtype=np.float32) / np.float32(127.5) - 1.0).astype(np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [-1, 1] (0 -> -1, 255 -> 1).

    A lookup table: several times faster than A.Normalize + ToTensorV2 for uint8 images.
    """
    return torch.from_numpy(cv2.LUT(image, _SIGNED_LUT)).permute(2, 0, 1)  # (3, H, W)


def read_pairs_manifest(path: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """The (A files, B files) of a CSV manifest with header `a,b`; relative paths are relative
    to the CSV's folder. Raises DataError if the file, its header or a listed file is missing."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"pairs manifest {path} does not exist (expected a CSV with header a,b)")
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"a", "b"} <= {h.strip() for h in reader.fieldnames}:
            raise DataError(
                f"pairs manifest {path} must start with the header line 'a,b' (got {reader.fieldnames})"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    pairs = [(path.parent / r["a"], path.parent / r["b"]) for r in rows if r.get("a") or r.get("b")]
    if not pairs:
        raise DataError(f"pairs manifest {path} lists no pairs")
    missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"pairs manifest {path} lists missing files: {', '.join(missing[:3])}{more}")
    return [a for a, _ in pairs], [b for _, b in pairs]


_PIL_LIMIT = threading.Lock()


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)


def _jpeg_size(buf: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header: the first SOFn segment."""
    for marker, i in _jpeg_segments(buf):
        if marker in _SOF_MARKERS:
            if i + 9 > len(buf):
                return None
            return int.from_bytes(buf[i + 7 : i + 9], "big"), int.from_bytes(buf[i + 5 : i + 7], "big")
    return None


def header_size(buf: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding it; None when it cannot be told.

    PNG and JPEG (nearly every training image) are read here directly: a fifth of the time PIL
    takes, and this runs for every image read in training. Other formats go through PIL with its
    own decompression-bomb limit lifted (the caller compares the size with its own limit), so a
    forged 20000x20000 header reports its true size.
    """
    kind = _sniff(buf[:16])
    if kind == "png" and buf[12:16] == b"IHDR":
        return int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[20:24], "big")
    if kind == "jpeg":
        return _jpeg_size(buf)
    from PIL import Image

    with _PIL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(buf)) as im:
                return int(im.width), int(im.height)
        except Exception:  # noqa: BLE001 - unreadable headers are reported by read_image
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image; the format follows the suffix. Non-ASCII paths work."""
    ok, buf = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageWriteError(f"cannot encode {path} (unsupported extension {path.suffix})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf.tofile(str(path))
    except OSError as err:
        raise ImageWriteError(f"cannot write {path}: {err.strerror or err}") from None


