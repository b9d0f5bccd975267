"""`vitcycle serve`: a web page to try a checkpoint, and the HTTP API behind it.

An ASGI app (Starlette) on uvicorn, an asyncio server: idle or slow connections cost no thread, the
listen backlog is large, malformed requests (a bad Content-Length, say) are answered 400 by the HTTP
parser, and the body is read in chunks, so the upload limit holds also without a Content-Length,
with a wrong one, or chunked. Inference runs in a thread pool behind a bounded queue: when it is
full the answer is 503 with `Retry-After`, never a reset connection. Uploads are decoded in memory
and never written to disk; the model is loaded once and called under a lock.

API: `GET /api/info` (JSON: checkpoint name, image size, directions, face modes and detector, upload limit);
`POST /api/translate?direction=a2b&face=whole` with the image bytes as the body answers a PNG, or a
JSON `{"error": ...}` with status 400 (not an image), 408 (the body came too slowly), 413 (too large)
or 503 (busy).
"""

from __future__ import annotations

import asyncio
import html
import os
import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

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


class _TooLarge(Exception):
    """A body past the upload limit (`size`: the bytes declared or read so far)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def make_app(service: TranslationService, max_queue: int = 8, body_timeout: float = 10.0) -> Starlette:
    """The page and the API of `service`: at most `max_queue` translations wait or run at once (more get
    503); a body that stalls for `body_timeout` seconds gets 408."""
    page = _page(service.info())
    pending = 0  # translations waiting for or holding the model (the event loop is one thread: no lock)

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store", **headers})

    async def home(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def info(request: Request) -> Response:
        return JSONResponse(service.info(), headers={"Cache-Control": "no-store"})

    async def read_body(request: Request) -> bytes:
        """The body, in memory, refused as soon as it passes the limit, whatever its headers claim."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > service.max_bytes:
            raise _TooLarge(int(declared))
        chunks, size = [], 0
        stream = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), body_timeout)
            except StopAsyncIteration:
                return b"".join(chunks)
            size += len(chunk)
            if size > service.max_bytes:
                raise _TooLarge(size)
            chunks.append(chunk)

    async def translate(request: Request) -> Response:
        nonlocal pending
        if pending >= max_queue:
            return error(503, "busy: too many translations at once; try again in a moment", **{"Retry-After": "1"})
        pending += 1  # the slot is taken before the first await, so no two requests take the last one
        try:
            data = await read_body(request)
            query = request.query_params
            out = await run_in_threadpool(service.translate, data, query.get("direction", "a2b"), query.get("face", "whole"))
            return Response(await run_in_threadpool(encode_png, out), media_type="image/png", headers={"Cache-Control": "no-store"})
        except _TooLarge as err:
            return error(413, f"the upload is {err.size / 1e6:.1f} MB or more; the limit is {service.max_bytes / 1e6:g} MB",
                         Connection="close")
        except asyncio.TimeoutError:
            return error(408, f"the upload stalled for {body_timeout:g} s; send it again", Connection="close")
        except ImageReadError as err:
            return error(400, f"{str(err).removeprefix('cannot read image the upload: ')}: upload a JPEG, PNG, WebP or BMP image")
        except VitcycleError as err:
            return error(400, str(err))
        finally:
            pending -= 1

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, f"no page {request.url.path}")

    routes = [Route("/", home), Route("/api/info", info), Route("/api/translate", translate, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={404: not_found})


class Server:
    """uvicorn serving `make_app(service)` on an already bound socket (port 0 picks a free one)."""

    def __init__(self, service: TranslationService, host: str = "127.0.0.1", port: int = 7860, max_queue: int = 8,
                 idle_timeout: float = 5.0, body_timeout: float = 10.0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(make_app(service, max_queue, body_timeout), log_level="warning", timeout_keep_alive=idle_timeout,
                                backlog=2048, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)

    def serve_forever(self) -> None:
        """Serve until `shutdown` (or Ctrl-C in the main thread)."""
        self._server.run(sockets=[self.socket])

    def shutdown(self) -> None:
        self._server.should_exit = True

    def server_close(self) -> None:
        self.socket.close()


def make_server(service: TranslationService, host: str = "127.0.0.1", port: int = 7860, **options: float) -> Server:
    """A server for `service`, bound but not started (call `serve_forever`); port 0 picks a free port;
    `options`: `Server`'s max_queue, idle_timeout, body_timeout."""
    return Server(service, host, port, **options)
