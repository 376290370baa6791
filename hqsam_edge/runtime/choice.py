"""What to run, as a user names it: an artifact folder (with a backend and precision), or a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .predictor import Predictor


def model_from_options(backbone: str, variant: str, checkpoint: str | Path | None, random_weights: bool):
    """``build_model`` from CLI-style options; exactly one of a checkpoint or ``random_weights``."""
    from ..model import build_model
    from ..model.checkpoint import check_weights_choice

    check_weights_choice(checkpoint, random_weights)
    return build_model(backbone, variant, checkpoint)


@dataclass(frozen=True)
class ModelChoice:
    """An artifact folder (with ``backend`` / ``precision``), or a checkpoint / random weights of
    ``backbone`` / ``variant`` (torch backend); ``open()`` makes the ``Predictor``."""

    folder: str | Path | None = None
    backend: str = "auto"
    precision: str | None = None
    backbone: str = "vit_tiny"
    variant: str = "hq"
    checkpoint: str | Path | None = None
    random_weights: bool = False
    dla_core: int | None = None  # a folder's TensorRT engines built for this DLA core (None: the GPU's)

    def open(self) -> Predictor:
        """The predictor: the folder opened with ``backend``; otherwise the torch backend on a built model."""
        if self.folder is not None:
            if self.checkpoint is not None or self.random_weights:
                raise UsageError("an artifact folder carries its weights: drop --checkpoint / --random-weights")
            from ..export.manifest import read_manifest, remove_stale_temporaries

            read_manifest(self.folder)  # a folder of ours, before anything in it is removed
            remove_stale_temporaries(self.folder)  # what a killed command left
            return Predictor.from_artifacts(self.folder, backend=self.backend, precision=self.precision,
                                            dla_core=self.dla_core)
        if self.dla_core is not None:
            raise UsageError("--dla-core runs a folder's TensorRT engines: give the artifact folder")
        if self.backend not in ("auto", "torch"):
            raise UsageError(f"--backend {self.backend} needs an artifact folder (make one with `hqsam-edge export`)")
        model = model_from_options(self.backbone, self.variant, self.checkpoint, self.random_weights)
        return Predictor.from_model(model, precision=self.precision or "fp32", random_weights=self.random_weights)

    def describe(self) -> str:
        """One line naming the model (e.g. recorded with results, so a resume cannot mix two models)."""
        if self.folder is not None:
            dla = "" if self.dla_core is None else f" dla_core={self.dla_core}"
            return f"{Path(self.folder).resolve()} backend={self.backend} precision={self.precision or 'default'}{dla}"
        weights = Path(self.checkpoint).resolve() if self.checkpoint is not None else "random weights"
        return f"{self.backbone}/{self.variant} {weights} backend={self.backend} precision={self.precision or 'fp32'}"
