"""The built-in two-domain data set: random faces drawn "photo-like" (A) and "anime-like" (B).

Every face is drawn from its own numpy Generator seeded by (seed, split, index), then rendered
once or twice with the same geometry and colours:

- photo-like (A): soft lighting on the skin and hair, gradient background, small eyes,
  texture noise and a slight blur;
- anime-like (B): flat cel shading, dark outlines, large eyes with highlights, saturated hair,
  flat saturated background.

trainA and trainB hold *different* faces (no hidden pairs in training). valA/valB hold the same
faces in both styles and `pairs_val.csv` lists them, which makes a paired metric possible:
L1(G_ab(a_i), b_i) against the identity baseline L1(a_i, b_i).

Faces are drawn at 4x the output size and shrunk with INTER_AREA (anti-aliasing). The same
seed gives byte-identical PNG files.
"""

from __future__ import annotations

import colorsys
import csv
import functools
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from vitcycle.data.imageio import read_image, read_pairs_manifest
from vitcycle.errors import DataError

SUPERSAMPLE = 4  # internal resolution factor, shrunk with INTER_AREA for anti-aliasing
PNG_COMPRESSION = 6  # fixed, so the same seed gives the same bytes
SPLITS = {"trainA": 1, "trainB": 2, "val": 3}  # random stream of each split
MANIFEST = "pairs_val.csv"
_OUR_PNG = re.compile(r"[0-9]{6}\.png")  # the names this module writes

RGB = tuple[float, float, float]

# Natural colours (photo) and the saturated colour an anime artist would give them (anime).
HAIR: tuple[tuple[RGB, RGB], ...] = (
    ((0.08, 0.07, 0.07), (0.16, 0.20, 0.45)),  # black -> navy
    ((0.25, 0.15, 0.09), (0.55, 0.25, 0.10)),  # dark brown -> chestnut
    ((0.45, 0.30, 0.18), (0.90, 0.50, 0.15)),  # brown -> orange
    ((0.80, 0.68, 0.42), (1.00, 0.88, 0.30)),  # blond -> yellow
    ((0.55, 0.22, 0.12), (0.95, 0.25, 0.20)),  # auburn -> red
    ((0.62, 0.62, 0.60), (0.70, 0.80, 1.00)),  # grey -> silver blue
)
EYES: tuple[tuple[RGB, RGB], ...] = (
    ((0.35, 0.22, 0.12), (0.85, 0.45, 0.10)),  # brown -> amber
    ((0.30, 0.45, 0.62), (0.15, 0.55, 1.00)),  # blue
    ((0.30, 0.45, 0.30), (0.15, 0.80, 0.40)),  # green
    ((0.42, 0.42, 0.48), (0.60, 0.30, 0.90)),  # grey -> violet
)
SKIN: tuple[RGB, ...] = (
    (0.98, 0.87, 0.78),
    (0.95, 0.80, 0.68),
    (0.90, 0.72, 0.58),
    (0.80, 0.60, 0.45),
    (0.64, 0.45, 0.32),
    (0.45, 0.30, 0.20),
)
OUTLINE: RGB = (0.12, 0.07, 0.07)


@dataclass(frozen=True)
class Face:
    """Everything random about one face; positions in canvas units (0..1), angles in degrees."""

    cx: float  # face centre
    cy: float
    half_w: float  # half width of the face ellipse
    aspect: float  # half height / half width
    angle: float  # head tilt
    skin: RGB
    hair: int  # index into HAIR
    hair_shift: RGB  # per-face change of the hair colour (both styles)
    hair_style: int  # 0 short, 1 long, 2 bob with bangs, 3 spiky
    eyes: int  # index into EYES
    eye_dx: float  # eye distance from the centre line, in face half-widths
    eye_y: float  # eye height, in face half-widths below the centre
    mouth_y: float
    mouth_w: float
    light: float  # direction of the light, radians
    bg_hue: float  # 0..1
    bg_sat: float
    bg_val: float
    clothes_hue: float
    noise_seed: int  # texture noise of the photo


