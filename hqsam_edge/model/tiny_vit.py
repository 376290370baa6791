"""TinyViT image encoder of MobileSAM, as used by Light HQ-SAM (``vit_tiny``).

Parameter and buffer names equal those of MobileSAM's ``tiny_vit_sam.py`` (and
HQ-SAM's copy of it), so ``mobile_sam.pt`` and ``sam_hq_vit_tiny.pth`` load
unchanged. Differences from that file, none of which changes the numbers:

* no timm dependency and no training-only machinery (stochastic depth,
  gradient checkpointing, layer-wise learning-rate decay);
* attention biases are gathered from ``attention_biases`` on every call instead
  of being cached in ``train(False)``: the official builder calls ``.eval()``
  *before* loading weights, so its cache holds the initial zeros until the
  user calls ``.eval()`` again;
* the spatial size of the early feature is derived from the input instead of a
  hard-coded 64x64.

Layout: input ``[B, 3, H, W]`` (H = W = ``img_size``, normalised and padded);
``forward`` returns the neck output ``[B, 256, H/16, W/16]`` and the early
feature ``[B, embed_dims[2], H/16, W/16]`` (stage-1 output after its
downsample), both BCHW.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn


class Conv2d_BN(nn.Sequential):  # noqa: N801 - name fixed by the checkpoints
    """Convolution without bias followed by BatchNorm (keys ``c.*`` and ``bn.*``)."""

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(b)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: ``[B,3,H,W] -> [B,embed_dim,H/4,W/4]``."""

    def __init__(self, in_chans: int, embed_dim: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2d_BN(in_chans, embed_dim // 2, 3, 2, 1),
            activation(),
            Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project)."""

    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2d_BN(in_chans, hidden, ks=1)
        self.act1 = activation()
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = activation()
        self.conv3 = Conv2d_BN(hidden, out_chans, ks=1, bn_weight_init=0.0)
        self.act3 = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = self.conv3(x)
        return self.act3(x + shortcut)


class PatchMerging(nn.Module):
    """Downsample between stages; tokens ``[B, H*W, C]`` or BCHW in, tokens out.

    ``stride`` is 2 except before MobileSAM's last stage, which keeps 64x64
    (the official code decides this from ``out_dim`` in {320, 448, 576}).
    """

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int,
                 activation: type[nn.Module], stride: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = activation()
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on BCHW maps, then a PatchMerging to tokens."""

    def __init__(self, *, dim: int, depth: int, activation: type[nn.Module],
                 conv_expand_ratio: float, downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [MBConv(dim, dim, conv_expand_ratio, activation) for _ in range(depth)]
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class Mlp(nn.Module):
    """Pre-norm two-layer MLP on tokens."""

    def __init__(self, in_features: int, hidden_features: int,
                 act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Windowed multi-head attention with a learned bias per relative offset.

    Input and output tokens ``[B*windows, r*r, dim]`` for a window of ``r x r``.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + key_dim * num_heads * 2)
        self.proj = nn.Linear(self.dh, dim)

        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer(
            "attention_bias_idxs",
            torch.tensor(idxs, dtype=torch.long).view(len(points), len(points)),
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x))
        q, k, v = qkv.view(b, n, self.num_heads, -1).split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise ``local_conv``, then an MLP; tokens ``[B, H*W, C]``."""

    def __init__(self, *, dim: int, input_resolution: tuple[int, int], num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        if window_size <= 0 or dim % num_heads:
            raise ValueError(f"TinyViTBlock: bad window_size={window_size} or dim={dim}/heads={num_heads}")
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, attn_ratio=1,
                              resolution=(window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=activation)
        self.local_conv = Conv2d_BN(dim, dim, ks=local_conv_size, stride=1,
                                    pad=local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, n, c = x.shape
        ws = self.window_size
        res = x
        if h == ws and w == ws:
            x = self.attn(x)
        else:
            x = x.view(b, h, w, c)
            pad_b = (ws - h % ws) % ws
            pad_r = (ws - w % ws) % ws
            if pad_b or pad_r:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            nh, nw = ph // ws, pw // ws
            x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            x = self.attn(x)
            x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            if pad_b or pad_r:
                x = x[:, :h, :w].contiguous()
            x = x.view(b, n, c)
        x = res + x
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.local_conv(x)
        x = x.view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks, then an optional PatchMerging."""

    def __init__(self, *, dim: int, input_resolution: tuple[int, int], depth: int,
                 num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int,
                 activation: type[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim=dim, input_resolution=input_resolution, num_heads=num_heads,
                         window_size=window_size, mlp_ratio=mlp_ratio,
                         local_conv_size=local_conv_size, activation=activation)
            for _ in range(depth)
        ])
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class TinyViT(nn.Module):
    """MobileSAM's TinyViT-5M with SAM's 256-channel neck.

    ``norm_head`` and ``head`` are the unused ImageNet classifier of TinyViT;
    they are kept because the official checkpoints carry their weights.
    ``early_stage`` is the stage whose output is the HQ early feature
    (stage 1, 160 channels at 64x64 for MobileSAM).
    """

    def __init__(
        self,
        *,
        img_size: int,
        in_chans: int,
        num_classes: int,
        embed_dims: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_sizes: Sequence[int],
        mlp_ratio: float,
        mbconv_expand_ratio: float,
        local_conv_size: int,
        out_chans: int,
        early_stage: int,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.early_stage = early_stage
        activation = nn.GELU
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], activation)
        res = img_size // 4
        num_layers = len(depths)
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            # MobileSAM keeps the last stage at the resolution of the one before.
            r = res // (2 ** (i - 1 if i == num_layers - 1 else i))
            downsample = None
            if i < num_layers - 1:
                out_dim = embed_dims[i + 1]
                stride = 1 if i + 1 == num_layers - 1 else 2
                downsample = PatchMerging((r, r), embed_dims[i], out_dim, activation, stride)
            if i == 0:
                layer: nn.Module = ConvLayer(dim=embed_dims[0], depth=depths[0], activation=activation,
                                             conv_expand_ratio=mbconv_expand_ratio, downsample=downsample)
            else:
                layer = BasicLayer(dim=embed_dims[i], input_resolution=(r, r), depth=depths[i],
                                   num_heads=num_heads[i], window_size=window_sizes[i],
                                   mlp_ratio=mlp_ratio, local_conv_size=local_conv_size,
                                   activation=activation, downsample=downsample)
            self.layers.append(layer)
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,3,S,S]`` -> (embedding ``[B,256,S/16,S/16]``, early feature ``[B,C1,S/16,S/16]``)."""
        side = x.shape[-1] // 16
        x = self.patch_embed(x)
        early = x
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.early_stage:
                early = x
        b, _, c = x.shape
        x = x.view(b, side, side, c).permute(0, 3, 1, 2)
        early = early.view(b, side, side, -1).permute(0, 3, 1, 2)
        return self.neck(x), early
