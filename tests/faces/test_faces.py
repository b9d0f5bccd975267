"""Face detection (MTCNN landmarks or Haar), alignment, paste-back, `translate --face-crop` and `data align`."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny import read_rgb, smooth_image, write_png

from vitcycle.cli import main
from vitcycle.errors import VitcycleError
from vitcycle.faces import detect as faces
from vitcycle.faces.align import EYE_DISTANCE, EYE_LINE, align_face, crop_face, face_alignment, paste_back
from vitcycle.faces.detect import Face, face_detector


def rotated(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """`image` turned by `degrees` (counter-clockwise) about its centre on a grey canvas, and the (2, 3) map."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderValue=(90, 90, 90)), matrix


def on_canvas(selfie: np.ndarray, side: int = 500) -> np.ndarray:
    """A 256 px selfie in the middle of a larger grey photo, so that rotating it keeps the face inside."""
    canvas = np.full((side, side, 3), 90, np.uint8)
    top = (side - selfie.shape[0]) // 2
    canvas[top : top + selfie.shape[0], top : top + selfie.shape[1]] = selfie
    return canvas


def eye_geometry(eyes: np.ndarray, side: int) -> tuple[float, float, float, float]:
    """Tilt in degrees, eye-line height, eye distance and midpoint x (shares of `side`) of (2, 2) eyes."""
    (lx, ly), (rx, ry) = eyes
    return (math.degrees(math.atan2(ry - ly, rx - lx)), (ly + ry) / 2 / side, math.hypot(rx - lx, ry - ly) / side,
            (lx + rx) / 2 / side)


class FakeDetector:
    """Always finds the given faces (tests of geometry without a real detector)."""

    name = "fake"

    def __init__(self, *found: Face) -> None:
        self.found = list(found)

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        return self.found


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("degrees", [-35.0, 0.0, 20.0])
@pytest.mark.parametrize("eye_px", [30.0, 120.0])
def test_alignment_levels_the_eyes_and_places_them_as_in_the_training_faces(degrees: float, eye_px: float) -> None:
    centre, angle = np.array([200.0, 150.0]), math.radians(degrees)
    half = eye_px / 2 * np.array([math.cos(angle), math.sin(angle)])
    eyes = np.stack([centre - half, centre + half])  # image-left eye first
    alignment = face_alignment(Face((0, 0, 1, 1), (tuple(eyes[0]), tuple(eyes[1]))))
    assert alignment.size == round(eye_px / EYE_DISTANCE)  # the face's own resolution
    expected = np.array([[0.5 - EYE_DISTANCE / 2, EYE_LINE], [0.5 + EYE_DISTANCE / 2, EYE_LINE]]) * alignment.size
    np.testing.assert_allclose(alignment.to_crop(eyes), expected, atol=1e-6 * alignment.size)
    fixed = face_alignment(Face((0, 0, 1, 1), (tuple(eyes[0]), tuple(eyes[1]))), size=64, eye_line=0.4)
    np.testing.assert_allclose(fixed.to_crop(eyes)[:, 1], [0.4 * 64, 0.4 * 64], atol=1e-6)


def test_a_face_without_eyes_gets_an_unrotated_square_around_its_box() -> None:
    alignment = face_alignment(Face((40, 20, 60, 40), None), margin=0.5)
    assert alignment.size == 40  # the box side grown by half of it each way
    np.testing.assert_allclose(alignment.matrix, [[1, 0, -30], [0, 1, -10]])
    with pytest.raises(VitcycleError, match="shares of the crop side"):
        face_alignment(Face((40, 20, 60, 40), None), eye_line=1.5)


def test_crop_face_samples_the_photo_through_the_alignment() -> None:
    image = smooth_image(80, 100)
    crop = crop_face(image, face_alignment(Face((40, 20, 60, 40), None)))
    np.testing.assert_array_equal(crop, image[10:50, 30:70])


