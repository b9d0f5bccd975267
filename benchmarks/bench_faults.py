"""Faults a real run meets: preemption, a full disk, hostile or heavy web clients. One table per part.

    python benchmarks/bench_faults.py                    # all parts (the disk part needs root, for tmpfs)
    python benchmarks/bench_faults.py --parts serve

- sigterm: `vitcycle fit` of tiny networks on the built-in data gets SIGTERM at five points (an early batch,
  mid-epoch, during validation, during a checkpoint save, at the last batch); each must exit 143 with a
  resumable last.ckpt whose resumed run ends with the weights of an uninterrupted one, bit for bit.
- disk: a resume whose checkpoint save meets a full disk (a tmpfs filled to leave 10-90% of the checkpoint's
  size free): exit 2, one line, every earlier checkpoint byte-identical.
- serve: `vitcycle serve` on 127.0.0.1 under 200 concurrent uploads (every answer 200 or 503, no reset),
  500 idle connections (threads and memory bounded, a normal request answered within 1 s), malformed
  requests (each a 4xx), and resident memory after 1000 requests against after 100.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
VITCYCLE = [sys.executable, "-m", "vitcycle.cli"]
TINY_VIT = {"encoder": "vit_tiny_patch16_224", "img_size": 32, "encoder_indices": [0, 1], "decoder_depth": 1,
            "head_dim": 16, "num_style_tokens": 2,
            "encoder_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 1}}


class SignalAt(pl.Callback):
    """SIGTERM to its own process at one point of the run (YAML `class_path: bench_faults.SignalAt`)."""

    def __init__(self, point: str = "early", batch: int = 1) -> None:
        self.point, self.batch, self.sent = point, batch, False

    def _send(self) -> None:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self.point == "batch" and trainer.global_step // 2 == self.batch:
            self._send()

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.point == "validation" and not trainer.sanity_checking:
            self._send()

    def on_save_checkpoint(self, trainer, module, checkpoint) -> None:
        if self.point == "save":
            self._send()


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run(VITCYCLE + args, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)


def _config(work: Path, data: Path, name: str, callbacks: list[dict] | None = None) -> Path:
    """configs/quickstart.yaml at 32 px with tiny networks, 2 epochs of 4 batches, into work/name."""
    config = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    gen = {"class_path": "vitcycle.models.ViTTranslator", "init_args": TINY_VIT}
    disc = {"class_path": "vitcycle.models.PatchDiscriminator", "init_args": {"n_layers": 2, "ndf": 8}}
    config["model"].update(gen_ab=gen, gen_ba=gen, disc_a=disc, disc_b=disc)
    config["trainer"].update(accelerator="cpu", max_epochs=2, enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=str(work / name), logger=False)
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    config["trainer"]["callbacks"] += callbacks or []
    config["data"].update(dir_a=str(data / "trainA"), dir_b=str(data / "trainB"), val_pairs=str(data / "pairs_val.csv"),
                          image_size=32, batch_size=4, num_workers=0)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def part_sigterm(work: Path, data: Path) -> None:
    assert _run(["fit", "--config", str(_config(work, data, "straight"))]).returncode == 0
    straight = _weights(work / "straight/checkpoints/last.ckpt")
    print("| SIGTERM at | exit | last.ckpt at batch | resumed = uninterrupted | message |\n|---|---:|---:|---|---|")
    points = {"an early batch": ("batch", 1), "mid-epoch": ("batch", 6), "validation": ("validation", 0),
              "a checkpoint save": ("save", 0), "the last batch": ("batch", 7)}
    for label, (point, batch) in points.items():
        name = f"stopped_{point}_{batch}"
        signal_at = {"class_path": "bench_faults.SignalAt", "init_args": {"point": point, "batch": batch}}
        done = _run(["fit", "--config", str(_config(work, data, name, [signal_at]))])
        last = work / name / "checkpoints/last.ckpt"
        at = torch.load(last, weights_only=True)["global_step"] // 2 if last.is_file() else "-"
        resumed = _run(["fit", "--config", str(_config(work, data, name)), f"--ckpt_path={last}"]) if last.is_file() else None
        same = resumed is not None and resumed.returncode == 0 and all(
            torch.equal(v, w) for v, w in zip(straight.values(), _weights(last).values(), strict=True))
        line = (done.stderr.strip().splitlines() or ["-"])[-1].replace(str(work), "…")
        print(f"| {label} | {done.returncode} | {at} | {'yes' if same else 'NO'} | {line} |")


def part_disk(work: Path, data: Path) -> None:
    if os.geteuid() != 0:
        print("disk: not measured (a tmpfs mount needs root)")
        return
    assert _run(["fit", "--config", str(_config(work, data, "first")), "--trainer.max_epochs=1"]).returncode == 0
    size = (work / "first/checkpoints/last.ckpt").stat().st_size
    print("| free space (of one checkpoint) | exit | earlier checkpoints unchanged | partial files left | message |\n"
          "|---:|---:|---|---:|---|")
    for share in (0.1, 0.3, 0.5, 0.7, 0.9):
        mount = work / f"tmpfs_{int(share * 100)}"
        mount.mkdir()
        total = 3 * size + 2_000_000  # two earlier checkpoints, the filler, room for the folder's metadata
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={total}", "tmpfs", str(mount)]).returncode != 0:
            print("disk: not measured (tmpfs could not be mounted here)")
            return
        try:
            shutil.copytree(work / "first/checkpoints", mount / "checkpoints")
            before = {p.name: _sha(p) for p in (mount / "checkpoints").glob("*.ckpt")}
            free = shutil.disk_usage(mount).free
            (mount / "filler").write_bytes(b"\0" * max(0, free - int(share * size)))
            config = _config(work, data, f"full_{int(share * 100)}")
            done = _run(["fit", "--config", str(config), f"--trainer.default_root_dir={mount}",
                         f"--ckpt_path={mount / 'checkpoints/last.ckpt'}"])
            after = {p.name: _sha(p) for p in (mount / "checkpoints").glob("*.ckpt")}
            partial = len(list((mount / "checkpoints").glob(".*partial*")))
            line = (done.stderr.strip().splitlines() or ["-"])[-1].replace(str(mount), "<tmpfs>")
            print(f"| {share:.0%} | {done.returncode} | {'yes' if after == before else 'NO'} | {partial} | {line} |")
        finally:
            subprocess.run(["umount", str(mount)])


def _png(h: int, w: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return cv2.imencode(".png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))[1].tobytes()


def _post(port: int, body: bytes) -> int | str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/translate?direction=a2b&face=whole", data=body,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError as err:  # a reset or refused connection
        return type(err).__name__


def _raw(port: int, head: bytes, body: bytes = b"") -> str:
    """Send a request's head, then its body (the server may stop reading it); the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        with contextlib.suppress(OSError):  # a server that refused the body early closes the connection
            conn.sendall(body)
        try:
            answer = conn.recv(4096)
        except OSError as err:
            return type(err).__name__
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed, no answer"


