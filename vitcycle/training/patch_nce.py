"""PatchNCE: the contrastive patch loss of CUT (Park et al. 2020, "Contrastive Learning for Unpaired
Image-to-Image Translation"), on a ViTTranslator's own encoder tokens.

A translation keeps its input's content where each output token, seen through the generator's
encoder, is closer to the input token at the same place than to the input's other tokens. Unlike
the L1 cycle, nothing asks the output to keep what a second generator would need to rebuild the
input (an anime face's hair colour), so the output may change appearance freely.

Written here because neither timm nor torchmetrics has it; the projection heads are timm's `Mlp`.
Tokens of a ViT are the natural patches, so every token of every chosen depth takes part (CUT
samples 256 positions of conv features): at 64 px with patch 8 that is 64 per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn


class PatchNCE(nn.Module):
    """InfoNCE between the tokens of an output and of its input, one projection head per depth.

    Args:
        dims: width of each token map a call passes (the generator's `encoder_channels`).
        proj_dim: width of the projection heads (CUT: 256).
        temperature: of the softmax over positions (CUT: 0.07).
    """

    def __init__(self, dims: list[int], proj_dim: int = 256, temperature: float = 0.07) -> None:
        super().__init__()
        self.heads = nn.ModuleList(Mlp(dim, proj_dim, proj_dim, act_layer=nn.ReLU) for dim in dims)
        self.temperature = temperature

    def forward(self, out_tokens: list[Tensor], in_tokens: list[Tensor]) -> Tensor:
        """Mean over depths of the cross-entropy of finding each output token's own input token among
        all tokens of the same input image. Token maps (B, D, h, w); the input side is not trained."""
        losses = []
        for head, out_map, in_map in zip(self.heads, out_tokens, in_tokens, strict=True):
            query = F.normalize(head(out_map.flatten(2).transpose(1, 2)), dim=-1)  # (B, N, P)
            key = F.normalize(head(in_map.flatten(2).transpose(1, 2)), dim=-1).detach()  # (B, N, P)
            logits = query @ key.transpose(1, 2) / self.temperature  # (B, N, N): positives on the diagonal
            target = torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)  # (B, N)
            losses.append(F.cross_entropy(logits.flatten(0, 1).float(), target.flatten()))
        return torch.stack(losses).mean()