def test_paste_back_feathers_inside_the_crop_and_leaves_every_other_pixel() -> None:
    image = np.full((40, 50, 3), 10, np.uint8)
    alignment = face_alignment(Face((20, 15, 30, 25), None), margin=0.5)  # the square x 15..35, y 10..30
    out = paste_back(image, np.full((20, 20, 3), 210, np.uint8), alignment, feather=0.2)
    outside = np.ones((40, 50), bool)
    outside[10:30, 15:35] = False
    assert (out[outside] == 10).all()
    assert (out[20, 25] == 210).all()  # centre: the patch
    assert 10 < int(out[10, 25, 0]) < 210  # border: a blend, no seam


def test_paste_back_of_a_rotated_face_changes_only_the_rotated_square() -> None:
    image = smooth_image(200, 240)
    eyes = ((90.0, 100.0), (130.0, 80.0))  # tilted by -26.6 degrees
    alignment = face_alignment(Face((0, 0, 1, 1), eyes))
    out = paste_back(image, np.zeros((alignment.size, alignment.size, 3), np.uint8), alignment)
    ys, xs = np.mgrid[0:200, 0:240]
    in_crop = alignment.to_crop(np.stack([xs.ravel(), ys.ravel()], 1).astype(float)).reshape(200, 240, 2)
    far_outside = ((in_crop < -1) | (in_crop > alignment.size)).any(-1)  # a pixel beyond the crop's edge
    assert far_outside.sum() > 10_000
    np.testing.assert_array_equal(out[far_outside], image[far_outside])
    mid = np.round(np.mean(eyes, axis=0)).astype(int)  # between the eyes: the (black) patch
    assert (out[mid[1], mid[0]] == 0).all()


def test_refining_uses_the_eyes_found_in_the_aligned_crop() -> None:
    first = Face((0, 0, 1, 1), ((100.0, 100.0), (160.0, 100.0)))
    start = face_alignment(first)
    target = np.array([[0.5 - EYE_DISTANCE / 2, EYE_LINE], [0.5 + EYE_DISTANCE / 2, EYE_LINE]]) * start.size
    tilted = target + np.array([[0.0, 6.0], [0.0, -6.0]])  # the crop's detector sees the eyes tilted
    refined = align_face(np.zeros((300, 300, 3), np.uint8), first, FakeDetector(Face((0, 0, 1, 1), tuple(map(tuple, tilted)))), refine=1)
    back = cv2.invertAffineTransform(start.matrix)
    eyes = tilted @ back[:, :2].T + back[:, 2]  # those eyes in the photo
    tilt, line, dist, mid = eye_geometry(refined.to_crop(eyes), refined.size)
    assert abs(tilt) < 1e-6 and line == pytest.approx(EYE_LINE) and dist == pytest.approx(EYE_DISTANCE)


# ---------------------------------------------------------------- detectors


def test_without_the_faces_extra_auto_falls_back_to_haar_and_mtcnn_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # importing it now raises ImportError
    face_detector.cache_clear()
    try:
        assert face_detector("auto").name == "haar"
        with pytest.raises(VitcycleError, match=r"pip install 'vitcycle\[faces\]'"):
            face_detector("mtcnn")
    finally:
        face_detector.cache_clear()
    with pytest.raises(VitcycleError, match="not one of auto, mtcnn, haar"):
        face_detector("dlib")


def test_haar_cascades_load_and_find_no_face_in_a_blank_image() -> None:
    assert face_detector("haar")(np.full((120, 160, 3), 128, np.uint8)) == []


@pytest.fixture
def mtcnn():
    pytest.importorskip("facenet_pytorch", reason="the faces extra (facenet-pytorch) is not installed")
    return face_detector("mtcnn")


@pytest.fixture
def selfies(selfie2anime: Path) -> list[np.ndarray]:
    return [read_rgb(p) for p in sorted((selfie2anime / "trainA").glob("*.jpg"))[:6]]


