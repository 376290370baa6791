"""Open the backend an artifact folder's manifest describes."""

from __future__ import annotations

from pathlib import Path

from ..errors import ArtifactError, UsageError
from ..inputs import BACKENDS, require_choice
from .base import Backend, ModelInfo


def _torch_from_manifest(manifest, precision: str | None) -> Backend:
    """Rebuild the exported model in PyTorch: from its checkpoint, or its random-weight seed."""
    from .torch_backend import TorchBackend

    return TorchBackend(manifest.build_model(), precision=precision or "fp32", info=ModelInfo.from_manifest(manifest))


def _onnxruntime(folder: Path, manifest, info: ModelInfo, precision: str | None,
                 providers: list[str] | None) -> Backend:
    """ONNX Runtime over the folder's graphs for ``providers``. INT8 under the TensorRT provider runs the Q/DQ encoder
    laid out for TensorRT (with the FP16 decoder when the folder has it), and only once a TensorRT session has started
    (the backend compares what runs with the request); without that graph an explicit TensorRT request is refused and
    an automatic choice leaves TensorRT out. The INT8 graph with activations ranged per call (ONNX Runtime's default
    INT8 recipe) is a CPU graph: an automatic choice runs it on the CPU, and a CUDA request is refused."""
    from .onnxruntime_backend import CUDA, PROVIDER_ALIASES, TENSORRT, OnnxRuntimeBackend, resolve_providers

    artifact = manifest.find("onnxruntime", precision)
    if _cpu_only(artifact):
        requested = [PROVIDER_ALIASES.get(p, p) for p in providers or ()]
        if CUDA in requested and TENSORRT not in requested:
            raise UsageError(f"{folder}'s int8 graph ranges its activations per call, a CPU recipe: ONNX Runtime's "
                             "CUDA kernels take no uint8 GEMMs and would hand them to the CPU. On a GPU use "
                             "--precision fp16, or TensorRT's INT8 (`hqsam-edge build DIR --backend tensorrt "
                             "--precision int8`)")
        if not providers:
            providers = ["cpu"]  # an automatic choice: where this graph runs as built
        _warn_if_saturating(folder, artifact)
    if providers:
        resolve_providers(providers, artifact.precision)  # a request that cannot run is refused before anything loads
    files = [folder / artifact.files["encoder"], folder / artifact.files["decoder"]]
    tensorrt_graphs = None
    may_use_tensorrt = providers is None or TENSORRT in [PROVIDER_ALIASES.get(p, p) for p in providers]
    if may_use_tensorrt and artifact.precision == "int8":
        try:
            laid_out = manifest.find("tensorrt", "int8", format="onnx")
        except ArtifactError:
            if providers:
                raise ArtifactError(
                    f"ONNX Runtime's TensorRT provider runs INT8 from the Q/DQ graph laid out for TensorRT, which "
                    f"{folder} lacks: make it with `hqsam-edge build {folder} --backend onnxruntime --precision int8 "
                    "--graphs-for tensorrt`") from None
        else:
            try:  # strongly typed, the fp32 decoder graph would run in FP32
                decoder = manifest.find("onnxruntime", "fp16").files["decoder"]
            except ArtifactError:
                decoder = laid_out.files["decoder"]
            tensorrt_graphs = (folder / laid_out.files["encoder"], folder / decoder)
            files += tensorrt_graphs
    manifest.check_files(folder, sorted({f.name for f in files}))  # the files the manifest describes, unchanged
    return OnnxRuntimeBackend(info, files[0], files[1], precision=artifact.precision, providers=providers,
                              tensorrt_graphs=tensorrt_graphs)


def _cpu_only(artifact) -> bool:
    """An INT8 graph with activations ranged per call (``calib.recipes.int8_dynamic_graph``): CPU kernels only."""
    return artifact.precision == "int8" and artifact.calibration is not None and artifact.calibration.ranged_per_call


def _warn_if_saturating(folder: Path, artifact) -> None:
    """An 8-bit-weight INT8 graph built on a CPU whose uint8 x int8 GEMMs accumulate in int32, opened on one whose
    GEMMs saturate (x86 without VNNI): its accuracy was checked elsewhere and does not hold here."""
    import warnings

    from ..hardware import u8s8_saturates

    if artifact.calibration.weight_bits == 8 and u8s8_saturates():
        warnings.warn(f"{folder}'s int8 graph has 8-bit weights, checked on a CPU with VNNI; this CPU has no AVX-512 "
                      "VNNI / AVX-VNNI, where ONNX Runtime's uint8 x int8 products saturate and masks degrade: build "
                      f"the int8 graph again here (`hqsam-edge build {folder} --precision int8`: 7-bit weights)",
                      stacklevel=3)


def open_backend(folder: str | Path, *, backend: str = "auto", precision: str | None = None,
                 providers: list[str] | None = None, dla_core: int | None = None) -> Backend:
    """The backend for an artifact folder, as its manifest describes it (``providers``: ONNX Runtime's execution
    providers, names or aliases cpu / cuda / tensorrt, in order of preference; None: the best available).
    ``dla_core``: the TensorRT engine pair built for that DLA core; None: the GPU pair (a DLA pair only where the
    folder has no GPU one)."""
    from ..export.manifest import read_manifest
    from .environment import require_tensorrt, tensorrt_status

    require_choice(backend, BACKENDS, "backend")
    folder = Path(folder)
    manifest = read_manifest(folder)
    info = ModelInfo.from_manifest(manifest)
    if backend == "auto":
        has_engine = any(a.key[::2] == ("tensorrt", "engine") and precision in (None, a.precision)
                         for a in manifest.artifacts)
        if dla_core is not None:
            backend = "tensorrt"  # only TensorRT runs on a DLA
        backend = "tensorrt" if has_engine and tensorrt_status().usable else "onnxruntime"
    if dla_core is not None and backend != "tensorrt":
        raise UsageError(f"--dla-core runs TensorRT engines: not with --backend {backend}")
    if backend == "torch":
        return _torch_from_manifest(manifest, precision)
    if backend == "tensorrt":
        try:
            artifact = manifest.find("tensorrt", precision, folder=folder, dla_core=dla_core)
        except ArtifactError:
            require_tensorrt()  # without TensorRT here, that is the first thing to fix
            raise
        manifest.check_files(folder, artifact.files.values())  # before TensorRT deserializes a plan
        require_tensorrt()
        from .tensorrt_backend import TensorRTBackend

        engine = artifact.engine  # None: an older manifest that recorded none of it
        return TensorRTBackend(info, folder / artifact.files["encoder"], folder / artifact.files["decoder"],
                               precision=artifact.precision,
                               expected_device={"gpu": artifact.device,
                                                "compute_capability": engine.compute_capability if engine else "",
                                                "tensorrt": artifact.tool_versions.get("tensorrt", "")},
                               version_compatible=engine is not None and engine.version_compatible,
                               dla_core=engine.dla_core if engine else None)
    return _onnxruntime(folder, manifest, info, precision, providers)
