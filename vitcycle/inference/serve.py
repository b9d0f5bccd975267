"""`vitcycle serve`: a web page to try a checkpoint, and the HTTP API behind it.

Python's own `ThreadingHTTPServer` and one HTML page, written by hand on purpose: no web framework
to install or to fight the pinned torch/numpy stack, one thread per request so several users are
served at once. Uploads are decoded in memory and never written to disk; the model is loaded once
and called under a lock (decoding and encoding run in parallel).

API: `GET /api/info` (JSON: checkpoint name, image size, directions, face modes and detector, upload limit);
`POST /api/translate?direction=a2b&face=whole` with the image bytes as the body answers a PNG, or
a JSON `{"error": ...}` with status 400 (not an image) or 413 (too large).
"""

from __future__ import annotations

import html
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from vitcycle.data.imageio import MAX_PIXELS, decode_image
from vitcycle.errors import ImageReadError, VitcycleError
from vitcycle.faces.align import align_faces, crop_face, paste_back
from vitcycle.faces.detect import face_detector
from vitcycle.inference.translator import Translator

FACE_MODES = {"whole": "whole image", "face": "aligned face", "paste": "face pasted back", "paste_all": "every face pasted back"}
DIRECTIONS = {"a2b": "A → B", "b2a": "B → A"}


class TranslationService:
    """The two generators of one checkpoint, loaded once (through the project's safe loader)."""

    def __init__(self, ckpt: str | os.PathLike, device: str = "auto", max_bytes: int = 20_000_000,
                 max_pixels: float = MAX_PIXELS):
        gen_ab, gen_ba = Translator.pair_from_checkpoint(ckpt, device=device)
        self.translators = {"a2b": gen_ab, "b2a": gen_ba}
        self.name = Path(ckpt).name
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self.faces = face_detector("auto")  # MTCNN landmarks with vitcycle[faces], else Haar
        self._model = threading.Lock()

    def info(self) -> dict:
        return {
            "checkpoint": self.name,
            "image_size": self.translators["a2b"].image_size,
            "directions": DIRECTIONS,
            "face_modes": FACE_MODES,
            "face_detector": self.faces.name,
            "max_upload_bytes": self.max_bytes,
        }

    def translate(self, data: bytes, direction: str, face: str) -> np.ndarray:
        """The translation of an uploaded image, (H, W, 3) RGB uint8 (the aligned face crop in "face" mode;
        the whole image translated when no face is found).

        Raises:
            VitcycleError: unknown direction or face mode; ImageReadError: not a readable image.
        """
        if direction not in DIRECTIONS or face not in FACE_MODES:
            raise VitcycleError(f"direction must be one of {', '.join(DIRECTIONS)} and face one of {', '.join(FACE_MODES)}")
        image = decode_image(data, "the upload", self.max_pixels)  # (H, W, 3)
        found = [] if face == "whole" else align_faces(image, self.faces, all_faces=face == "paste_all")
        crops = [crop_face(image, a) for a in found] or [image]
        with self._model:
            outs = [self.translators[direction].translate_array(crop) for crop in crops]  # shapes of the crops
        if not found or face == "face":
            return outs[0]
        for alignment, out in zip(found, outs, strict=True):
            image = paste_back(image, out, alignment)
        return image


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VitcycleError("could not encode the result as PNG")
    return buf.tobytes()


def _page(info: dict) -> str:
    """The one HTML page: upload or drop, pick direction and face mode, see both, download."""
    options = lambda d: "".join(f'<option value="{k}">{html.escape(v)}</option>' for k, v in d.items())  # noqa: E731
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vitcycle: {html.escape(info["checkpoint"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}
#drop {{ border: 2px dashed #888; padding: 1.5em; text-align: center; margin: 1em 0; }}
#drop.over {{ background: #eef; }}
.pair {{ display: flex; gap: 1em; }} .pair figure {{ margin: 0; flex: 1; }} .pair img {{ max-width: 100%; }}
#error {{ color: #b00; }} #busy {{ display: none; }}
</style></head><body>
<h1>vitcycle</h1>
<p>Checkpoint <b id="ckpt">{html.escape(info["checkpoint"])}</b>, trained at {info["image_size"]} px.
Faces are found by {html.escape(info["face_detector"])} and aligned as the training faces are (eyes level).</p>
<label>Direction <select id="direction">{options(info["directions"])}</select></label>
<label>Face <select id="face">{options(info["face_modes"])}</select></label>
<div id="drop">Drop an image here, or <input type="file" id="file" accept="image/*"></div>
<p id="busy">Translating&hellip; <progress></progress></p>
<p id="error" role="alert"></p>
<div class="pair"><figure><figcaption>Input</figcaption><img id="input" alt=""></figure>
<figure><figcaption>Output <a id="download" download="translated.png" hidden>download</a></figcaption>
<img id="output" alt=""></figure></div>
<script>
const $ = (id) => document.getElementById(id);
async function send(file) {{
  $("error").textContent = ""; $("busy").style.display = "block"; $("output").removeAttribute("src");
  $("download").hidden = true; $("input").src = URL.createObjectURL(file);
  try {{
    const query = `direction=${{$("direction").value}}&face=${{$("face").value}}`;
    const answer = await fetch(`/api/translate?${{query}}`, {{ method: "POST", body: file }});
    if (!answer.ok) throw new Error((await answer.json()).error);
    const url = URL.createObjectURL(await answer.blob());
    $("output").src = url; $("download").href = url; $("download").hidden = false;
  }} catch (err) {{ $("error").textContent = err.message; }}
  finally {{ $("busy").style.display = "none"; }}
}}
$("file").addEventListener("change", () => $("file").files[0] && send($("file").files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => {{ e.preventDefault(); drop.classList.add("over"); }});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {{ e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]); }});
</script></body></html>"""


def make_server(service: TranslationService, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """An HTTP server for `service` (not started: call `serve_forever`); port 0 picks a free port."""
    page = _page(service.info()).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: one line per request is noise for a demo
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            path = urlparse(self.path).path
            if path == "/":
                self._send(200, page, "text/html; charset=utf-8")
            elif path == "/api/info":
                self._send(200, json.dumps(service.info()).encode(), "application/json")
            else:
                self._error(404, f"no page {path}")

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path != "/api/translate":
                return self._error(404, f"no API {url.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length > service.max_bytes:
                self.close_connection = True  # the body is not read
                return self._error(413, f"the upload is {length / 1e6:.1f} MB; the limit is {service.max_bytes / 1e6:g} MB")
            data = self.rfile.read(length)  # in memory only, never on disk
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                out = service.translate(data, query.get("direction", "a2b"), query.get("face", "whole"))
            except ImageReadError as err:
                return self._error(400, f"{str(err).removeprefix('cannot read image the upload: ')}: upload a JPEG, PNG, WebP or BMP image")
            except VitcycleError as err:
                return self._error(400, str(err))
            self._send(200, encode_png(out), "image/png")

    return ThreadingHTTPServer((host, port), Handler)
