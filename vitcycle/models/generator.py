"""ViTTranslator: a timm ViT-family encoder, a transformer decoder with style tokens, and a DPT-style image head.

Layout (timm-like, inside one file): `CrossAttention` -> `DecoderBlock` -> `ResidualConvUnit` /
`PixelShuffleUp` or `ResizeConvUp` -> `ViTTranslator`; timm builds the encoder and loads its weights (hub or a local file).

Data flow for an input of (B, 3, H, W) in [-1, 1], padded to a size the encoder takes and cropped back:

    x ──▶ encoder (timm, forward_intermediates) ──▶ maps at several levels, each (B, D_i, H/r_i, W/r_i):
          a plain ViT (ViT, DeiT, EVA, BEiT): one stride r = the patch; a hierarchical one (Swin, PiT,
          MaxViT, MViTv2, CrossViT's branches): strides 4 to 32
          deepest ──▶ decoder blocks (self-attn, cross-attn to style tokens, MLP) ──▶ (B, Dd, h, w)
    pyramid: each level to the head stage of its stride (a plain ViT's spread over 1/p, 1/(p/2), ...,
    as DPT does), 1x1 conv + resize; fused top-down (upsampling + residual conv unit) with a thin
    convolutional stem of x at 1/4, 1/2 and full resolution ──▶ 3x3 conv ──▶ tanh ──▶ (B, 3, H, W)
"""

from __future__ import annotations

import math
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.layers import (
    Attention,
    DropPath,
    LayerNorm2d,
    Mlp,
    trunc_normal_,
)
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitcycle.errors import VitcycleError
from vitcycle.models._init_args import InitArgsMixin

__all__ = ["ViTTranslator", "DecoderBlock", "CrossAttention"]

# Scale of the input inside the global residual: atanh(0.95) = 1.83, so a saturated input pixel
# keeps a tanh slope of 0.1 (it can still be changed by training); identity error at init <= 0.05.
_RESIDUAL_SCALE = 0.95


class CrossAttention(nn.Module):
    """Multi-head attention from query tokens to a memory (style tokens), via scaled_dot_product_attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise VitcycleError(f"decoder dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        M = memory.shape[1]
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)
        kv = self.kv(memory).reshape(B, M, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)  # (B, h, M, d)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.proj_drop(self.proj(x))


class DecoderBlock(nn.Module):
    """Pre-norm transformer decoder block: self-attention, cross-attention to a memory, MLP.

    The last linear layer of each branch is zero-initialised by `ViTTranslator.init_weights`, so a
    new block is the identity and the pretrained encoder tokens pass through it unchanged.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.norm_mem = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))  # (B, N, C)
        x = x + self.drop_path(self.cross_attn(self.norm2(x), self.norm_mem(memory)))  # (B, N, C)
        x = x + self.drop_path(self.mlp(self.norm3(x)))  # (B, N, C)
        return x


class ResidualConvUnit(nn.Module):
    """DPT's residual conv unit: x + conv(relu(conv(relu(x)))); the second conv starts at zero."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class PixelShuffleUp(nn.Module):
    """2x upsampling by sub-pixel convolution (3x3 conv to 4C, pixel shuffle), ICNR-initialised.

    `size` resizes the result when the target is not exactly twice the input (patch sizes that
    are not a power of two, e.g. 14).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.shuffle(self.conv(F.relu(x)))  # (B, C_out, 2h, 2w)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (B, C_out, *size)
        return x


