"""An exponential moving average of a generator, updated without a host sync.

Written by hand because `torch.optim.swa_utils.AveragedModel` reads its counter on the host on
every update (`n_averaged` checks and `float(num_averaged)` in the average function): a GPU sync
per generator per step. Here the counter and the decay stay tensors on the model's device. The
state dict keys are AveragedModel's (`module.*`, `n_averaged`), so checkpoints of either load.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class GeneratorEMA(nn.Module):
    """An averaged copy of `model`: its parameters and floating buffers, never trained directly.

    The first update copies the model; update n + 1 moves the average towards the model by
    1 - min(decay, (1 + n) / (10 + n)), a decay that warms up (as timm's ModelEmaV3 can) so that
    early in training, and in short runs, the average is not dominated by the random init.
    Integer buffers (counters) are copied. Call `update(model)` after each optimizer step.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.decay = decay
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards `model`'s current weights (no host sync: everything stays on device)."""
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        floats = [(e, m) for e, m in zip(mine, theirs, strict=True) if e.is_floating_point()]
        ints = [(e, m) for e, m in zip(mine, theirs, strict=True) if not e.is_floating_point()]
        if ints:
            torch._foreach_copy_([e for e, _ in ints], [m for _, m in ints])
        if floats:
            n = self.n_averaged.to(torch.float32)  # updates averaged so far: 0-dim, on device
            warm = torch.clamp((1.0 + n) / (10.0 + n), max=self.decay)
            weight: Tensor = torch.where(self.n_averaged == 0, torch.ones_like(n), 1.0 - warm)  # 1: copy
            ema_values = [e for e, _ in floats]
            model_values = [m.detach().to(e.dtype) for e, m in floats]
            weight = weight.to(ema_values[0].dtype)
            if weight.device.type == "cpu":
                # ema += weight * (model - ema) as one lerp per tensor: 4x faster than the three passes
                # below on a CPU. The weight is given as a list of one 0-dim tensor (`List` overload), so
                # it is never read on the host either.
                torch._foreach_lerp_(ema_values, model_values, [weight] * len(ema_values))
            else:
                # On a GPU: three fused passes over all tensors (sub, mul by the 0-dim tensor, add). The `List`
                # overload there wants one weight per tensor of its shape, or may leave the fused kernels.
                steps = torch._foreach_sub(model_values, ema_values)
                torch._foreach_mul_(steps, weight)
                torch._foreach_add_(ema_values, steps)
        self.n_averaged.add_(1)
