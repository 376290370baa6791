"""hqsam-edge: HQ-SAM from PyTorch checkpoints to verified edge deployments.

Entry points: ``build_model(backbone, variant="hq", checkpoint=None)`` and
``Predictor`` (``Predictor.from_model`` / ``Predictor.from_artifacts``); for
code written against ``segment_anything_hq``, its names over the same
Predictor: ``sam_model_registry``, ``SamPredictor`` (also
``SamPredictor.from_artifacts``) and ``SamAutomaticMaskGenerator``.
Heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .apps.mask_generator import SamAutomaticMaskGenerator
    from .model import build_model
    from .model.official import sam_model_registry
    from .runtime.predictor import Predictor
    from .runtime.sam_predictor import SamPredictor

__all__ = ["Predictor", "SamAutomaticMaskGenerator", "SamPredictor", "__version__", "build_model",
           "sam_model_registry"]


def __getattr__(name: str):
    if name == "build_model":
        from .model import build_model

        return build_model
    if name == "Predictor":
        from .runtime.predictor import Predictor

        return Predictor
    if name == "SamPredictor":
        from .runtime.sam_predictor import SamPredictor

        return SamPredictor
    if name == "sam_model_registry":
        from .model.official import sam_model_registry

        return sam_model_registry
    if name == "SamAutomaticMaskGenerator":
        from .apps.mask_generator import SamAutomaticMaskGenerator

        return SamAutomaticMaskGenerator
    raise AttributeError(f"module 'hqsam_edge' has no attribute {name!r}")