def test_mtcnn_aligns_real_selfies_turned_by_known_angles(mtcnn, selfies) -> None:
    """The eyes MTCNN finds in the upright photo, carried through the known rotation and then the
    alignment found in the turned photo, land level (within 3 degrees) and where training faces have them."""
    for selfie in selfies:
        upright = on_canvas(selfie)
        truth = np.array(mtcnn(upright)[0].eyes)  # (2, 2)
        for degrees in (-20.0, 20.0):
            photo, turn = rotated(upright, degrees)
            found = mtcnn(photo)
            assert len(found) == 1
            alignment = align_face(photo, found[0], mtcnn)
            tilt, line, dist, mid = eye_geometry(alignment.to_crop(truth @ turn[:, :2].T + turn[:, 2]), alignment.size)
            assert abs(tilt) < 3.0
            assert abs(line - EYE_LINE) < 0.06 and abs(dist - EYE_DISTANCE) < 0.04 and abs(mid - 0.5) < 0.05


def test_mtcnn_finds_every_face_largest_first(mtcnn, selfies) -> None:
    photo = np.full((300, 560, 3), 90, np.uint8)
    photo[22:278, 10:266] = selfies[0]
    photo[86:214, 400:528] = cv2.resize(selfies[1], (128, 128))
    found = mtcnn(photo)
    assert len(found) == 2 and found[0].area > found[1].area
    assert found[0].box[2] < 280 and found[1].box[0] > 380


# ---------------------------------------------------------------- translate --face-crop