def random_face(rng: np.random.Generator) -> Face:
    """Draw one face."""
    skin = np.clip(np.array(SKIN[rng.integers(len(SKIN))]) + rng.uniform(-0.03, 0.03, 3), 0, 1)
    return Face(
        cx=0.5 + rng.uniform(-0.06, 0.06),
        cy=0.47 + rng.uniform(-0.05, 0.05),
        half_w=rng.uniform(0.19, 0.24),
        aspect=rng.uniform(1.15, 1.35),
        angle=rng.uniform(-14, 14),
        skin=tuple(skin.tolist()),
        hair=int(rng.integers(len(HAIR))),
        hair_shift=tuple(rng.uniform(-0.05, 0.05, 3).tolist()),
        hair_style=int(rng.integers(4)),
        eyes=int(rng.integers(len(EYES))),
        eye_dx=rng.uniform(0.36, 0.46),
        eye_y=rng.uniform(0.0, 0.12),
        mouth_y=rng.uniform(0.55, 0.68),
        mouth_w=rng.uniform(0.18, 0.3),
        light=rng.uniform(-math.pi, math.pi),
        bg_hue=rng.uniform(0, 1),
        bg_sat=rng.uniform(0.1, 0.35),
        bg_val=rng.uniform(0.5, 0.85),
        clothes_hue=rng.uniform(0, 1),
        noise_seed=int(rng.integers(2**31)),
    )


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)), np.float32)


def _c(rgb) -> tuple[int, int, int]:
    """float RGB in 0..1 -> an OpenCV colour (ints 0..255)."""
    return tuple(int(round(min(max(float(v), 0.0), 1.0) * 255)) for v in rgb)


@functools.lru_cache(maxsize=64)
def _unit_arc(a0: float, a1: float, n: int) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([np.cos(t), np.sin(t)], -1)  # (n, 2)


def _ellipse(
    cx: float, cy: float, ax: float, ay: float, a0: float = 0, a1: float = 360, n: int = 48
) -> np.ndarray:
    """Points of an ellipse arc in face coordinates, (n, 2)."""
    return _unit_arc(a0, a1, n) * (ax, ay) + (cx, cy)


class _Pose:
    """Maps face coordinates (x right, y down, unit = face half width) to pixels of a res x res canvas."""

    def __init__(self, face: Face, res: int):
        self.res = res
        self.center = np.array([face.cx, face.cy]) * res
        self.scale = face.half_w * res
        a = math.radians(face.angle)
        self.rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    def px(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) face coordinates -> (N, 2) int32 pixel coordinates."""
        return np.round(np.asarray(xy, np.float64) @ self.rot.T * self.scale + self.center).astype(np.int32)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates (x, y) of every pixel centre, (res, res) each."""
        ys, xs = np.mgrid[0 : self.res, 0 : self.res].astype(np.float32) + 0.5
        d = np.stack([xs - self.center[0], ys - self.center[1]], -1) @ self.rot / self.scale  # (res, res, 2)
        return d[..., 0], d[..., 1]


def _parts(face: Face) -> list[tuple[str, str, np.ndarray]]:
    """(name, material, polygon in face coordinates) of the parts both styles share, back to front."""
    asp, style = face.aspect, face.hair_style
    parts = []
    if style == 1:  # long: behind the head down to the shoulders
        top = _ellipse(0, 0.1, 1.28, asp + 0.35, 180, 360, 32)
        parts.append(("hair_back", "hair", np.concatenate([top, [[1.45, asp + 1.6], [-1.45, asp + 1.6]]])))
    elif style == 2:  # bob
        parts.append(("hair_back", "hair", _ellipse(0, -0.05, 1.22, asp * 0.98)))
    parts += [
        ("neck", "skin", np.array([[-0.36, 0.3], [0.36, 0.3], [0.42, asp + 1.2], [-0.42, asp + 1.2]])),
        ("torso", "clothes", _ellipse(0, asp + 1.45, 2.0, 0.85)),
        ("ear_l", "skin", _ellipse(-1.0, 0.05, 0.16, 0.26, n=24)),
        ("ear_r", "skin", _ellipse(1.0, 0.05, 0.16, 0.26, n=24)),
        ("head", "skin", _ellipse(0, 0, 1.0, asp, n=64)),
    ]
    # front hair: over the top of the head down to a fringe line, side locks for long/bob
    top = _ellipse(0, -0.12, 1.12, asp * 0.98, 180, 360, 25)
    if style == 3:  # spiky: every other point of the top pushed out
        top = top * np.where(np.arange(25) % 2 == 1, 1.18, 1.0)[:, None]
    fringe_y = -0.42 * asp + (0.12 if style == 2 else 0.0)
    side_y = (-0.2, 0.55, 0.35, -0.1)[style] * asp
    xs = np.linspace(0.92, -0.92, 13)
    if style == 3:  # zig-zag fringe
        fy = fringe_y + np.where(np.arange(13) % 2 == 1, 0.22, -0.02)
    elif style == 1:  # side parting
        fy = fringe_y + 0.18 * (xs + 0.92) / 1.84
    else:
        fy = fringe_y + 0.04 * np.cos(xs * 7)
    front = np.concatenate(
        [[[-1.12, side_y]], top, [[1.12, side_y], [0.88, side_y]], np.stack([xs, fy], -1), [[-0.88, side_y]]]
    )
    parts.append(("hair_front", "hair", front))
    return parts


