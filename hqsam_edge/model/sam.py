"""The whole model: image encoder, prompt encoder and (HQ) mask decoder.

Parameter names equal those of the official ``Sam`` modules, so the official
checkpoints load unchanged. The methods follow the deployment graph contract
(see ``hqsam_edge.export.contract``): ``encode`` is the encoder graph,
``decode`` the prompt decoder graph; every backend computes the same two
functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segment_anything.modeling.prompt_encoder import PromptEncoder
from torch import nn

from .mask_decoder import MaskDecoder


class Sam(nn.Module):
    """SAM or HQ-SAM (the decoder decides: ``mask_decoder.is_hq``).

    Arguments:
      image_encoder: returns ``(image_embeddings [B,256,64,64], early_feature)``.
      prompt_encoder: SAM's prompt encoder.
      mask_decoder: ``MaskDecoder`` (SAM) or ``MaskDecoderHQ`` (HQ-SAM).
      pixel_mean, pixel_std: RGB normalisation of the 0..255 input.
      backbone: the registry name of the image encoder (``vit_b`` ... ``vit_tiny``), for reports.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        backbone: str = "custom",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def is_hq(self) -> bool:
        return self.mask_decoder.is_hq

    @property
    def variant(self) -> str:
        """``"hq"`` (HQ-SAM) or ``"sam"`` (plain SAM / MobileSAM)."""
        return "hq" if self.is_hq else "sam"

    @property
    def image_size(self) -> int:
        return int(self.image_encoder.img_size)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``image`` ``[B,3,1024,1024]`` (normalised, zero-padded) ->
        ``image_embeddings [B,256,64,64]`` and ``hq_features [B,32,256,256]``
        (``None`` for plain SAM)."""
        image_embeddings, early = self.image_encoder(image)
        return image_embeddings, self.mask_decoder.fuse_features(image_embeddings, early)

    def embed_prompts(
        self,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse ``[P,N,256]`` and dense ``[P,256,64,64]`` prompt embeddings.

        ``point_coords`` ``[P,N,2]`` (x, y) in the 1024-resized frame;
        ``point_labels`` ``[P,N]``: 1 positive, 0 negative, 2/3 box corners,
        -1 padding; ``mask_input`` ``[P,1,256,256]`` logits used where
        ``has_mask_input`` ``[P]`` is 1. Arithmetic on the labels only (no
        boolean indexing), the same numbers as SAM's ``PromptEncoder.forward``.
        """
        pe = self.prompt_encoder
        coords = (point_coords + 0.5) / self.image_size
        emb = pe.pe_layer._pe_encoding(coords)
        labels = point_labels.unsqueeze(-1)
        emb = emb * (labels != -1).to(emb.dtype)
        emb = emb + pe.not_a_point_embed.weight * (labels == -1).to(emb.dtype)
        for i, point_embedding in enumerate(pe.point_embeddings):
            emb = emb + point_embedding.weight * (labels == i).to(emb.dtype)

        has_mask = has_mask_input.to(emb.dtype).reshape(-1, 1, 1, 1)
        dense = has_mask * pe.mask_downscaling(mask_input) + (1 - has_mask) * pe.no_mask_embed.weight.reshape(
            1, -1, 1, 1
        )
        return emb, dense

    def decode(
        self,
        image_embeddings: torch.Tensor,
        hq_features: torch.Tensor | None,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        *,
        multimask_output: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """P prompts against one image -> ``low_res_masks [P,M,256,256]`` (logits)
        and ``iou_predictions [P,M]``; M = 1, or 3 for plain SAM with
        ``multimask_output`` (``decode_tokens``, then the decoder's ``select_masks``)."""
        masks, iou = self.decode_tokens(image_embeddings, hq_features, point_coords, point_labels, mask_input,
                                        has_mask_input)
        return self.mask_decoder.select_masks(masks, iou, multimask_output, hq_token_only)

    def decode_tokens(
        self,
        image_embeddings: torch.Tensor,
        hq_features: torch.Tensor | None,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """P prompts against one image -> every mask token's logits ``[P,T,256,256]`` (SAM's 4 tokens, then
        HQ-SAM's HQ token: T = 4 or 5) and SAM's IoU predictions ``[P,4]``: the decoder graph. Which masks a
        caller gets (``multimask_output``, ``hq_token_only``) is chosen from these afterwards."""
        sparse, dense = self.embed_prompts(point_coords, point_labels, mask_input, has_mask_input)
        return self.mask_decoder.predict_masks(
            image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense, hq_features
        )
