"""Builders: every hyperparameter of every backbone lives here.

``build_model(backbone, variant="hq", checkpoint=None)`` is the entry point;
``MODEL_REGISTRY`` maps a backbone name to its ``BackboneSpec``. Reduced
configurations (fewer ViT blocks, for tests) come from ``BackboneSpec.reduced``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling.prompt_encoder import PromptEncoder
from segment_anything.modeling.transformer import TwoWayTransformer

from ..data.transforms import PIXEL_MEAN, PIXEL_STD
from ..inputs import BACKBONES, VARIANTS, VARIANTS_MEANING, require_choice
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .mask_decoder_hq import HQ_PARAMETER_PREFIXES, MaskDecoderHQ
from .sam import Sam
from .tiny_vit import TinyViT

IMAGE_SIZE = 1024
PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256


@dataclass(frozen=True)
class BackboneSpec:
    """Image-encoder hyperparameters of one backbone.

    ViT backbones use ``embed_dim``, ``depth``, ``num_heads`` and
    ``global_attn_indexes``; the HQ early feature is the output of the first
    global-attention block. ``vit_tiny`` (TinyViT) uses the ``tiny_*`` fields;
    its early feature is the output of stage ``tiny_early_stage``.
    """

    name: str
    kind: str  # "vit" or "tiny_vit"
    embed_dim: int = 0
    depth: int = 0
    num_heads: int = 0
    global_attn_indexes: tuple[int, ...] = ()
    tiny_embed_dims: tuple[int, ...] = ()
    tiny_depths: tuple[int, ...] = ()
    tiny_num_heads: tuple[int, ...] = ()
    tiny_window_sizes: tuple[int, ...] = ()
    tiny_early_stage: int = 1

    @property
    def early_dim(self) -> int:
        """Channels of the early feature fused by HQ-SAM (``vit_dim``)."""
        return self.embed_dim if self.kind == "vit" else self.tiny_embed_dims[self.tiny_early_stage + 1]

    def reduced(self, depth: int) -> BackboneSpec:
        """The same ViT with ``depth`` blocks and global attention every other block
        (first at index 1), for fast tests. TinyViT is small already: unchanged."""
        if self.kind != "vit":
            return self
        return dataclasses.replace(self, depth=depth, global_attn_indexes=tuple(range(1, depth, 2)))


MODEL_REGISTRY: dict[str, BackboneSpec] = {
    "vit_b": BackboneSpec("vit_b", "vit", embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": BackboneSpec(
        "vit_l", "vit", embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)
    ),
    "vit_h": BackboneSpec(
        "vit_h", "vit", embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ),
    "vit_tiny": BackboneSpec(
        "vit_tiny",
        "tiny_vit",
        tiny_embed_dims=(64, 128, 160, 320),
        tiny_depths=(2, 2, 6, 2),
        tiny_num_heads=(2, 4, 5, 10),
        tiny_window_sizes=(7, 7, 14, 7),
        tiny_early_stage=1,
    ),
}
assert set(MODEL_REGISTRY) == set(BACKBONES), "inputs.BACKBONES names every registered backbone"


def backbone_spec(backbone: str) -> BackboneSpec:
    return MODEL_REGISTRY[require_choice(backbone, BACKBONES, "backbone")]


def check_variant(variant: str) -> str:
    return require_choice(variant, VARIANTS, "variant", hint=VARIANTS_MEANING)


def _image_encoder(spec: BackboneSpec, hq: bool) -> torch.nn.Module:
    if spec.kind == "vit":
        return ImageEncoderViT(
            early_block=spec.global_attn_indexes[0] if hq else None,
            depth=spec.depth,
            embed_dim=spec.embed_dim,
            img_size=IMAGE_SIZE,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec.num_heads,
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=spec.global_attn_indexes,
            window_size=14,
            out_chans=PROMPT_EMBED_DIM,
        )
    return TinyViT(
        img_size=IMAGE_SIZE,
        in_chans=3,
        num_classes=1000,
        embed_dims=spec.tiny_embed_dims,
        depths=spec.tiny_depths,
        num_heads=spec.tiny_num_heads,
        window_sizes=spec.tiny_window_sizes,
        mlp_ratio=4.0,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        out_chans=PROMPT_EMBED_DIM,
        early_stage=spec.tiny_early_stage,
    )


def _mask_decoder(spec: BackboneSpec, hq: bool) -> MaskDecoder:
    kwargs = dict(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=PROMPT_EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    if hq:
        return MaskDecoderHQ(vit_dim=spec.early_dim, **kwargs)
    return MaskDecoder(**kwargs)


def build_from_spec(spec: BackboneSpec, variant: str = "hq") -> Sam:
    """An untrained model (random weights) for ``spec``; in eval mode."""
    hq = check_variant(variant) == "hq"
    side = IMAGE_SIZE // PATCH_SIZE
    model = Sam(
        image_encoder=_image_encoder(spec, hq),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(side, side),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=_mask_decoder(spec, hq),
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
        backbone=spec.name,
    )
    return model.eval()


def build_model(
    backbone: str,
    variant: str = "hq",
    checkpoint: str | Path | None = None,
    *,
    spec: BackboneSpec | None = None,
) -> Sam:
    """Build SAM / HQ-SAM for ``backbone`` and load ``checkpoint`` (official format) if given.

    ``variant="hq"`` is HQ-SAM (Light HQ-SAM for ``vit_tiny``); ``"sam"`` is
    plain SAM (MobileSAM for ``vit_tiny``). ``spec`` overrides the registry
    entry (reduced-depth test configurations). Loading is strict; see
    ``hqsam_edge.model.checkpoint.load_checkpoint``.
    """
    spec = spec or backbone_spec(backbone)
    model = build_from_spec(spec, variant)
    if checkpoint is not None:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint, backbone=spec.name, variant=variant)
    return model.eval()


def learnable_hq_parameters(model: Sam) -> list[torch.nn.Parameter]:
    """The HQ parts that HQ-SAM trains: HQ token, its MLP, and the three fusion convs."""
    return [p for name, p in model.named_parameters() if name.startswith(HQ_PARAMETER_PREFIXES)]

