"""Open a predictor from what the user has: an artifact folder, a checkpoint, or nothing."""

from __future__ import annotations

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