def _lambert(x: np.ndarray, y: np.ndarray, face: Face, radius: float = 1.0) -> np.ndarray:
    """Cosine of the light angle on an ellipsoid head of the given radius, in [0, 1]."""
    x, y = x / radius, y / (radius * face.aspect)
    z = np.sqrt(np.clip(1.0 - x * x - y * y, 0.0, 1.0))
    return np.clip(0.6 * math.cos(face.light) * x + 0.6 * math.sin(face.light) * y + 0.8 * z, 0.0, 1.0)


def _colors(face: Face, anime: bool) -> dict[str, np.ndarray]:
    """Colours of the materials in one style (float32 RGB in 0..1)."""
    skin = np.array(face.skin, np.float32)
    if anime:  # paler, rosier skin
        skin = 0.6 * skin + 0.4 * np.array([1.0, 0.92, 0.88], np.float32)
    clothes_s, clothes_v = (0.85, 0.95) if anime else (0.45, 0.6)
    bg_s, bg_v = (face.bg_sat * 1.8 + 0.15, face.bg_val * 0.5 + 0.5) if anime else (face.bg_sat, face.bg_val)
    return {
        "skin": skin,
        "hair": np.clip(np.array(HAIR[face.hair][int(anime)]) + face.hair_shift, 0, 1).astype(np.float32),
        "eyes": np.array(EYES[face.eyes][int(anime)], np.float32),
        "clothes": _hsv(face.clothes_hue, clothes_s, clothes_v),
        "bg": _hsv(face.bg_hue, bg_s, bg_v),
    }


