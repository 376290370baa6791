"""Open the backend an artifact folder's manifest describes."""

from __future__ import annotations

from pathlib import Path

from ..errors import ArtifactError, UsageError
from .base import Backend, ModelInfo

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def _torch_from_manifest(manifest, precision: str | None) -> Backend:
    """Rebuild the exported model in PyTorch: from its checkpoint, or its random-weight seed."""
    from .torch_backend import TorchBackend

    return TorchBackend(manifest.build_model(), precision=precision or "fp32", info=ModelInfo.from_manifest(manifest))


def open_backend(folder: str | Path, *, backend: str = "auto", precision: str | None = None) -> Backend:
    """The backend for an artifact folder, as its manifest describes it."""
    from ..export.manifest import read_manifest
    from .environment import require_tensorrt, tensorrt_status

    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    folder = Path(folder)
    manifest = read_manifest(folder)
    info = ModelInfo.from_manifest(manifest)
    if backend == "auto":
        has_engine = any(a.backend == "tensorrt" and precision in (None, a.precision) for a in manifest.artifacts)
        backend = "tensorrt" if has_engine and tensorrt_status().usable else "onnxruntime"
    if backend == "torch":
        return _torch_from_manifest(manifest, precision)
    if backend == "tensorrt":
        try:
            artifact = manifest.find("tensorrt", precision)
        except ArtifactError:
            require_tensorrt()  # without TensorRT here, that is the first thing to fix
            raise
        manifest.check_files(folder, artifact.files.values())  # before TensorRT deserializes a plan
        require_tensorrt()
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(info, folder / artifact.files["encoder"], folder / artifact.files["decoder"],
                               precision=artifact.precision,
                               expected_device={"gpu": artifact.device,
                                                "compute_capability": artifact.extra.get("compute_capability", ""),
                                                "tensorrt": "" if artifact.extra.get("version_compatible")
                                                else artifact.tool_versions.get("tensorrt", "")})
    artifact = manifest.find("onnxruntime", precision)
    manifest.check_files(folder, artifact.files.values())
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(info, folder / artifact.files["encoder"], folder / artifact.files["decoder"],
                              precision=artifact.precision)
