"""Modules that exist only for export: the two graphs as ``forward`` functions.

They never change ``hqsam_edge.model``; they call its ``encode`` /
``decode_tokens`` (which already avoid value-dependent indexing), and swap SAM's hand-written ``LayerNorm2d`` for a
channel-last ``F.layer_norm`` so that it exports as one ONNX ``LayerNormalization`` node
(which FP16 builds can keep in FP32).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a BCHW map, sharing ``LayerNorm2d``'s parameters."""

    def __init__(self, source: LayerNorm2d) -> None:
        super().__init__()
        self.weight = source.weight
        self.bias = source.bias
        self.eps = source.eps
        self.normalized_shape = (int(source.weight.shape[0]),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def export_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every ``LayerNorm2d`` replaced."""
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LayerNorm2d):
                setattr(parent, name, ChannelLayerNorm(child))
    return model


class EncoderGraph(nn.Module):
    """``image`` -> ``image_embeddings`` (+ ``hq_features`` for HQ-SAM)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: torch.Tensor):
        image_embeddings, hq_features = self.model.encode(image)
        if hq_features is None:
            return (image_embeddings,)
        return image_embeddings, hq_features


class DecoderGraph(nn.Module):
    """Encoder outputs + P prompts -> every mask token's ``low_res_masks`` and SAM's ``iou_predictions``
    (``Sam.decode_tokens``); ``multimask_output`` / ``hq_token_only`` are chosen per call by the runtime."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, *inputs: torch.Tensor):
        if self.model.is_hq:
            image_embeddings, hq_features, coords, labels, mask_input, has_mask = inputs
        else:
            (image_embeddings, coords, labels, mask_input, has_mask), hq_features = inputs, None
        return self.model.decode_tokens(image_embeddings, hq_features, coords, labels, mask_input, has_mask)