def render_photo(face: Face, size: int) -> np.ndarray:
    """The face as a (size, size, 3) RGB uint8 "photo": soft shading, small eyes, texture noise."""
    res = size * SUPERSAMPLE
    pose = _Pose(face, res)
    col = _colors(face, anime=False)
    img = np.empty((res, res, 3), np.uint8)
    img[:] = _c(col["bg"])
    skin_mask = np.zeros((res, res), np.uint8)  # where skin shading applies
    hair_mask = np.zeros((res, res), np.uint8)
    aa = cv2.LINE_8  # the 4x supersampling anti-aliases
    for _, material, poly in _parts(face):
        pts = [pose.px(poly)]
        cv2.fillPoly(img, pts, _c(col[material]), aa)
        cv2.fillPoly(skin_mask, pts, 255 if material == "skin" else 0, aa)
        cv2.fillPoly(hair_mask, pts, 255 if material == "hair" else 0, aa)
    thin = max(1, res // 128)
    for sx in (-1, 1):
        x, y = sx * face.eye_dx, face.eye_y
        cv2.fillPoly(img, [pose.px(_ellipse(x, y, 0.17, 0.075, n=24))], _c((0.93, 0.92, 0.9)), aa)
        cv2.fillPoly(img, [pose.px(_ellipse(x, y, 0.065, 0.065, n=16))], _c(col["eyes"]), aa)
        cv2.fillPoly(img, [pose.px(_ellipse(x, y, 0.03, 0.03, n=12))], _c((0.05, 0.04, 0.04)), aa)
        lid = _ellipse(x, y + 0.02, 0.18, 0.1, 200, 340, 12)
        brow = _ellipse(x, y - 0.18, 0.2, 0.06, 200, 340, 12)
        cv2.polylines(img, [pose.px(lid)], False, _c(col["hair"] * 0.7), thin, aa)
        cv2.polylines(img, [pose.px(brow)], False, _c(col["hair"] * 0.7), 2 * thin, aa)
    lips = _ellipse(0, face.mouth_y * face.aspect, face.mouth_w, 0.055, n=24)
    cv2.fillPoly(img, [pose.px(lips)], _c(col["skin"] * np.array([0.85, 0.55, 0.55])), aa)
    nose = _ellipse(0.05, 0.38 * face.aspect, 0.07, 0.035, n=16)
    cv2.fillPoly(img, [pose.px(nose)], _c(col["skin"] * 0.8), aa)

    # lighting at the output resolution (it is smooth): soft shading of skin and hair, a
    # vertical falloff, a little blur and sensor-like noise
    down = (size, size)
    out = cv2.resize(img, down, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0  # (S, S, 3)
    skin = cv2.resize(skin_mask, down, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0  # (S, S)
    hair = cv2.resize(hair_mask, down, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x, y = _Pose(face, size).grid()
    skin_light = 0.55 + 0.5 * _lambert(x, y, face)
    hair_light = (0.6 + 0.6 * _lambert(x, y, face, 1.25)) * (1.0 + 0.12 * np.sin(x * 40 + y * 6))
    rows = np.linspace(1.12, 0.82, size, dtype=np.float32)[:, None]  # (S, 1)
    light = (1.0 + skin * (skin_light - 1.0) + hair * (hair_light - 1.0)) * rows  # (S, S)
    out = cv2.GaussianBlur(out * light[..., None], (0, 0), 0.6)
    out += np.random.default_rng(face.noise_seed).normal(0.0, 0.02, out.shape).astype(np.float32)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def render_anime(face: Face, size: int) -> np.ndarray:
    """The face as a (size, size, 3) RGB uint8 "anime" drawing: flat cel shading, outlines, big eyes."""
    res = size * SUPERSAMPLE
    pose = _Pose(face, res)
    col = _colors(face, anime=True)
    img = np.empty((res, res, 3), np.uint8)
    img[:] = _c(col["bg"])
    line = max(2, round(res / 64))  # outline width: about 1 px in the output
    ink = _c(OUTLINE)
    shadow = col["skin"] * np.array([0.9, 0.78, 0.8], np.float32)
    lx, ly = math.cos(face.light), math.sin(face.light)
    aa = cv2.LINE_8  # the 4x supersampling anti-aliases
    for name, material, poly in _parts(face):
        pts = [pose.px(poly)]
        if material == "skin":  # cel shading: shadow tone, then the lit part offset toward the light
            cv2.fillPoly(img, pts, _c(shadow), aa)
            if name == "head":
                lit = _ellipse(0.1 * lx, 0.1 * ly, 0.9, 0.9 * face.aspect, n=64)
                cv2.fillPoly(img, [pose.px(lit)], _c(col["skin"]), aa)
        else:
            cv2.fillPoly(img, pts, _c(col[material]), aa)
        if name == "hair_front":  # a light band on the hair
            band = _ellipse(0, -0.2, 0.75, face.aspect * 0.62, 205, 250, 12)
            cv2.polylines(img, [pose.px(band)], False, _c(col["hair"] * 1.25 + 0.2), max(2, res // 40), aa)
        cv2.polylines(img, pts, True, ink, line, aa)
    white = (255, 255, 255)
    y = face.eye_y + 0.02
    for sx in (-1, 1):
        x = sx * face.eye_dx
        eye = [pose.px(_ellipse(x, y, 0.21, 0.27, n=32))]
        cv2.fillPoly(img, eye, white, aa)
        cv2.fillPoly(img, [pose.px(_ellipse(x, y + 0.02, 0.15, 0.23, n=32))], _c(col["eyes"]), aa)
        cv2.fillPoly(
            img, [pose.px(_ellipse(x, y - 0.08, 0.15, 0.12, 180, 360, 16))], _c(col["eyes"] * 0.55), aa
        )
        cv2.fillPoly(img, [pose.px(_ellipse(x, y + 0.04, 0.07, 0.11, n=16))], _c((0.05, 0.03, 0.08)), aa)
        cv2.fillPoly(img, [pose.px(_ellipse(x - 0.06 * sx, y - 0.08, 0.055, 0.055, n=12))], white, aa)
        cv2.fillPoly(img, [pose.px(_ellipse(x + 0.05 * sx, y + 0.1, 0.028, 0.028, n=12))], white, aa)
        cv2.polylines(img, eye, True, ink, line, aa)
        cv2.polylines(
            img, [pose.px(_ellipse(x, y - 0.02, 0.24, 0.27, 195, 345, 16))], False, ink, 2 * line, aa
        )
        cv2.polylines(img, [pose.px(_ellipse(x, y - 0.42, 0.18, 0.05, 200, 340, 12))], False, ink, line, aa)
    cv2.fillPoly(img, [pose.px(_ellipse(0, 0.36 * face.aspect, 0.03, 0.02, n=8))], _c(shadow * 0.8), aa)
    smile = _ellipse(0, face.mouth_y * face.aspect - 0.08, face.mouth_w * 0.6, 0.1, 30, 150, 12)
    cv2.polylines(img, [pose.px(smile)], False, _c((0.55, 0.12, 0.15)), line, aa)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def face_for(seed: int, split: str, index: int) -> Face:
    """The face number `index` of a split ("trainA", "trainB" or "val"); independent of set sizes."""
    return random_face(np.random.default_rng([seed, SPLITS[split], index]))


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    )
    if not ok:
        raise DataError(f"cannot encode {path} as PNG")
    path.write_bytes(buf.tobytes())


def _check_replaceable(out: Path) -> None:
    """`out` must be new, empty, or an earlier built-in set (its four folders of our PNGs and the
    manifest): other files would be mixed into the new set, or deleted."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out} is a file; give a folder for the built-in data set")
    ours = {"trainA", "trainB", "valA", "valB", MANIFEST}
    foreign = [p for p in out.iterdir() if p.name not in ours]
    for name in ("trainA", "trainB", "valA", "valB"):
        if (out / name).is_dir():
            foreign += [p for p in (out / name).iterdir() if not _OUR_PNG.fullmatch(p.name)]
    if foreign:
        raise DataError(
            f"{out} holds files that are not a built-in data set ({', '.join(str(p) for p in foreign[:3])}); "
            "give a new or empty folder"
        )


def _fresh_folder(folder: Path) -> None:
    """Create `folder`, removing PNG files a previous (larger) run left there under our names."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):
        old.unlink()


def make_synthetic_dataset(
    out: str | os.PathLike, n_train: int = 900, n_val: int = 100, size: int = 64, seed: int = 0
) -> Path:
    """Write out/trainA, trainB (unpaired), valA, valB (aligned pairs) and out/pairs_val.csv.

    Args:
        out: output folder (created).
        n_train: training images per domain; trainA and trainB show different faces.
        n_val: validation pairs: valA/i.png and valB/i.png are the same face in both styles.
        size: side of the square images in pixels.
        seed: the same seed writes byte-identical files.

    Returns:
        The path of the pairs manifest (CSV with header `a,b`, paths relative to `out`).
    """
    if n_train < 1 or n_val < 1:
        raise DataError(f"n_train and n_val must be at least 1 (got {n_train}, {n_val})")
    if size < 16:
        raise DataError(f"size must be at least 16 pixels (got {size})")
    out = Path(out).expanduser()
    dirs = {name: out / name for name in ("trainA", "trainB", "valA", "valB")}
    _check_replaceable(out)
    try:
        for folder in dirs.values():
            _fresh_folder(folder)
        for i in tqdm(range(n_train), desc="data synth", unit="pair", disable=None, file=sys.stderr):  # quiet off a terminal
            _write_png(dirs["trainA"] / f"{i:06d}.png", render_photo(face_for(seed, "trainA", i), size))
            _write_png(dirs["trainB"] / f"{i:06d}.png", render_anime(face_for(seed, "trainB", i), size))
        rows = []
        for i in range(n_val):
            face = face_for(seed, "val", i)
            _write_png(dirs["valA"] / f"{i:06d}.png", render_photo(face, size))
            _write_png(dirs["valB"] / f"{i:06d}.png", render_anime(face, size))
            rows.append((f"valA/{i:06d}.png", f"valB/{i:06d}.png"))
        manifest = out / MANIFEST
        with open(manifest, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("a", "b"))
            writer.writerows(rows)
    except OSError as err:
        raise DataError(f"cannot write the synthetic data set to {out}: {err}") from None
    return manifest


def save_pair_grid(manifest: str | os.PathLike, out_png: str | os.PathLike, n: int = 8, gap: int = 2) -> Path:
    """A PNG of the first `n` pairs of a manifest: A on the top row, B below, white gaps."""
    files_a, files_b = read_pairs_manifest(manifest)
    tiles = [(read_image(a), read_image(b)) for a, b in list(zip(files_a, files_b, strict=True))[:n]]
    h, w = tiles[0][0].shape[:2]
    grid = np.full((2 * h + 3 * gap, len(tiles) * (w + gap) + gap, 3), 255, np.uint8)
    for k, (a, b) in enumerate(tiles):
        x = gap + k * (w + gap)
        grid[gap : gap + h, x : x + w] = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
        grid[2 * gap + h : 2 * gap + 2 * h, x : x + w] = cv2.resize(b, (w, h), interpolation=cv2.INTER_AREA)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    _write_png(out_png, grid)
    return out_png
