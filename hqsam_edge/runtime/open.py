"""Open a predictor from what the user has: an artifact folder, a checkpoint, or nothing."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .predictor import Predictor


def model_from_options(backbone: str, variant: str, checkpoint: str | Path | None, random_weights: bool):
    """``build_model`` from CLI-style options; exactly one of a checkpoint or ``random_weights``."""
    from ..model import build_model

    if checkpoint is None and not random_weights:
        raise UsageError("give --checkpoint FILE (see `hqsam-edge download`) or --random-weights")
    if checkpoint is not None and random_weights:
        raise UsageError("--checkpoint and --random-weights exclude each other")
    return build_model(backbone, variant, checkpoint)


def open_predictor(
    folder: str | Path | None,
    *,
    backend: str = "auto",
    precision: str | None = None,
    backbone: str = "vit_tiny",
    variant: str = "hq",
    checkpoint: str | Path | None = None,
    random_weights: bool = False,
) -> Predictor:
    """An artifact folder opens with ``backend``; otherwise the torch backend on a built model."""
    if folder is not None:
        if checkpoint is not None or random_weights:
            raise UsageError("an artifact folder carries its weights: drop --checkpoint / --random-weights")
        return Predictor.from_artifacts(folder, backend=backend, precision=precision)
    if backend not in ("auto", "torch"):
        raise UsageError(f"--backend {backend} needs an artifact folder (make one with `hqsam-edge export`)")
    model = model_from_options(backbone, variant, checkpoint, random_weights)
    return Predictor.from_model(model, precision=precision or "fp32")