def _proc(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def part_serve(work: Path, data: Path) -> None:
    ckpt = work / "straight/checkpoints/last.ckpt"
    if not ckpt.is_file():
        assert _run(["fit", "--config", str(_config(work, data, "straight"))]).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(VITCYCLE + ["serve", "--ckpt", str(ckpt), "--port", str(port), "--device", "cpu"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        server.stdout.readline()  # "serving ... on http://..."
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        upload = _png(48, 48, 0)
        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(lambda _: _post(port, upload), range(200)))
        counts = {a: answers.count(a) for a in sorted(set(answers), key=str)}
        print("| case | result |\n|---|---|")
        print(f"| 200 concurrent uploads | {counts} |")
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(500)]
        time.sleep(1.0)
        start = time.perf_counter()
        status = _post(port, upload)
        seconds = time.perf_counter() - start
        print(f"| 500 idle connections | server threads {_proc(server.pid, 'Threads')}, resident "
              f"{_proc(server.pid, 'VmRSS') / 1024:.0f} MB; a normal request: {status} in {seconds:.2f} s |")
        for conn in idle:
            conn.close()
        chunk = b"\0" * 1_000_000
        cases = {
            "Content-Length: abc": _raw(port, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
            "Content-Length: -1, 30 MB sent": _raw(port, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                                                   chunk * 30),
            "3 bytes of a declared 1000": _raw(port, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"),
            "chunked, 30 MB": _raw(port, b"POST /api/translate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                                   b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(30)) + b"0\r\n\r\n"),
            "not an image": str(_post(port, b"plain text")),
        }
        for case, answer in cases.items():
            print(f"| {case} | {answer} |")
        rss = {}
        for n in range(1, 1001):
            _post(port, upload)
            if n in (100, 1000):
                rss[n] = _proc(server.pid, "VmRSS") / 1024
        print(f"| resident memory after 100 / 1000 requests | {rss[100]:.0f} / {rss[1000]:.0f} MB "
              f"({rss[1000] / rss[100] - 1:+.1%}) |")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["sigterm", "disk", "serve"], choices=["sigterm", "disk", "serve"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = work / "synthetic"
        assert _run(["data", "synth", "--out", str(data), "--n-train", "16", "--n-val", "8", "--size", "32",
                     "--seed", "0"]).returncode == 0
        for part in args.parts:
            print(f"\n## {part}\n")
            {"sigterm": part_sigterm, "disk": part_disk, "serve": part_serve}[part](work, data)


if __name__ == "__main__":
    main()
