"""`vitcycle serve`: the HTTP API, and the page in a real (headless) browser."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from vitcycle.inference.serve import TranslationService, make_server


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)  # (h, w, 3)


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _decode(body: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def served(tiny_ckpt):
    """(service, base URL) of a server on a free port of localhost, for this module's tests."""
    service = TranslationService(tiny_ckpt, device="cpu", max_bytes=200_000)
    server = make_server(service, "127.0.0.1", 0, max_queue=4, body_timeout=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _wait_until_up(server.server_address)
    yield service, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def _wait_until_up(address) -> None:
    for _ in range(100):
        try:
            with socket.create_connection(address, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {address}")


def _raw(url: str, request: bytes, pause: float = 0.0, rest: bytes = b"") -> tuple[int, str]:
    """Send `request` bytes (then `rest` after `pause` seconds) on one connection; the status and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        if rest:
            time.sleep(pause)
            conn.sendall(rest)
        answer = b""
        while chunk := conn.recv(65536):  # the error answers close the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def _post(url: str, body: bytes, query: str = "direction=a2b&face=whole") -> tuple[int, bytes, str]:
    request = urllib.request.Request(f"{url}/api/translate?{query}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read(), answer.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["Content-Type"]


def test_info_names_the_checkpoint_size_and_directions(served, tiny_ckpt):
    service, url = served
    with urllib.request.urlopen(f"{url}/api/info", timeout=30) as answer:
        info = json.loads(answer.read())
    assert info["checkpoint"] == Path(tiny_ckpt).name and info["image_size"] == 32
    assert set(info["directions"]) == {"a2b", "b2a"} and set(info["face_modes"]) == {"whole", "face", "paste", "paste_all"}
    with urllib.request.urlopen(url, timeout=30) as answer:
        page = answer.read().decode()
    assert Path(tiny_ckpt).name in page and 'type="file"' in page


def test_api_translates_an_upload_like_the_translator(served):
    service, url = served
    image = _image(40, 56, seed=0)
    status, body, kind = _post(url, _png(image), "direction=b2a&face=whole")
    assert status == 200 and kind == "image/png"
    out = _decode(body)
    assert out.shape == image.shape
    expected = service.translators["b2a"].translate_array(image)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_non_images_and_too_large_uploads_get_a_message(served):
    _, url = served
    status, body, kind = _post(url, b"this is not an image")
    assert status == 400 and kind == "application/json"
    assert json.loads(body)["error"] == "not a supported image format: upload a JPEG, PNG, WebP or BMP image"
    status, body, _ = _post(url, b"\0" * 300_000)
    assert status == 413 and json.loads(body)["error"] == "the upload is 0.3 MB or more; the limit is 0.2 MB"
    status, body, _ = _post(url, _png(_image(8, 8, 1)), "direction=sideways")
    assert status == 400 and "direction must be one of a2b, b2a" in json.loads(body)["error"]


def test_concurrent_requests_get_their_own_results(served):
    service, url = served
    images = [_image(32 + 8 * k, 48, seed=k) for k in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda img: _post(url, _png(img)), images))
    for image, (status, body, _) in zip(images, answers, strict=True):
        assert status == 200
        out = _decode(body)
        assert out.shape == image.shape  # each its own size: no mixed-up results
        expected = service.translators["a2b"].translate_array(image)
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_face_pasted_back_leaves_the_image_size(served):
    _, url = served
    image = _image(64, 80, seed=3)  # no face in it: the whole image is translated
    status, body, _ = _post(url, _png(image), "direction=a2b&face=paste")
    assert status == 200 and _decode(body).shape == image.shape


def test_a_real_face_is_aligned_and_pasted_back(served, selfie2anime):
    pytest.importorskip("facenet_pytorch", reason="the faces extra (facenet-pytorch) is not installed")
    service, url = served
    selfie = cv2.cvtColor(cv2.imread(str(sorted((selfie2anime / "trainA").glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
    photo = np.full((320, 400, 3), 90, np.uint8)
    photo[32:288, 72:328] = selfie  # (320, 400, 3)
    assert service.info()["face_detector"] == "mtcnn"
    status, body, _ = _post(url, _png(photo), "direction=a2b&face=face")
    face = _decode(body)
    assert status == 200 and face.shape[0] == face.shape[1] and 60 < face.shape[0] < 320  # the aligned square
    status, body, _ = _post(url, _png(photo), "direction=a2b&face=paste")
    pasted = _decode(body)
    assert status == 200 and pasted.shape == photo.shape
    diff = np.abs(pasted.astype(int) - photo).sum(-1)  # (320, 400)
    assert diff[100:220, 140:260].mean() > 1 and (diff[:, :20] == 0).all() and (diff[:, -20:] == 0).all()


@pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="needs chromium and chromedriver from the system packages (.ci/run installs them)",
)
def test_the_page_in_a_headless_browser(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    service, url = served
    upload = tmp_path / "photo.png"
    upload.write_bytes(_png(_image(36, 52, seed=5)))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(url)
        assert browser.find_element(By.ID, "ckpt").text == service.name and browser.find_element(By.ID, "error").text == ""
        browser.find_element(By.ID, "file").send_keys(str(upload))
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.execute_script("const o = document.getElementById('output'); return o.complete && o.naturalWidth > 0"))
        size = browser.execute_script("const o = document.getElementById('output'); return [o.naturalWidth, o.naturalHeight]")
        assert size == [52, 36]  # the output image, at the upload's size
        assert browser.find_element(By.ID, "download").get_attribute("hidden") is None
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"not an image at all")
        browser.find_element(By.ID, "file").send_keys(str(bad))
        wait.until(lambda b: b.find_element(By.ID, "error").text)
        assert "not a supported image format" in browser.find_element(By.ID, "error").text
    finally:
        browser.quit()


def test_serve_command_defaults_to_localhost_and_refuses_a_missing_checkpoint(tmp_path, capsys):
    from vitcycle.cli import build_parser, main

    args = build_parser().parse_args(["serve", "--ckpt", "x.ckpt"])
    assert args.host == "127.0.0.1" and args.port == 7860
    missing = tmp_path / "missing.ckpt"
    assert main(["serve", "--ckpt", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vitcycle serve: error: checkpoint {missing} does not exist; pass the .ckpt file written by `vitcycle fit`"]


def test_the_upload_limit_holds_whatever_the_headers_say(served):
    """A chunked body, or one that outgrows a small declared length, is refused as it passes the limit."""
    _, url = served
    chunk = b"\0" * 100_000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    status, body = _raw(url, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert status == 413 and "the limit is 0.2 MB" in body
    status, body = _raw(url, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert status == 400  # the HTTP parser's answer: no traceback, no dropped connection
    status, body = _raw(url, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + chunk)
    assert status == 400


def test_a_stalled_upload_gets_408_and_a_full_queue_503(served):
    service, url = served
    status, body = _raw(url, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    assert status == 408 and "stalled" in body  # 3 bytes of a declared 1000, then nothing for a second
    release, entered = threading.Event(), threading.Semaphore(0)
    slow = service.translate

    def held(*args):  # translations wait here until released: the queue (4) fills up
        entered.release()
        release.wait(60)
        return slow(*args)

    service.translate = held
    try:
        png = _png(_image(16, 16, 0))
        with ThreadPoolExecutor(max_workers=10) as pool:
            futures = [pool.submit(_post, url, png) for _ in range(10)]
            assert all(entered.acquire(timeout=60) for _ in range(4))  # the queue is full, however slow the machine
            turned_away = _first_done(futures, 6)
            release.set()
            statuses = sorted(f.result()[0] for f in futures)
    finally:
        release.set()
        service.translate = slow
    assert turned_away == [503] * 6 and statuses == [200] * 4 + [503] * 6  # no reset, no fifth in the queue


def _first_done(futures, count: int, timeout: float = 60.0) -> list[int]:
    """The statuses of the first `count` requests to finish (waiting at most `timeout` s for them)."""
    deadline = time.monotonic() + timeout
    while sum(f.done() for f in futures) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [f.result()[0] for f in futures if f.done()]


def test_idle_connections_cost_no_thread_and_block_no_one(served):
    _, url = served
    host, port = url.removeprefix("http://").split(":")
    threads = threading.active_count()
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(100)]
    try:
        time.sleep(0.5)
        start = time.perf_counter()
        status, _, _ = _post(url, _png(_image(16, 16, 2)))
        assert status == 200 and time.perf_counter() - start < 5.0
        assert threading.active_count() <= threads + 1  # the translation's worker thread at most
    finally:
        for conn in idle:
            conn.close()
