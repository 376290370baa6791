"""hqsam-edge: HQ-SAM from PyTorch checkpoints to verified edge deployments.

Entry points: ``build_model(backbone, variant="hq", checkpoint=None)`` and
``Predictor`` (``Predictor.from_model`` / ``Predictor.from_artifacts``).
Heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .model import build_model
    from .runtime.predictor import Predictor

__all__ = ["Predictor", "__version__", "build_model"]


def __getattr__(name: str):
    if name == "build_model":
        from .model import build_model

        return build_model
    if name == "Predictor":
        from .runtime.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'hqsam_edge' has no attribute {name!r}")
