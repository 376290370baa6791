"""Open a predictor from what the user has: an artifact folder, a checkpoint, or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .base import Backend, ModelInfo
from .predictor import Predictor

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def model_from_options(backbone: str, variant: str, checkpoint: str | Path | None, random_weights: bool):
    """``build_model`` from CLI-style options; exactly one of a checkpoint or ``random_weights``."""
    from ..model import build_model
    from ..model.checkpoint import check_weights_choice

    check_weights_choice(checkpoint, random_weights)
    return build_model(backbone, variant, checkpoint)


def _torch_from_manifest(manifest, precision: str | None) -> Backend:
    """Rebuild the exported model in PyTorch: from its checkpoint, or its random-weight seed."""
    from .torch_backend import TorchBackend

    info = ModelInfo(manifest.backbone, manifest.variant, manifest.image_size, manifest.multimask_output,
                     manifest.hq_token_only)
    return TorchBackend(manifest.build_model(), precision=precision or "fp32", info=info)


def open_backend(folder: str | Path, *, backend: str = "auto", precision: str | None = None) -> Backend:
    """The backend for an artifact folder, as its manifest describes it."""
    from ..export.manifest import read_manifest

    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    folder = Path(folder)
    manifest = read_manifest(folder)
    info = ModelInfo(manifest.backbone, manifest.variant, manifest.image_size, manifest.multimask_output,
                     manifest.hq_token_only)
    if backend == "auto":
        from .environment import tensorrt_status

        has_engine = any(a.backend == "tensorrt" and precision in (None, a.precision) for a in manifest.artifacts)
        backend = "tensorrt" if has_engine and tensorrt_status().usable else "onnxruntime"
    if backend == "torch":
        return _torch_from_manifest(manifest, precision)
    if backend == "tensorrt":
        from .environment import tensorrt_status

        status = tensorrt_status()
        if not status.usable:
            from ..errors import BackendUnavailableError

            raise BackendUnavailableError(f"--backend tensorrt is not usable here: {status.detail}")
        artifact = manifest.find("tensorrt", precision)
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(info, folder / artifact.files["encoder"], folder / artifact.files["decoder"],
                               precision=artifact.precision,
                               expected_device={"gpu": artifact.device,
                                                "compute_capability": artifact.extra.get("compute_capability", ""),
                                                "tensorrt": "" if artifact.extra.get("version_compatible")
                                                else artifact.tool_versions.get("tensorrt", "")})
    artifact = manifest.find("onnxruntime", precision)
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(info, folder / artifact.files["encoder"], folder / artifact.files["decoder"],
                              precision=artifact.precision)


@dataclass(frozen=True)
class ModelChoice:
    """What to run, as the CLI's options say it: an artifact folder (with ``backend`` / ``precision``), or a
    checkpoint / random weights of ``backbone`` / ``variant`` (torch backend)."""

    folder: str | Path | None = None
    backend: str = "auto"
    precision: str | None = None
    backbone: str = "vit_tiny"
    variant: str = "hq"
    checkpoint: str | Path | None = None
    random_weights: bool = False

    def open(self) -> Predictor:
        """The predictor: the folder opened with ``backend``; otherwise the torch backend on a built model."""
        if self.folder is not None:
            if self.checkpoint is not None or self.random_weights:
                raise UsageError("an artifact folder carries its weights: drop --checkpoint / --random-weights")
            return Predictor.from_artifacts(self.folder, backend=self.backend, precision=self.precision)
        if self.backend not in ("auto", "torch"):
            raise UsageError(f"--backend {self.backend} needs an artifact folder (make one with `hqsam-edge export`)")
        model = model_from_options(self.backbone, self.variant, self.checkpoint, self.random_weights)
        return Predictor.from_model(model, precision=self.precision or "fp32")

    def describe(self) -> str:
        """One line naming the model (e.g. recorded with results, so a resume cannot mix two models)."""
        if self.folder is not None:
            return f"{Path(self.folder).resolve()} backend={self.backend} precision={self.precision or 'default'}"
        weights = Path(self.checkpoint).resolve() if self.checkpoint is not None else "random weights"
        return f"{self.backbone}/{self.variant} {weights} backend={self.backend} precision={self.precision or 'fp32'}"