class ResizeConvUp(nn.Module):
    """2x upsampling by bilinear resize, then a 3x3 conv (Odena et al. 2016, "Deconvolution and
    Checkerboard Artifacts"): neighbouring tokens blend at their border instead of each filling its
    own block of pixels, so no patch grid can form."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(F.relu(x), size=size, mode="bilinear", align_corners=False)  # (B, C_in, *size)
        return self.conv(x)  # (B, C_out, *size)


UPSAMPLERS = {"pixel_shuffle": PixelShuffleUp, "bilinear": ResizeConvUp}


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class ViTTranslator(InitArgsMixin, nn.Module):
    """ViT-family encoder -> transformer decoder with style tokens -> DPT-style head; an image-to-image generator.

    Output = tanh(head(features)) by default. With `global_residual`, output = tanh(head(features) +
    atanh(0.95 x)) and the head's last conv and every residual branch's last layer start at zero, so
    a new generator is (nearly) the identity: it learns a change of its input. On real data such a
    generator stayed near its input, hence the default (benchmarks/RESULTS.md, the ledger).

    Args:
        encoder: name of a timm model with `forward_intermediates`: a plain ViT ("vit_small_patch16_224",
            DeiT, EVA, BEiT) or a hierarchical one ("swin_tiny_patch4_window7_224", PiT, MaxViT,
            MViTv2, CrossViT).
        img_size: image size the encoder is built for. Encoders with `dynamic_img_size` take any
            size (inputs are padded to a multiple of the patch); the others take this one (or the
            next size they run at, `encoder_size`), and smaller inputs are padded to it.
        pretrained: load timm's hub weights for `encoder` (needs network access or a warm cache).
        pretrained_path: local .safetensors or .pth/.pt file with encoder weights (timm's key names),
            loaded by timm; works offline and takes precedence over `pretrained`. Position and patch
            embeddings of another size are resampled; classifier and pruned-part keys may be absent.
        encoder_kwargs: extra keyword arguments for `timm.create_model`, e.g. {"patch_size": 8, "depth": 6}.
        encoder_indices: encoder levels whose maps are used (blocks of a ViT, stages of a hierarchical
            encoder; negative counts from the end). The deepest feeds the decoder, the others the
            image head; what comes after it is pruned. Default: every stage of a hierarchical
            encoder, 4 evenly spaced blocks of a plain ViT, ending with the last.
        decoder_depth: number of decoder blocks.
        decoder_dim: decoder width; None uses the encoder width.
        decoder_num_heads: decoder attention heads; None uses decoder_dim // 64.
        mlp_ratio: decoder MLP hidden size as a multiple of its width.
        decoder_drop_path: stochastic-depth rate of the decoder blocks.
        num_style_tokens: number of learned style tokens of the target domain.
        style_encoder: also build a small ViT that turns a reference image into style tokens
            (`forward(x, style=reference)`).
        style_dim: width of the style encoder.
        style_depth: depth of the style encoder.
        head_dim: channels of the image head at the decoder's grid; halved at every 2x upsampling,
            so the full-resolution convs are thin (head_dim // 16 channels for patch 16).
        global_residual: output tanh(head + atanh(0.95 x)) instead of tanh(head).
        head_min_channels: least number of channels of any head stage, so that the convolutional
            path at full, 1/2 and 1/4 resolution can be made wider than head_dim's halvings give.
        upsample: how the head doubles the resolution, "bilinear" (resize, then conv: no patch grid
            forms at token borders) or "pixel_shuffle" (sub-pixel conv, ICNR).
        head_norm: normalise the head's maps after every stage (GroupNorm of one group: each image's
            channels and pixels together), so their scale cannot compound from stage to stage, drown
            the finer stages' skips or saturate the output tanh.
    """

    weight_args = {"pretrained": False, "pretrained_path": None}  # a checkpoint holds the weights

    def __init__(
        self,
        encoder: str = "vit_small_patch16_224",
        img_size: int = 256,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        encoder_kwargs: dict | None = None,
        encoder_indices: list[int] | None = None,
        decoder_depth: int = 4,
        decoder_dim: int | None = None,
        decoder_num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        decoder_drop_path: float = 0.0,
        num_style_tokens: int = 8,
        style_encoder: bool = False,
        style_dim: int = 192,
        style_depth: int = 4,
        head_dim: int = 256,
        global_residual: bool = False,
        head_min_channels: int = 8,
        upsample: str = "bilinear",
        head_norm: bool = False,
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLERS:
            raise VitcycleError(f"upsample {upsample!r} is not one of {', '.join(UPSAMPLERS)}")
        self.global_residual = global_residual
        self.grad_checkpointing = False

        # --- encoder: one token grid (ViT, DeiT, EVA, BEiT) or several strides (Swin, PiT, MaxViT, CrossViT) ---
        self.encoder, self.encoder_size = _create_encoder(encoder, img_size, pretrained, pretrained_path, encoder_kwargs)
        info = self.encoder.feature_info
        hierarchical = len({f["reduction"] for f in info}) > 1
        indices = _resolve_indices(encoder_indices, len(info), every_level=hierarchical)
        self.encoder_indices = indices
        before = set(self.encoder.state_dict())
        # blocks after the deepest index, the final norm and the classifier are unused: prune them
        self.encoder.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
        if pretrained_path:  # the file may hold the pruned parts, or not
            pruned = tuple(before - set(self.encoder.state_dict()))
            _check_encoder_file(self.encoder, pretrained_path, _UNUSED_ENCODER_KEYS + pruned)
        cfg = self.encoder.pretrained_cfg or {}
        mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, -1, 1, 1)
        # [-1, 1] -> [0, 1] -> (. - mean) / std, folded into one affine map
        self.register_buffer("in_scale", 0.5 / std, persistent=False)
        self.register_buffer("in_shift", (0.5 - mean) / std, persistent=False)
        self.encoder_channels = [int(info[i]["num_chs"]) for i in indices]  # shallow to deep
        reductions = [float(info[i]["reduction"]) for i in indices]
        patch = getattr(getattr(self.encoder, "patch_embed", None), "patch_size", None)
        if isinstance(patch, tuple | list) and len(patch) == 2:  # the size multiple a dynamic encoder needs
            self.patch_size = (int(patch[0]), int(patch[1]))
        else:
            self.patch_size = (max(4, round(min(reductions))),) * 2
        if reductions[-1] < 4:
            raise VitcycleError(
                f"encoder features at 1/{reductions[-1]:g} of the input are too fine for the image head; "
                "use a patch size of 4 or more (or a deeper encoder_indices level)"
            )
        enc_dim = self.encoder_channels[-1]
        self.img_size = img_size

        # --- decoder ---
        dim = decoder_dim or enc_dim
        num_heads = decoder_num_heads or max(1, dim // 64)
        self.decoder_dim = dim
        self.decoder_proj = nn.Linear(enc_dim, dim) if dim != enc_dim else nn.Identity()
        self.style_tokens = nn.Parameter(torch.zeros(1, num_style_tokens, dim))
        dpr = [r.item() for r in torch.linspace(0, decoder_drop_path, decoder_depth)]
        self.decoder = nn.ModuleList(
            DecoderBlock(dim, num_heads, mlp_ratio=mlp_ratio, drop_path=dpr[i]) for i in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-6)

        # --- optional style encoder: reference image -> tokens, pooled by the learned style tokens ---
        if style_encoder:
            self.style_encoder = VisionTransformer(
                img_size=img_size,
                patch_size=self.patch_size,
                embed_dim=style_dim,
                depth=style_depth,
                num_heads=max(1, style_dim // 64),
                num_classes=0,
                global_pool="",
                class_token=False,
                dynamic_img_size=True,
            )
            self.style_proj = nn.Linear(style_dim, dim)
            self.style_pool = DecoderBlock(dim, num_heads, mlp_ratio=mlp_ratio)
        else:
            self.style_encoder = None
            self.style_proj = None
            self.style_pool = None

        # --- image head ---
        # stage k works at 1 / 2**k of the input; stage `num_stages` is the decoder's token grid
        self.num_stages = math.ceil(math.log2(reductions[-1]))
        S = self.num_stages
        ch = [max(head_dim >> (S - k), head_min_channels) for k in range(S + 1)]
        self.head_channels = ch
        # level j (0 = decoder output, 1.. = encoder levels from deep to shallow) -> the stage of its
        # stride; levels of one stride (a plain ViT) spread over finer stages, as DPT's reassembly does
        deep_first = reductions[-2::-1]
        self.level_stage = [S] + [max(min(round(math.log2(r)), S - j), 2) for j, r in enumerate(deep_first, 1)]
        level_dims = [dim] + self.encoder_channels[-2::-1]
        self.reassemble = nn.ModuleList(
            nn.Sequential(nn.Identity() if j == 0 else LayerNorm2d(d), nn.Conv2d(d, ch[k], 1))
            for j, (d, k) in enumerate(zip(level_dims, self.level_stage, strict=True))
        )
        self.stem = nn.ModuleList(
            [
                _conv_block(3, ch[0], 1),
                _conv_block(ch[0], ch[1], 2),
                nn.Sequential(nn.Conv2d(ch[1], ch[2], 3, stride=2, padding=1), nn.ReLU(inplace=True)),
            ]
        )
        self.up = nn.ModuleList(UPSAMPLERS[upsample](ch[k + 1], ch[k]) for k in range(S))  # up[k]: stage k+1 -> k
        self.fuse = nn.ModuleList(ResidualConvUnit(ch[k]) for k in range(S + 1))
        self.stage_norm = nn.ModuleList(nn.GroupNorm(1, ch[k]) if head_norm else nn.Identity() for k in range(S + 1))
        self.head_out = nn.Conv2d(ch[0], 3, 3, padding=1)

        self.init_weights()

    def init_weights(self) -> None:
        """Initialise every layer outside the timm encoders (which keep timm's init or pretrained weights).

        Linear: truncated normal (std 0.02); conv: Kaiming (fan-in, ReLU); pixel-shuffle convs: ICNR
        (every sub-pixel gets the same kernel, so no checkerboard at the start); the last layer of
        every residual branch (decoder attention/cross-attention/MLP, residual conv units) is zero,
        and so is the output conv when `global_residual`, making a new model the identity map.
        """
        for name, m in self.named_modules():
            if name.split(".")[0] in ("encoder", "style_encoder"):
                continue
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm | LayerNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.style_tokens, std=0.02)
        for up in (u for u in self.up if isinstance(u, PixelShuffleUp)):  # ICNR (Aitken et al. 2017)
            w = up.conv.weight  # (4 C_out, C_in, 3, 3)
            kernel = torch.empty(w.shape[0] // 4, *w.shape[1:])
            nn.init.kaiming_normal_(kernel, mode="fan_in", nonlinearity="relu")
            with torch.no_grad():
                w.copy_(kernel.repeat_interleave(4, dim=0))
        blocks = list(self.decoder) + ([self.style_pool] if self.style_pool is not None else [])
        zero = [layer for b in blocks for layer in (b.attn.proj, b.cross_attn.proj, b.mlp.fc2)]
        zero += [rcu.conv2 for rcu in self.fuse]
        if self.global_residual:
            zero.append(self.head_out)
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names that an optimizer should exempt from weight decay (timm convention)."""
        names = {"style_tokens"} | {f"encoder.{n}" for n in getattr(self.encoder, "no_weight_decay", set)()}
        if self.style_encoder is not None:
            names |= {f"style_encoder.{n}" for n in self.style_encoder.no_weight_decay()}
        return names

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute encoder and decoder blocks in the backward pass to save memory."""
        self.grad_checkpointing = enable
        self.encoder.set_grad_checkpointing(enable)
        if self.style_encoder is not None:
            self.style_encoder.set_grad_checkpointing(enable)

    def _check_input(self, x: torch.Tensor, what: str) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise VitcycleError(f"{what} must be an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if self.encoder_size is not None and max(H, W) > self.encoder_size:
            raise VitcycleError(
                f"{what} size {H}x{W} is larger than the {self.encoder_size} px this encoder takes (it has no "
                f"dynamic size); resize it to at most {self.encoder_size} px or build the generator with a larger img_size"
            )

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding that makes an input one the encoder takes: multiples of
        the patch size, or the one size of an encoder without dynamic size; split evenly, so the
        face stays centred in windows and grids."""
        if self.encoder_size is not None:
            pad_h, pad_w = self.encoder_size - height, self.encoder_size - width
        else:
            pad_h, pad_w = -height % self.patch_size[0], -width % self.patch_size[1]
        return (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (B, 3, H, W) padded by `padding` (reflected; replicated where the image is too small to reflect)."""
        pad = self.padding(*x.shape[-2:])
        if not any(pad):
            return x
        mode = "reflect" if max(pad) < min(x.shape[-2:]) else "replicate"
        return F.pad(x, pad, mode=mode)  # (B, 3, H + top + bottom, W + left + right)

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder maps at `encoder_indices` of `x` (padded if needed), shallow to deep, each (B, D_i, H/r_i, W/r_i)."""
        x = self.pad(x) * self.in_scale + self.in_shift  # (B, 3, H', W'), encoder's own mean/std
        return self.encoder.forward_intermediates(
            x, indices=self.encoder_indices, output_fmt="NCHW", intermediates_only=True
        )

    def forward_style(self, style: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Style tokens (B or 1, K, Dd): the learned target-domain tokens, or those of a reference image."""
        tokens = self.style_tokens  # (1, K, Dd)
        if style is None:
            return tokens
        if self.style_encoder is None:
            raise VitcycleError(
                "a style reference was given but this generator has no style encoder; "
                "build it with style_encoder=True (and train it so) or translate without a style image"
            )
        if style.ndim != 4 or style.shape[1] != 3:
            raise VitcycleError(f"style reference must be an image batch of shape (B, 3, H, W), got {tuple(style.shape)}")
        if style.shape[0] not in (1, batch_size):
            raise VitcycleError(f"style batch size {style.shape[0]} must be 1 or the input's ({batch_size})")
        ph, pw = self.patch_size
        pad_h, pad_w = -style.shape[-2] % ph, -style.shape[-1] % pw
        style = F.pad(style, (0, pad_w, 0, pad_h), mode="replicate")  # (Bs, 3, H', W'): multiples of the patch
        ref = self.style_proj(self.style_encoder.forward_features(style))  # (Bs, M, Dd)
        tokens = tokens.expand(ref.shape[0], -1, -1)  # (Bs, K, Dd)
        return self.style_pool(tokens, ref)  # (Bs, K, Dd)

    def forward_decoder(self, tokens: torch.Tensor, style_tokens: torch.Tensor) -> torch.Tensor:
        """Decode the deepest encoder map (B, D, h, w) with cross-attention to style tokens -> (B, Dd, h, w)."""
        B, _, h, w = tokens.shape
        x = self.decoder_proj(tokens.flatten(2).transpose(1, 2))  # (B, N, Dd)
        memory = style_tokens.expand(B, -1, -1)  # (B, K, Dd)
        for block in self.decoder:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, memory, use_reentrant=False)
            else:
                x = block(x, memory)  # (B, N, Dd)
        x = self.decoder_norm(x)
        return x.transpose(1, 2).reshape(B, -1, h, w)  # (B, Dd, h, w)

    def forward_features(self, x: torch.Tensor, style: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Encoder + decoder: maps for the head, deepest first, of `x` padded by `pad`.

        Returns:
            [decoder output (B, Dd, h, w) on the deepest level's grid, then the other encoder levels
            (B, D_i, h_i, w_i) from deep to shallow].
        """
        self._check_input(x, "input")
        enc = self.forward_encoder(x)
        dec = self.forward_decoder(enc[-1], self.forward_style(style, x.shape[0]))
        return [dec] + enc[-2::-1]

    def forward_head(self, features: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Feature pyramid from `features`, fused top-down with a conv stem of `x` -> image (B, 3, H, W)."""
        S = self.num_stages
        stem = []
        s = x
        for layer in self.stem:
            s = layer(s)
            stem.append(s)  # (B, ch[k], H / 2**k, W / 2**k), k = 0, 1, 2
        H, W = x.shape[-2:]
        sizes = [tuple(stem[k].shape[-2:]) if k < 3 else (-(-H // 2**k), -(-W // 2**k)) for k in range(S)]
        sizes.append(tuple(features[0].shape[-2:]))  # the token grid (H/p, W/p)

        laterals: list[torch.Tensor | None] = stem + [None] * (S - 2)  # per stage; S >= 2 (patch >= 4)
        for feat, layer, k in zip(features, self.reassemble, self.level_stage, strict=True):
            y = layer(feat)  # (B, ch[k], h, w); 1x1 conv before the resize: cheaper, same result
            if tuple(y.shape[-2:]) != sizes[k]:
                y = F.interpolate(y, size=sizes[k], mode="bilinear", align_corners=False)  # (B, ch[k], *size)
            laterals[k] = y if laterals[k] is None else laterals[k] + y

        y = self.stage_norm[S](self.fuse[S](laterals[S]))  # (B, ch[S], h, w)
        for k in range(S - 1, -1, -1):
            y = self.up[k](y, sizes[k])  # (B, ch[k], *sizes[k])
            if laterals[k] is not None:
                y = y + laterals[k]
            y = self.stage_norm[k](self.fuse[k](y))
        y = self.head_out(F.relu(y))  # (B, 3, H, W)
        if self.global_residual:
            y = y + torch.atanh(x.clamp(-1.0, 1.0) * _RESIDUAL_SCALE)
        return torch.tanh(y)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Translate an image batch (B, 3, H, W) in [-1, 1] of any size; `style` is an optional reference batch (1 or B).

        The input is padded to a size the encoder takes (`pad`) and the output cropped back to (B, 3, H, W).
        """
        self._check_input(x, "input")
        H, W = x.shape[-2:]
        left, _, top, _ = self.padding(H, W)
        x = self.pad(x)  # (B, 3, H', W')
        y = self.forward_head(self.forward_features(x, style), x)  # (B, 3, H', W')
        return y[:, :, top : top + H, left : left + W]  # (B, 3, H, W)


def _create_encoder(
    name: str, img_size: int, pretrained: bool, pretrained_path: str | None, kwargs: dict | None
) -> tuple[nn.Module, int | None]:
    """timm's model `name` without a classifier, and the one input size it takes (None: any multiple of its patch).

    Weights come from `pretrained_path` (timm's local loader) or the hub. Models that take
    `dynamic_img_size` get it; the others (PiT, CrossViT, MaxViT, BEiT, LeViT, MViTv2) are built
    for `img_size`, or for the next size they can run at (CrossViT's two patch sizes, MaxViT's windows).
    """
    if not timm.is_model(name):
        raise VitcycleError(f"unknown timm model {name!r} for encoder; see timm.list_models('vit_*')")
    kwargs = dict(kwargs or {})
    args = {"num_classes": 0, "img_size": img_size, "dynamic_img_size": True, **kwargs}
    try:
        model = _build_encoder(name, pretrained, pretrained_path, args)
        fixed_size = None
    except TypeError as e:
        if "dynamic_img_size" not in str(e) or "dynamic_img_size" in kwargs:
            raise VitcycleError(f"encoder {name!r} does not accept encoder_kwargs {kwargs or None}: {e}") from e
        del args["dynamic_img_size"]
        try:
            model = _build_encoder(name, pretrained, pretrained_path, args)
            fixed_size = args["img_size"]
            if "img_size" not in kwargs and not _runs_at(model, fixed_size):
                fixed_size = _runnable_size(name, args)
                model = _build_encoder(name, pretrained, pretrained_path, {**args, "img_size": fixed_size})
        except TypeError as e2:
            raise VitcycleError(f"encoder {name!r} does not accept encoder_kwargs {kwargs or None}: {e2}") from e2
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
        raise VitcycleError(f"encoder {name!r} has no forward_intermediates and feature_info; use a timm ViT-family model")
    return model, fixed_size


def _build_encoder(name: str, pretrained: bool, pretrained_path: str | None, args: dict) -> nn.Module:
    """`timm.create_model(name, **args)` with weights, each failure to load them as one clear error."""
    if pretrained_path:
        if not Path(pretrained_path).is_file():
            raise VitcycleError(f"pretrained_path {pretrained_path!r} does not exist; give a local .safetensors or .pth file")
        args = {**args, "pretrained_cfg_overlay": dict(file=str(pretrained_path))}
    try:
        return timm.create_model(name, pretrained=pretrained or bool(pretrained_path), **args)
    except TypeError:
        raise
    except Exception as e:
        if pretrained_path:  # say which keys do not fit, or why the file cannot be read
            args.pop("pretrained_cfg_overlay")
            _check_encoder_file(timm.create_model(name, **args), pretrained_path, _UNUSED_ENCODER_KEYS)
            raise VitcycleError(f"cannot load encoder weights {pretrained_path!r}: {type(e).__name__}: {e}") from e
        if not pretrained or not isinstance(e, OSError | RuntimeError):
            raise
        raise VitcycleError(
            f"could not load pretrained weights for encoder {name!r} ({type(e).__name__}: {e}); "
            "offline? pass pretrained_path=<local .safetensors/.pth file> or pretrained=False"
        ) from e


def _runs_at(model: nn.Module, size: int) -> bool:
    """Whether `model` takes a (1, 3, size, size) input."""
    try:
        with torch.no_grad():
            model.eval().forward_intermediates(torch.zeros(1, 3, size, size), intermediates_only=True)
        return True
    except (RuntimeError, AssertionError, IndexError, ValueError):
        return False


def _runnable_size(name: str, args: dict) -> int:
    """The next size after args["img_size"] (in steps of 4, up to twice it) at which the fixed-size model runs.

    Such a model sizes its position embeddings and windows from `img_size`, but some sizes do not
    fit its strides (CrossViT at 64 px: 12 px patches); a randomly initialised try per size finds one.
    """
    first = args["img_size"]
    for size in range(first // 4 * 4 + 4, 2 * first + 1, 4):
        if _runs_at(timm.create_model(name, **{**args, "img_size": size}), size):
            return size
    raise VitcycleError(f"encoder {name!r} runs at no size from {first} to {2 * first} px; choose another img_size")


def _resolve_indices(indices: list[int] | None, depth: int, every_level: bool = False) -> list[int]:
    """Sorted non-negative levels; by default every level of a hierarchical encoder, 4 evenly spaced blocks of a ViT."""
    if indices is None:
        if every_level:
            return list(range(depth))
        n = min(4, depth)
        return sorted({round((i + 1) * depth / n) - 1 for i in range(n)})
    out = sorted({i % depth if -depth <= i < depth else i for i in indices})
    if not out or out[0] < 0 or out[-1] >= depth:
        raise VitcycleError(f"encoder_indices {indices} must be non-empty levels in [-{depth}, {depth - 1}]")
    return out


# Encoder keys a weights file may hold or lack: the classifier and final norms, pruned by ViTTranslator.
_UNUSED_ENCODER_KEYS = ("head.", "fc_norm.", "norm.", "attn_pool.")
# Keys timm resamples to the encoder's grid and patch size: only these dimensions must match.
_RESAMPLED = {"pos_embed": slice(-1, None), "patch_embed.proj.weight": slice(0, 2)}


def _check_encoder_file(encoder: nn.Module, path: str, optional: tuple[str, ...]) -> None:
    """Refuse a weights file whose keys do not fit `encoder` (keys starting with `optional` aside).

    timm loads a file leniently when its classifier differs (as ours, with no classifier, always
    does), so a file lacking encoder blocks would leave them at random; this check names the keys.
    """
    try:
        sd = timm.models.load_state_dict(str(path))  # timm's reader: .safetensors or torch (weights only)
    except Exception as e:  # any unreadable file becomes one clear message
        raise VitcycleError(f"cannot read encoder weights {str(path)!r}: {type(e).__name__}: {e}") from e
    own = encoder.state_dict()
    wanted = {k for k in own if not k.startswith(optional)}
    given = {k for k in sd if not k.startswith(optional)}
    shown = _RESAMPLED.get
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(given & wanted)
        if sd[k].shape[shown(k, slice(None))] != own[k].shape[shown(k, slice(None))]
    ]
    parts = [
        f"{label}: " + ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
        for label, keys in (
            ("missing keys", sorted(wanted - given)),
            ("unexpected keys", sorted(given - set(own))),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if parts:
        raise VitcycleError(
            f"encoder weights {str(path)!r} do not fit the encoder ({'; '.join(parts)}); "
            "check the encoder name and encoder_kwargs match the checkpoint"
        )
