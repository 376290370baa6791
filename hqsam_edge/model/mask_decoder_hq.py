"""HQ-SAM's mask decoder: SAM's decoder plus the HQ output token and feature fusion.

Parameter names equal the official ``MaskDecoderHQ`` (``hf_token``,
``hf_mlp``, ``compress_vit_feat``, ``embedding_encoder``,
``embedding_maskfeature``), so ``sam_hq_vit_*.pth`` load unchanged.

Unlike the official module, the global-local fusion that only depends on the
image (``fuse_features``) is split from the per-prompt part, so deployments
compute it once per image in the encoder graph.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from .mask_decoder import MaskDecoder

HQ_PARTS = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
# The parameters HQ-SAM adds to SAM (and trains), as state-dict prefixes of a whole ``Sam`` model.
HQ_PARAMETER_PREFIXES = tuple(f"mask_decoder.{name}" for name in HQ_PARTS)


class MaskDecoderHQ(MaskDecoder):
    """SAM decoder + HQ output token.

    Arguments (keyword-only) are SAM's ``MaskDecoder`` ones plus ``vit_dim``,
    the channel count of the early encoder feature (768/1024/1280 for
    ViT-B/L/H, 160 for TinyViT).
    """

    is_hq = True

    def __init__(self, *, vit_dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        dim = self.transformer_dim
        self.hf_token = nn.Embedding(1, dim)
        self.hf_mlp = MLP(dim, dim, dim // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, dim, kernel_size=2, stride=2),
            LayerNorm2d(dim),
            nn.GELU(),
            nn.ConvTranspose2d(dim, dim // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
        )
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(dim // 8, dim // 4, 3, 1, 1),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.Conv2d(dim // 4, dim // 8, 3, 1, 1),
        )

    def fuse_features(self, image_embeddings: torch.Tensor, early_feature: torch.Tensor | None) -> torch.Tensor:
        """Global-local fusion, once per image.

        ``image_embeddings`` ``[B,256,64,64]`` and the early ViT feature
        ``[B,vit_dim,64,64]`` -> HQ features ``[B,32,256,256]``.
        """
        if early_feature is None:
            raise ValueError("HQ-SAM needs the early encoder feature; build the encoder with early_block set")
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(early_feature)

    def predict_masks(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        hq_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[P, 5, 256, 256]`` (4 SAM tokens, then the HQ token) and IoU ``[P, 4]``."""
        if hq_features is None:
            raise ValueError("MaskDecoderHQ.predict_masks needs hq_features (see fuse_features)")
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hf_token.weight], dim=0)
        iou_token_out, mask_tokens_out, upscaled_sam = self.run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, output_tokens
        )
        n_sam = self.num_mask_tokens
        hyper_sam = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        hyper_hq = self.hf_mlp(mask_tokens_out[:, n_sam, :])  # [P, 32]
        b, c, h, w = upscaled_sam.shape
        masks_sam = (hyper_sam @ upscaled_sam.reshape(b, c, h * w)).reshape(b, -1, h, w)
        masks_hq = self.hq_mask(upscaled_sam, hq_features, hyper_hq)
        return torch.cat([masks_sam, masks_hq], dim=1), self.iou_prediction_head(iou_token_out)

    def hq_mask(self, upscaled_sam: torch.Tensor, hq_features: torch.Tensor, hyper_hq: torch.Tensor) -> torch.Tensor:
        """HQ logits ``[P,1,H,W]`` = ``hyper_hq . (embedding_maskfeature(upscaled_sam) + hq_features)``.

        The last 3x3 convolution (64 -> 32 channels) is only ever read through
        the dot product with the 32-vector ``hyper_hq``, so the two are
        contracted first: per prompt, 9 maps ``z_k = (sum_o h_o W[o,:,k]) . x``
        (one batched MatMul) summed at their kernel offsets. The same numbers
        (up to float rounding) as the official convolution, for 1/32 of its cost.
        The 64-channel map between the two convolutions stays channel-last
        after its LayerNorm (GELU does not care, the contraction reads it as
        ``[P,HW,64]``): only the 9 small maps are turned back, not the 64
        (ONNX Runtime: one 16 MB transpose a prompt fewer, the decoder 1.02-1.13x faster).
        """
        conv1, norm, act, conv2 = self.embedding_maskfeature
        c = int(norm.weight.shape[0])  # static: the graph keeps no shape-dependent reshape
        x = conv1(upscaled_sam).permute(0, 2, 3, 1)  # [P, H, W, 64]
        x = act(torch.nn.functional.layer_norm(x, (c,), norm.weight, norm.bias, norm.eps))
        p, h, w, _ = x.shape
        kh, kw = conv2.kernel_size
        weight = (hyper_hq @ conv2.weight.reshape(conv2.out_channels, -1)).reshape(p, c, kh * kw)
        z = (x.reshape(p, h * w, c) @ weight).transpose(1, 2).reshape(p, kh * kw, h, w)
        z = torch.nn.functional.pad(z, (kw // 2, kw // 2, kh // 2, kh // 2))
        bias = (hyper_hq @ conv2.bias).reshape(p, 1, 1)
        out = bias + (hyper_hq @ hq_features.reshape(hq_features.shape[1], h * w)).reshape(p, h, w)  # one image
        for i in range(kh):
            for j in range(kw):
                out = out + z[:, i * kw + j, i : i + h, j : j + w]
        return out.unsqueeze(1)

    def select_masks(
        self, masks: torch.Tensor, iou_pred: torch.Tensor, multimask_output: bool, hq_token_only: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt, as the official HQ-SAM returns.

        SAM's token 0 (or, with ``multimask_output``, the best of tokens 1..3
        by predicted IoU) plus the HQ logits (error correction); with
        ``hq_token_only`` the HQ logits alone. The IoU is SAM's.
        """
        n_sam = self.num_mask_tokens
        if multimask_output:
            iou_pred, best = torch.max(iou_pred[:, 1:n_sam], dim=1, keepdim=True)
            index = (best + 1)[:, :, None, None].expand(-1, -1, masks.shape[2], masks.shape[3])
            masks_sam = torch.gather(masks, 1, index)
        else:
            iou_pred = iou_pred[:, 0:1]
            masks_sam = masks[:, 0:1]
        masks_hq = masks[:, n_sam : n_sam + 1]
        if hq_token_only:
            return masks_hq, iou_pred
        return masks_sam + masks_hq, iou_pred
