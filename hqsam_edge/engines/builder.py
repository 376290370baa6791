"""Build TensorRT engines from an artifact folder's graphs.

One plan serves the real build and ``--print-trtexec``: which graph each
precision starts from on each TensorRT generation, the profiles, and the
engine names. The build itself is a short recipe over TensorRT's Python API
(builder, ONNX parser, profiles, timing cache in the folder, DLA with GPU
fallback); ``tensorrt`` is imported inside the functions that need them.
The precision graphs a plan reads (``source_graphs``) are made and checked
on the CPU first (``hqsam_edge.pipeline.build``).

| precision | TensorRT 8.5 / 8.6 / 10.x (weakly typed)  | TensorRT 11.x (strongly typed) |
|-----------|-------------------------------------------|--------------------------------|
| fp32      | ``encoder.onnx``                          | ``encoder.onnx``               |
| fp16      | ``encoder.onnx`` + FP16 flag              | ``encoder.fp16.onnx``          |
| int8      | Q/DQ graph + INT8 and FP16 flags          | Q/DQ graph                     |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_bytes
from ..errors import BackendUnavailableError, UsageError
from ..export.manifest import Artifact, Manifest, engine_file, graph_file, provenance, read_manifest
from ..export.profiles import Profile, profile_for
from .trtexec import trtexec_command

TIMING_CACHE = "timing.cache"
GRAPHS = ("encoder", "decoder")


@dataclass(frozen=True)
class EngineSpec:
    """The TensorRT side of ``hqsam-edge build``; the defaults are the real ones."""

    folder: str
    precision: str = "fp16"
    max_prompts: int = 64  # decoder profile: prompts per call
    max_points: int = 16  # decoder profile: points per prompt
    workspace_gb: float = 4.0
    dla_core: int | None = None
    version_compatible: bool = False


def generation_of(version: str) -> str:
    """"8" for 8.5/8.6, "10" for 10.x, "11" for 11.x and later."""
    major = int(version.split(".")[0])
    if major < 8:
        raise BackendUnavailableError(f"TensorRT {version} is too old: hqsam-edge needs 8.5 or newer")
    return "8" if major < 10 else ("10" if major == 10 else "11")


@dataclass(frozen=True)
class EngineJob:
    graph: str  # "encoder" or "decoder"
    onnx: Path
    engine: Path
    profile: Profile
    precision: str


def source_graphs(precision: str, generation: str) -> list[tuple[str, str]]:
    """The precision graphs (precision, backend they are laid out for) a plan reads besides the fp32 ones."""
    needed = [("int8", "tensorrt")] if precision == "int8" else []
    if generation == "11" and precision in ("fp16", "int8"):
        needed.append(("fp16", "onnxruntime"))
    return needed


def _source(graph: str, precision: str, generation: str) -> str:
    """The graph file an engine is built from (see the module table); the decoder is never int8."""
    if precision == "int8" and graph == "encoder":
        return graph_file("encoder", "int8", "tensorrt")
    if generation == "11" and precision in ("fp16", "int8"):
        return graph_file(graph, "fp16")
    return graph_file(graph)


def plan(folder: Path, spec: EngineSpec, generation: str) -> list[EngineJob]:
    """Which graph to build for each of encoder and decoder, and into which engine file."""
    return [EngineJob(graph, folder / _source(graph, spec.precision, generation),
                      folder / engine_file(graph, spec.precision),
                      profile_for(graph, spec.max_prompts, spec.max_points), spec.precision)
            for graph in GRAPHS]


def trtexec_lines(spec: EngineSpec, generation: str) -> list[str]:
    """The trtexec command lines equivalent to ``build``, for each graph (files named as the plan names them)."""
    folder = Path(spec.folder)
    read_manifest(folder)  # a folder of ours
    return [
        " ".join(trtexec_command(job.onnx, job.engine, job.profile, precision=job.precision, generation=generation,
                                 workspace_gb=spec.workspace_gb, timing_cache=folder / TIMING_CACHE,
                                 dla_core=spec.dla_core, version_compatible=spec.version_compatible))
        for job in plan(folder, spec, generation)
    ]


def _build_one(job: EngineJob, spec: EngineSpec, generation: str, cache_path: Path) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if generation == "8":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    elif generation == "11":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(job.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT cannot parse {job.onnx.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gb * 2**30))
    if generation in ("8", "10"):
        if job.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if job.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the Q/DQ graph carries the scales
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in job.profile.shapes.items():
        profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, False)
    if spec.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise BackendUnavailableError("--dla-core needs a device with DLA (Jetson AGX Orin / Orin NX)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if spec.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UsageError(f"TensorRT failed to build {job.onnx.name} (see the TensorRT log above)")
    write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def device_description() -> dict[str, str]:
    """GPU name and compute capability (through pycuda), recorded with every engine."""
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return {"gpu": dev.name(), "compute_capability": f"{major}.{minor}"}


def check_engines(manifest: Manifest, folder: Path, files: dict[str, str], spec: EngineSpec,
                  images: list[np.ndarray], bounds) -> dict:
    """The new engines against the fp32 PyTorch model on held-out images (as the CPU graphs are checked)."""
    from ..runtime.base import ModelInfo
    from ..runtime.compare import check, compare
    from ..runtime.tensorrt_backend import TensorRTBackend
    from ..runtime.torch_backend import TorchBackend

    info = ModelInfo.from_manifest(manifest)
    candidate = TensorRTBackend(info, folder / files["encoder"], folder / files["decoder"], precision=spec.precision)
    reference = TorchBackend(manifest.build_model(), device="cpu", info=info)
    return check(compare(reference, candidate, images), bounds, f"the {spec.precision} TensorRT engines")


def build_engines(spec: EngineSpec, generation: str, images: list[np.ndarray], bounds) -> Artifact:
    """One engine per graph (its precision graphs already made and checked), checked on ``images`` against
    ``bounds`` and recorded in the manifest."""
    import tensorrt as trt

    folder = Path(spec.folder)
    manifest = read_manifest(folder)
    files = {}
    for job in plan(folder, spec, generation):
        write_bytes(job.engine, _build_one(job, spec, generation, folder / TIMING_CACHE))
        files[job.graph] = job.engine.name
    device = device_description()
    parity = check_engines(manifest, folder, files, spec, images, bounds)
    artifact = Artifact(
        "tensorrt", spec.precision, files, format="engine",
        tool_versions={"tensorrt": trt.__version__, "generation": generation},
        device=device["gpu"], parity=parity,
        extra={"compute_capability": device["compute_capability"], "max_prompts": spec.max_prompts,
               "max_points": spec.max_points, "dla_core": spec.dla_core, "version_compatible": spec.version_compatible,
               **provenance()},
    )
    manifest.add(artifact)
    manifest.record_files(folder, files.values())
    manifest.write(folder)
    return artifact
