"""`torch.compile` of the training networks, switched by one option, falling back to eager.

On a GPU a CycleGAN step of small ViTs is launch-bound (thousands of small kernels); compiling
fuses them, and `mode="reduce-overhead"` replays them as CUDA graphs. `nn.Module.compile` is used
(not `torch.compile(module)`), so parameter names and checkpoint keys stay as they are.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

CompileWhen = Literal["never", "cuda", "always"]


def compile_unavailable(device: torch.device, backend: str) -> str | None:
    """Why `backend` cannot compile on `device` here, or None when it can."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python version"
    if backend == "inductor":
        if device.type == "cuda":
            from torch.utils._triton import has_triton

            if not has_triton():
                return "the inductor backend needs Triton on a GPU, and it is not installed"
        elif not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
            return "the inductor backend needs a C++ compiler on the CPU, and none is on PATH"
    return None


def compile_graph_count() -> int:
    """Graphs compiled so far in this process (grows on every recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def maybe_compile(
    networks: Iterable[nn.Module], device: torch.device, when: CompileWhen, mode: str | None, backend: str
) -> bool:
    """Compile `networks` in place when `when` asks for it on `device`; True if they were.

    Where compilation is not available a warning says why and training runs eagerly; should a
    graph still fail to compile later, dynamo runs that code eagerly (`suppress_errors`, set for
    the whole process once compilation is asked for).
    """
    if when == "never" or (when == "cuda" and device.type != "cuda"):
        return False
    reason = compile_unavailable(device, backend)
    if reason is not None:
        warnings.warn(f"not compiling the networks: {reason}; training runs eagerly", stacklevel=2)
        return False
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    for network in networks:
        network.compile(mode=mode, backend=backend, dynamic=False)
    return True
