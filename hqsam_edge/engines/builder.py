"""Build TensorRT engines from an artifact folder's graphs.

One plan serves the real build and ``--print-trtexec``: which graph each
precision starts from on each TensorRT generation, the profiles, and the
engine names. The build itself is a short recipe over TensorRT's Python API
(builder, ONNX parser, profiles, timing cache in the folder, DLA with GPU
fallback); ``tensorrt`` is imported inside the functions that need it.

| precision | TensorRT 8.5 / 8.6 / 10.x (weakly typed)  | TensorRT 11.x (strongly typed) |
|-----------|-------------------------------------------|--------------------------------|
| fp32      | ``encoder.onnx``                          | ``encoder.onnx``               |
| fp16      | ``encoder.onnx`` + FP16 flag              | ``encoder.fp16.onnx``          |
| int8      | Q/DQ graph + INT8 and FP16 flags          | Q/DQ graph                     |
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_bytes
from ..calib.variants import BuildSpec, graph_file
from ..errors import BackendUnavailableError, UsageError
from ..export.manifest import Artifact, Manifest, read_manifest
from ..hardware import this_platform
from .profiles import Profile, profile_for
from .trtexec import trtexec_command

TIMING_CACHE = "timing.cache"


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


def plan(manifest: Manifest, folder: Path, spec: BuildSpec, generation: str) -> list[EngineJob]:
    """Which graph to build for each of encoder and decoder (see the module table).

    Needs the precision graphs the generation wants (``make_precision_graphs``
    makes them first); the decoder stays fp32/fp16 unless ``quantize_decoder``.
    """
    jobs = []
    for graph in ("encoder", "decoder"):
        source = manifest.find("onnxruntime", "fp32")
        if spec.precision == "fp16" and generation == "11":
            source = manifest.find("onnxruntime", "fp16")
        elif spec.precision == "int8" and graph == "encoder":
            source = manifest.find("onnxruntime", "int8", flavour="tensorrt")
        elif spec.precision == "int8" and generation == "11":
            source = manifest.find("onnxruntime", "fp16")  # the decoder in fp16
        engine = folder / f"{graph}.{spec.precision}.engine"
        jobs.append(EngineJob(graph, folder / source.files[graph], engine,
                              profile_for(graph, spec.max_prompts, spec.max_points), spec.precision))
    return jobs


def trtexec_lines(folder: str | Path, spec: BuildSpec, generation: str) -> list[str]:
    """The trtexec command lines equivalent to ``build``, for each graph (files named as the plan names them)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    jobs = plan_for_print(manifest, folder, spec, generation)
    return [
        " ".join(trtexec_command(job.onnx, job.engine, job.profile, precision=job.precision, generation=generation,
                                 workspace_gb=spec.workspace_gb, timing_cache=folder / TIMING_CACHE,
                                 dla_core=spec.dla_core, version_compatible=spec.version_compatible))
        for job in jobs
    ]


def plan_for_print(manifest: Manifest, folder: Path, spec: BuildSpec, generation: str) -> list[EngineJob]:
    """Like ``plan``, naming the precision graphs ``build`` would make when they do not exist yet."""
    jobs = []
    for graph in ("encoder", "decoder"):
        name = manifest.graphs[graph]["file"]
        if spec.precision == "int8" and graph == "encoder":
            name = graph_file(graph, "int8", "tensorrt")
        elif generation == "11" and spec.precision in ("fp16", "int8"):
            name = graph_file(graph, "fp16")
        jobs.append(EngineJob(graph, folder / name, folder / f"{graph}.{spec.precision}.engine",
                              profile_for(graph, spec.max_prompts, spec.max_points), spec.precision))
    return jobs


def _build_one(job: EngineJob, spec: BuildSpec, generation: str, cache_path: Path) -> bytes:
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


def check_engines(manifest: Manifest, folder: Path, files: dict[str, str], spec: BuildSpec) -> dict:
    """Run the new engines against the fp32 PyTorch model on held-out images (as the CPU graphs are checked)."""
    from ..calib.check import check_runners
    from ..calib.variants import heldout_images
    from ..runtime.base import ModelInfo
    from ..runtime.tensorrt_backend import TensorRTBackend

    info = ModelInfo(manifest.backbone, manifest.variant, manifest.image_size, manifest.multimask_output,
                     manifest.hq_token_only)
    backend = TensorRTBackend(info, folder / files["encoder"], folder / files["decoder"], precision=spec.precision)
    with backend:
        def encode(tensor):
            generation = backend.encode(tensor)
            return {"generation": generation, **backend.features_to_numpy(generation)}

        def decode(features, feeds):
            return backend.decode(features["generation"], feeds, multimask_output=info.multimask_output,
                                  hq_token_only=info.hq_token_only)

        return check_runners(manifest.build_model(), encode, decode, heldout_images(spec),
                             precision=spec.precision, multimask_output=info.multimask_output,
                             hq_token_only=info.hq_token_only, bounds=spec.bounds())


def build_engines(spec: BuildSpec) -> Artifact:
    """Precision graphs (made and checked on the CPU first), then one engine per graph, recorded in the manifest."""
    from ..calib.variants import ensure_precision_graphs
    from ..runtime.environment import tensorrt_status

    status = tensorrt_status()
    if not status.usable:
        raise BackendUnavailableError(f"--backend tensorrt is not usable here: {status.detail}")
    import tensorrt as trt

    folder = Path(spec.folder)
    generation = generation_of(trt.__version__)
    if spec.precision == "int8":
        ensure_precision_graphs(spec, flavour="tensorrt")
    if generation == "11" and spec.precision in ("fp16", "int8"):
        from dataclasses import replace

        ensure_precision_graphs(replace(spec, precision="fp16"), flavour="onnxruntime")
    manifest = read_manifest(folder)
    files = {}
    for job in plan(manifest, folder, spec, generation):
        write_bytes(job.engine, _build_one(job, spec, generation, folder / TIMING_CACHE))
        files[job.graph] = job.engine.name
    device = device_description()
    parity = check_engines(manifest, folder, files, spec)
    artifact = Artifact(
        "tensorrt", spec.precision, files,
        tool_versions={"tensorrt": trt.__version__, "generation": generation},
        device=device["gpu"], parity=parity,
        extra={"compute_capability": device["compute_capability"], "max_prompts": spec.max_prompts,
               "max_points": spec.max_points, "dla_core": spec.dla_core, "version_compatible": spec.version_compatible,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "platform": this_platform().to_dict()},
    )
    manifest.add(artifact)
    manifest.write(folder)
    return artifact
