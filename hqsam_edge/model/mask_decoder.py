"""SAM's mask decoder, for P prompts against one image in one call.

``segment_anything``'s ``MaskDecoder`` supplies the parameters (names equal
to the official checkpoints). ``predict_masks`` is rewritten to broadcast the
single image embedding over the P prompts instead of ``repeat_interleave``,
which keeps P a plain dynamic dimension when the decoder is exported.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.mask_decoder import MaskDecoder as _SamMaskDecoder


class MaskDecoder(_SamMaskDecoder):
    """Plain SAM decoder.

    ``predict_masks`` returns all mask-token logits ``[P, T, 256, 256]``
    (T = ``num_mask_tokens``) and IoU predictions ``[P, 4]``;
    ``select_masks`` applies ``multimask_output`` as SAM does: token 0 alone,
    or tokens 1..3.
    """

    is_hq = False

    def run_transformer(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        output_tokens: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two-way transformer over ``[P, T+1+N, C]`` tokens.

        Returns the IoU token ``[P, C]``, the mask tokens ``[P, T, C]`` and the
        upscaled SAM mask features ``[P, C/8, 4h, 4w]``.
        """
        p = sparse_prompt_embeddings.shape[0]
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(p, -1, -1), sparse_prompt_embeddings), dim=1)
        src = image_embeddings + dense_prompt_embeddings  # [1,C,h,w] + [P,C,h,w]
        b, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        n = output_tokens.shape[0] - 1
        return hs[:, 0, :], hs[:, 1 : 1 + n, :], self.output_upscaling(src)

    def predict_masks(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        hq_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        iou_token_out, mask_tokens_out, upscaled = self.run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, output_tokens
        )
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)

    def select_masks(
        self, masks: torch.Tensor, iou_pred: torch.Tensor, multimask_output: bool, hq_token_only: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep token 0 ([P,1,...]) or, with ``multimask_output``, tokens 1..3 ([P,3,...])."""
        if multimask_output:
            return masks[:, 1:4], iou_pred[:, 1:4]
        return masks[:, 0:1], iou_pred[:, 0:1]

    def fuse_features(self, image_embeddings: torch.Tensor, early_feature: torch.Tensor | None) -> None:
        """Plain SAM has no HQ features."""
        return None
