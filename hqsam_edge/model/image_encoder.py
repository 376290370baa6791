"""SAM's ViT image encoder, returning the early feature HQ-SAM fuses.

The blocks, attention and neck are ``segment_anything``'s; only ``forward``
changes, so parameter names stay those of the official checkpoints.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT as _SamImageEncoderViT


class ImageEncoderViT(_SamImageEncoderViT):
    """ViT-B/L/H encoder that also returns the output of block ``early_block``.

    HQ-SAM's early feature is the output of the first global-attention block
    (index 2 for ViT-B, 5 for ViT-L, 7 for ViT-H). With ``early_block=None``
    (plain SAM) the second output is ``None``.

    Input ``[B, 3, 1024, 1024]`` normalised and padded; outputs
    ``[B, 256, 64, 64]`` and ``[B, embed_dim, 64, 64]`` (BCHW).
    """

    def __init__(self, *, early_block: int | None, **kwargs) -> None:
        super().__init__(**kwargs)
        if early_block is not None and not 0 <= early_block < len(self.blocks):
            raise ValueError(f"early_block={early_block} is outside the {len(self.blocks)} blocks")
        self.early_block = early_block

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:  # type: ignore[override]
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        early = None
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i == self.early_block:
                early = x.permute(0, 3, 1, 2)
        return self.neck(x.permute(0, 3, 1, 2)), early