def test_cli_translate_face_crop_paste_back_geometry(tmp_path: Path, tiny_ckpt: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(faces, "face_detector", lambda kind: FakeDetector(Face((40, 20, 60, 40), None)))
    image = smooth_image(80, 100)
    src = write_png(tmp_path / "in/face.png", image)
    run = ["translate", "--ckpt", str(tiny_ckpt), "--input", str(src), "--face-crop", "--device", "cpu"]
    assert main([*run, "--output", str(tmp_path / "p.png"), "--paste-back"]) == 0
    pasted = read_rgb(tmp_path / "p.png")
    assert pasted.shape == image.shape
    outside = np.ones(image.shape[:2], bool)
    outside[10:50, 30:70] = False  # the face (40, 20)-(60, 40) grown by half its side each way
    np.testing.assert_array_equal(pasted[outside], image[outside])
    assert np.abs(pasted[25:35, 45:55].astype(int) - image[25:35, 45:55]).mean() > 1

    assert main([*run, "--output", str(tmp_path / "c.png")]) == 0
    assert read_rgb(tmp_path / "c.png").shape == (40, 40, 3)  # the crop alone

    monkeypatch.setattr(faces, "face_detector", lambda kind: FakeDetector())
    capsys.readouterr()
    assert main([*run, "--output", str(tmp_path / "w.png")]) == 0
    assert "no face found" in capsys.readouterr().err
    assert read_rgb(tmp_path / "w.png").shape == image.shape


def test_cli_translate_all_faces_needs_paste_back(tmp_path: Path, tiny_ckpt: Path, capsys) -> None:
    src = write_png(tmp_path / "a.png", smooth_image(32, 32))
    assert main(["translate", "--ckpt", str(tiny_ckpt), "--input", str(src), "--output", str(tmp_path / "o.png"),
                 "--face-crop", "--all-faces"]) == 2
    err = capsys.readouterr().err
    assert "--all-faces" in err and "--paste-back" in err and err.count("\n") == 1
    assert not (tmp_path / "o.png").exists()


def test_cli_translate_aligns_a_turned_real_face_and_pastes_every_face_back(tmp_path: Path, tiny_ckpt: Path, mtcnn, selfies) -> None:
    photo = np.full((300, 560, 3), 90, np.uint8)
    photo[22:278, 10:266] = selfies[0]
    photo[86:214, 400:528] = cv2.resize(selfies[1], (128, 128))
    photo, _ = rotated(photo, 15.0)
    src = write_png(tmp_path / "photo.png", photo)
    run = ["translate", "--ckpt", str(tiny_ckpt), "--input", str(src), "--face-crop", "--device", "cpu"]
    changed = {}
    for name, extra in (("largest", []), ("all", ["--all-faces"])):
        assert main([*run, "--paste-back", *extra, "--output", str(tmp_path / f"{name}.png")]) == 0
        diff = np.abs(read_rgb(tmp_path / f"{name}.png").astype(int) - photo).sum(-1)  # (H, W)
        changed[name] = (diff[:, :280].mean() > 1, diff[:, 380:].mean() > 1)
        assert (diff[:, 280:380] == 0).mean() > 0.9  # between the faces: mostly the photo itself
    assert changed == {"largest": (True, False), "all": (True, True)}

    assert main([*run, "--output", str(tmp_path / "crop.png"), "--grid"]) == 0
    grid = read_rgb(tmp_path / "crop.png")
    assert grid.shape[1] == 2 * grid.shape[0]  # aligned face | its translation, both square
    tilt, line, dist, _ = eye_geometry(np.array(mtcnn(grid[:, : grid.shape[0]])[0].eyes), grid.shape[0])
    assert abs(tilt) < 5.0 and abs(line - EYE_LINE) < 0.08  # found again in the crop: level, at the eye line


# ---------------------------------------------------------------- data align


def test_cli_data_align_writes_aligned_crops_and_lists_photos_without_a_face(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    eyes = ((30.0, 40.0), (50.0, 30.0))
    monkeypatch.setattr(faces, "face_detector", lambda kind: FakeDetector(Face((20, 20, 60, 60), eyes)))
    src = tmp_path / "photos"
    write_png(src / "one.png", smooth_image(90, 120))
    write_png(src / "sub/two.jpg", smooth_image(100, 80, seed=1))
    (src / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "aligned"
    assert main(["data", "align", "--input", str(src), "--output", str(out), "--size", "48"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == ["one.png", "sub/two.jpg"]
    assert read_rgb(out / "one.png").shape == (48, 48, 3)
    captured = capsys.readouterr()
    assert "wrote 2 aligned 48x48 face(s)" in captured.out and "skipped 1" in captured.out
    assert "broken.png" in captured.err

    monkeypatch.setattr(faces, "face_detector", lambda kind: FakeDetector(Face((20, 20, 60, 60), eyes), Face((0, 0, 9, 9), None)))
    assert main(["data", "align", "--input", str(src), "--output", str(tmp_path / "all"), "--all-faces"]) == 0
    assert (tmp_path / "all/one_face2.png").exists() and read_rgb(tmp_path / "all/one.png").shape == (256, 256, 3)

    monkeypatch.setattr(faces, "face_detector", lambda kind: FakeDetector())
    assert main(["data", "align", "--input", str(src), "--output", str(tmp_path / "none")]) == 2
    assert "no face was found" in capsys.readouterr().err
    assert main(["data", "align", "--input", str(src), "--output", str(src / "inside")]) == 2
    assert "inside the input folder" in capsys.readouterr().err


def test_cli_data_align_real_faces_come_out_level(tmp_path: Path, mtcnn, selfies) -> None:
    for i, selfie in enumerate(selfies[:3]):
        write_png(tmp_path / f"in/{i}.png", rotated(on_canvas(selfie), (-25.0, 10.0, 30.0)[i])[0])
    assert main(["data", "align", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--size", "128"]) == 0
    for i in range(3):
        crop = read_rgb(tmp_path / f"out/{i}.png")
        tilt, line, dist, mid = eye_geometry(np.array(mtcnn(crop)[0].eyes), 128)
        assert crop.shape == (128, 128, 3) and abs(tilt) < 5.0 and abs(line - EYE_LINE) < 0.08



def test_data_align_replaces_files_in_its_output_only_with_overwrite(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    kept = tmp_path / "faces" / "mine.jpg"
    kept.parent.mkdir()
    kept.write_bytes(b"a face the user keeps")
    assert main(["data", "align", "--input", str(tmp_path / "photos"), "--output", str(tmp_path / "faces")]) == 2
    assert f"{kept} exists already; pass --overwrite to replace it" in capsys.readouterr().err
    assert kept.read_bytes() == b"a face the user keeps"
