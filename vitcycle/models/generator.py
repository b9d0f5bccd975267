"""ViTTranslator: a timm ViT encoder, a transformer decoder with style tokens, and a DPT-style image head.

Layout (timm-like, inside one file): `CrossAttention` -> `DecoderBlock` -> `ResidualConvUnit` /
`PixelShuffleUp` or `ResizeConvUp` -> `ViTTranslator`; timm builds the encoder and loads its weights (hub or a local file).

Data flow for an input of (B, 3, H, W) in [-1, 1] and a patch size p (p = 16 shown):

    x ──▶ encoder (timm ViT) ──▶ tokens at several depths, each (B, D, H/p, W/p)
          deepest ──▶ decoder blocks (self-attn, cross-attn to style tokens, MLP) ──▶ (B, Dd, H/p, W/p)
    pyramid: decoder out at 1/16, shallower depths at 1/8 and 1/4 (1x1 conv + resize)
    fused top-down (pixel-shuffle up + residual conv unit) with a thin convolutional stem of x
    at 1/4, 1/2 and full resolution ──▶ 3x3 conv ──▶ tanh(. + atanh(0.95 x)) ──▶ (B, 3, H, W)
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
    """ViT encoder -> transformer decoder with style tokens -> DPT-style head; an image-to-image generator.

    Output = tanh(head(features)) by default. With `global_residual`, output = tanh(head(features) +
    atanh(0.95 x)) and the head's last conv and every residual branch's last layer start at zero, so
    a new generator is (nearly) the identity: it learns a change of its input. On real data such a
    generator stayed near its input, hence the default (benchmarks/RESULTS.md, the ledger).

    Args:
        encoder: name of a timm VisionTransformer (anything with `forward_intermediates`),
            e.g. "vit_small_patch16_224".
        img_size: image size the encoder's position embedding is built for; other sizes work
            (`dynamic_img_size`), the embedding is interpolated.
        pretrained: load timm's hub weights for `encoder` (needs network access or a warm cache).
        pretrained_path: local .safetensors or .pth/.pt file with encoder weights (timm's key names),
            loaded by timm; works offline and takes precedence over `pretrained`. Position and patch
            embeddings of another size are resampled; classifier and pruned-part keys may be absent.
        encoder_kwargs: extra keyword arguments for `timm.create_model`, e.g. {"patch_size": 8, "depth": 6}.
        encoder_indices: encoder depths whose tokens are used (negative counts from the end). The
            deepest feeds the decoder, the others the image head; blocks after it are pruned.
            Default: 4 evenly spaced depths ending with the last block.
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
        head_dim: channels of the image head at the token-grid scale; halved at every 2x upsampling,
            so the full-resolution convs are thin (head_dim // 16 channels for patch 16).
        global_residual: output tanh(head + atanh(0.95 x)) instead of tanh(head).
        head_min_channels: least number of channels of any head stage, so that the convolutional
            path at full, 1/2 and 1/4 resolution can be made wider than head_dim's halvings give.
        upsample: how the head doubles the resolution, "bilinear" (resize, then conv: no patch grid
            forms at token borders) or "pixel_shuffle" (sub-pixel conv, ICNR).
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
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLERS:
            raise VitcycleError(f"upsample {upsample!r} is not one of {', '.join(UPSAMPLERS)}")
        self.global_residual = global_residual
        self.grad_checkpointing = False

        # --- encoder ---
        self.encoder = _create_encoder(encoder, img_size, pretrained, pretrained_path, encoder_kwargs)
        depth = len(self.encoder.blocks)
        indices = _resolve_indices(encoder_indices, depth)
        self.encoder_indices = indices
        if pretrained_path:  # before pruning: the file may hold the parts pruned next, or not
            deeper = tuple(f"blocks.{i}." for i in range(indices[-1] + 1, depth))
            _check_encoder_file(self.encoder, pretrained_path, _UNUSED_ENCODER_KEYS + deeper)
        # blocks after the deepest index, the final norm and the classifier are unused: prune them
        self.encoder.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
        cfg = self.encoder.pretrained_cfg or {}
        mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, -1, 1, 1)
        # [-1, 1] -> [0, 1] -> (. - mean) / std, folded into one affine map
        self.register_buffer("in_scale", 0.5 / std, persistent=False)
        self.register_buffer("in_shift", (0.5 - mean) / std, persistent=False)
        patch = self.encoder.patch_embed.patch_size
        self.patch_size = (int(patch[0]), int(patch[1]))
        if min(self.patch_size) < 4:
            raise VitcycleError(
                f"encoder patch size {self.patch_size} is below 4; use a patch size of 4 or more"
            )
        enc_dim = self.encoder.embed_dim
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
        # stage k works at 1 / 2**k of the input; stage `num_stages` is the token grid (1/p)
        self.num_stages = math.ceil(math.log2(max(self.patch_size)))
        S = self.num_stages
        ch = [max(head_dim >> (S - k), head_min_channels) for k in range(S + 1)]
        self.head_channels = ch
        # token level j (0 = decoder output, 1.. = encoder depths from deep to shallow) -> stage
        self.level_stage = [max(S - j, 2) for j in range(len(indices))]
        level_dims = [dim] + [enc_dim] * (len(indices) - 1)
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
            elif isinstance(m, nn.LayerNorm | LayerNorm2d):
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
        names = {"style_tokens"} | {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
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
        ph, pw = self.patch_size
        if H % ph or W % pw:
            raise VitcycleError(
                f"{what} size {H}x{W} is not a multiple of the patch size {ph}x{pw}; "
                f"resize or crop it, e.g. to {max(ph, H // ph * ph)}x{max(pw, W // pw * pw)}"
            )

    def forward_encoder(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder tokens at `encoder_indices`, shallow to deep, each (B, D, H/p, W/p)."""
        x = x * self.in_scale + self.in_shift  # (B, 3, H, W), encoder's own mean/std
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
        self._check_input(style, "style reference")
        if style.shape[0] not in (1, batch_size):
            raise VitcycleError(f"style batch size {style.shape[0]} must be 1 or the input's ({batch_size})")
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
        """Encoder + decoder: token maps for the head, deepest first.

        Returns:
            [decoder output (B, Dd, H/p, W/p), then encoder maps (B, D, H/p, W/p) from deep to shallow].
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

        y = self.fuse[S](laterals[S])  # (B, ch[S], h, w)
        for k in range(S - 1, -1, -1):
            y = self.up[k](y, sizes[k])  # (B, ch[k], *sizes[k])
            if laterals[k] is not None:
                y = y + laterals[k]
            y = self.fuse[k](y)
        y = self.head_out(F.relu(y))  # (B, 3, H, W)
        if self.global_residual:
            y = y + torch.atanh(x.clamp(-1.0, 1.0) * _RESIDUAL_SCALE)
        return torch.tanh(y)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Translate an image batch (B, 3, H, W) in [-1, 1]; `style` is an optional reference batch (1 or B)."""
        return self.forward_head(self.forward_features(x, style), x)


def _create_encoder(
    name: str, img_size: int, pretrained: bool, pretrained_path: str | None, kwargs: dict | None
) -> nn.Module:
    """timm's ViT `name` without a classifier; weights from `pretrained_path` (timm's local loader) or the hub."""
    if not timm.is_model(name):
        raise VitcycleError(f"unknown timm model {name!r} for encoder; see timm.list_models('vit_*')")
    args = dict(num_classes=0, img_size=img_size, dynamic_img_size=True, **(kwargs or {}))
    if pretrained_path:
        if not Path(pretrained_path).is_file():
            raise VitcycleError(f"pretrained_path {pretrained_path!r} does not exist; give a local .safetensors or .pth file")
        args["pretrained_cfg_overlay"] = dict(file=str(pretrained_path))
    try:
        model = timm.create_model(name, pretrained=pretrained or bool(pretrained_path), **args)
    except TypeError as e:
        raise VitcycleError(f"encoder {name!r} does not accept encoder_kwargs {kwargs}: {e}") from e
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
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "patch_embed"):
        raise VitcycleError(f"encoder {name!r} is not a timm ViT with forward_intermediates and patch_embed")
    return model


def _resolve_indices(indices: list[int] | None, depth: int) -> list[int]:
    if indices is None:
        n = min(4, depth)
        return sorted({round((i + 1) * depth / n) - 1 for i in range(n)})
    out = sorted({i % depth if -depth <= i < depth else i for i in indices})
    if not out or out[0] < 0 or out[-1] >= depth:
        raise VitcycleError(f"encoder_indices {indices} must be non-empty depths in [-{depth}, {depth - 1}]")
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
