"""The PyTorch model: TinyViT and ViT encoders, the HQ mask decoder, builders, checkpoints."""

from .build import BACKBONES, MODEL_REGISTRY, VARIANTS, BackboneSpec, backbone_spec, build_model
from .sam import Sam

__all__ = ["BACKBONES", "MODEL_REGISTRY", "VARIANTS", "BackboneSpec", "Sam", "backbone_spec", "build_model"]
