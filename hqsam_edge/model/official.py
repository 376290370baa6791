"""The official packages' model entry points over our builders: ``sam_model_registry`` and official models.

``sam_model_registry["vit_b"](checkpoint=...)`` builds our model as
``segment_anything_hq.sam_model_registry`` builds its own: HQ-SAM by default
(``"default"`` and ``"vit_h"`` ViT-H, ``"vit_tiny"`` Light HQ-SAM), from an
official checkpoint file; ``variant="sam"`` builds plain SAM / MobileSAM.
Loading is strict (``checkpoint.load_checkpoint``), where the official
builders load with ``strict=False`` and print what did not match.

``model_from_official(model)`` takes a model object of ``segment_anything_hq``
(or Meta's ``segment_anything``) and returns ours with the same weights: its
``state_dict()`` tells the backbone and variant (``checkpoint.identify``) and,
for ViTs, the depth, heads and global-attention blocks (so reduced test
configurations convert too). The official packages are never imported here:
the object is read only through ``state_dict()`` and its parameters' device.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from .build import BackboneSpec, backbone_spec, build_model
from .sam import Sam

GLOBAL_REL_POS = 2 * 64 - 1  # relative positions of a global-attention block over the 64x64 embedding


def _builder(backbone: str) -> Callable[..., Sam]:
    def build(checkpoint: str | Path | None = None, variant: str = "hq") -> Sam:
        return build_model(backbone, variant, checkpoint)

    build.__name__ = build.__qualname__ = f"build_sam_{backbone}"
    build.__doc__ = (f"``build_model({backbone!r}, variant, checkpoint)``: HQ-SAM ({backbone}) by default, "
                     "loading an official checkpoint strictly.")
    return build


sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": _builder("vit_h"),
    "vit_h": _builder("vit_h"),
    "vit_l": _builder("vit_l"),
    "vit_b": _builder("vit_b"),
    "vit_tiny": _builder("vit_tiny"),
}


def spec_from_state_dict(state_dict: dict[str, torch.Tensor], backbone: str) -> BackboneSpec:
    """The encoder configuration a ViT state dict was made with (blocks, heads, global-attention blocks);
    the registry's spec when it is the registry's (always for TinyViT)."""
    spec = backbone_spec(backbone)
    if spec.kind != "vit":
        return spec
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    rel_pos = {i: state_dict[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in blocks
               if f"image_encoder.blocks.{i}.attn.rel_pos_h" in state_dict}
    if not blocks or len(rel_pos) != len(blocks):
        return spec
    head_dim = int(next(iter(rel_pos.values())).shape[1])
    found = dataclasses.replace(
        spec, depth=len(blocks), num_heads=spec.embed_dim // head_dim,
        global_attn_indexes=tuple(sorted(i for i, t in rel_pos.items() if t.shape[0] == GLOBAL_REL_POS)))
    return found


def model_from_official(model: Any) -> Sam:
    """Our ``Sam`` for ``model``: itself if it is one; else an official ``Sam`` object's weights loaded strictly
    into ours, on its device, in eval mode."""
    if isinstance(model, Sam):
        return model
    if not (callable(getattr(model, "state_dict", None)) and hasattr(model, "image_encoder")
            and hasattr(model, "mask_decoder")):
        raise UsageError(f"expected a SAM / HQ-SAM model (hqsam_edge.sam_model_registry, build_model, or a "
                         f"segment_anything(_hq) Sam), got {type(model).__name__}")
    from .checkpoint import identify, load_state_dict

    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    info = identify(state_dict)
    if info.backbone is None:
        raise UsageError(f"the {type(model).__name__} model's image encoder is not one of SAM's "
                         "(vit_b / vit_l / vit_h) or MobileSAM's TinyViT")
    ours = build_model(info.backbone, info.variant, spec=spec_from_state_dict(state_dict, info.backbone))
    load_state_dict(ours, state_dict, source=f"the {type(model).__name__} model", backbone=info.backbone,
                    variant=info.variant)
    device = next((p.device for p in model.parameters()), torch.device("cpu")) if hasattr(model, "parameters") \
        else torch.device("cpu")
    return ours.to(device).eval()
