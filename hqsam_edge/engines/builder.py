"""Build TensorRT engines from an artifact folder's graphs.

One plan serves the real build and ``--print-trtexec``: for each graph, the
ONNX file it starts from, its profile, and the recipe (strongly or weakly
typed, FP16 / INT8 flags, the layers kept in FP32, TF32, DLA) for the TensorRT
generation at hand. The build itself is a short recipe over TensorRT's Python
API; ``tensorrt`` is imported inside the functions that need it. The precision
graphs a plan reads (``source_graphs``) are made and checked on the CPU first
(``hqsam_edge.pipeline.build``).

| precision | TensorRT 8.6                                | TensorRT 10.x                              | TensorRT 11.x              |
|-----------|---------------------------------------------|--------------------------------------------|----------------------------|
| fp32      | ``encoder.onnx``, TF32 off                  | the same                                   | the same                   |
| fp16      | fp32 graph + FP16 flag, norms pinned FP32   | ``encoder.fp16.onnx`` strongly typed       | ``encoder.fp16.onnx``      |
| int8      | Q/DQ encoder + INT8 + FP16, norms pinned;   | Q/DQ encoder as on 8.x; decoder as fp16    | Q/DQ encoder (its float    |
|           | decoder as fp16 (no INT8: it has no Q/DQ)   |                                            | layers FP32); fp16 decoder |

"Norms pinned": the layers FP16 overflows in (LayerNorm, softmax, the
reductions and exponentials around them; mit-han-lab/efficientvit issue 113:
an FP16 SAM encoder at mIoU 0.0) get FP32 precision and output types under
``OBEY_PRECISION_CONSTRAINTS``, the weakly typed counterpart of the FP16
graph's own FP32 islands. A DLA encoder is built weakly typed with FP16 (DLA
runs FP16 / INT8 only) at a static batch of 1; the decoder's dynamic shapes
cannot run on DLA, so it is built for the GPU. TensorRT 8.5 and older are refused: their ONNX parser has no
LayerNormalization (opset 17), which every graph uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import progress
from ..atomic import write_bytes
from ..calib.recipes import FP16_KEEP_FP32
from ..errors import BackendUnavailableError, UsageError
from ..export.manifest import Artifact, Manifest, engine_file, graph_file, provenance, read_manifest
from ..export.profiles import Limits, Profile, profile_for
from ..hardware import MIN_TENSORRT, version_tuple
from ..inputs import PRECISIONS, require_choice

if TYPE_CHECKING:  # typed against tensorrt-stubs; imported for real only inside the functions
    import tensorrt as trt

GRAPHS = ("encoder", "decoder")
# ONNX ops FP16 overflows or loses accuracy in: calib.recipes.FP16_KEEP_FP32 less the integer-valued ones
TRT_KEEP_FP32_OPS = tuple(op for op in FP16_KEEP_FP32 if op not in ("Range", "Resize"))
MIN_VERSION = version_tuple(MIN_TENSORRT)  # 8.5's ONNX parser has no LayerNormalization (opset 17: the graphs' norms)
JETPACK_UPGRADE = ("on a Jetson, JetPack 6.0 or newer (JetPack 5.x ships TensorRT 8.4 / 8.5 and Python 3.8); "
                   "elsewhere pip install 'tensorrt-cu12>=10.3,<11'")


@dataclass(frozen=True)
class EngineSpec:
    """The TensorRT side of ``hqsam-edge build``; the defaults are the real ones."""

    folder: str
    precision: str = "fp16"
    limits: Limits = field(default_factory=Limits)  # profile bounds: prompts, points, encoder batch
    workspace_gb: float = 4.0
    dla_core: int | None = None
    version_compatible: bool = False


def check_spec(spec: EngineSpec) -> None:
    """What can be refused before TensorRT is imported."""
    require_choice(spec.precision, PRECISIONS, "precision")
    if spec.dla_core is not None:
        if spec.precision == "fp32":
            raise UsageError("--dla-core runs FP16 and INT8 layers only: with --precision fp32 every layer would "
                             "fall back to the GPU; use --precision fp16 or int8 with --dla-core")
        if spec.limits.max_batch != 1:
            raise UsageError("--dla-core needs static shapes: build the DLA encoder with --max-batch 1")
    if spec.workspace_gb <= 0:
        raise UsageError(f"--workspace-gb must be positive, not {spec.workspace_gb}")


def generation_of(version: str) -> str:
    """"8" for 8.6, "10" for 10.x, "11" for 11.x and later; ``BackendUnavailableError`` below 8.6."""
    if version_tuple(version)[:2] < MIN_VERSION:
        raise BackendUnavailableError(f"TensorRT {version} is too old: hqsam-edge needs 8.6 or newer (the ONNX "
                                      f"parser's LayerNormalization); upgrade: {JETPACK_UPGRADE}")
    major = version_tuple(version)[0]
    return "8" if major < 10 else ("10" if major == 10 else "11")


@dataclass(frozen=True)
class EngineJob:
    """One engine: its source graph, profile, and recipe."""

    graph: str  # "encoder" or "decoder"
    onnx: Path
    engine: Path
    profile: Profile
    precision: str
    strongly_typed: bool = False  # tensor types from the graph (the FP16 graph); no precision flags
    fp16: bool = False  # BuilderFlag.FP16 (weakly typed)
    int8: bool = False  # BuilderFlag.INT8: the Q/DQ encoder only
    tf32: bool = True  # TensorRT's default; cleared for fp32 engines
    pin_fp32: tuple[str, ...] = ()  # layers (ONNX node names) kept in FP32 by precision constraints
    dla_core: int | None = None


def _source(graph: str, precision: str, generation: str, dla: bool) -> tuple[str, str]:
    """(precision, backend) of the graph an engine is built from (see the module table)."""
    if precision == "int8" and graph == "encoder":
        return "int8", "tensorrt"
    reduced = precision in ("fp16", "int8")
    if reduced and (generation == "11" or (generation == "10" and not dla)):
        return "fp16", "onnxruntime"
    return "fp32", "onnxruntime"


def source_graphs(spec: EngineSpec, generation: str) -> list[tuple[str, str]]:
    """The precision graphs (precision, backend they are laid out for) the plan reads besides the fp32 ones."""
    kinds = {_source(g, spec.precision, generation, spec.dla_core is not None and g == "encoder") for g in GRAPHS}
    return sorted(kinds - {("fp32", "onnxruntime")})


def keep_fp32_nodes(onnx_path: Path) -> tuple[str, ...]:
    """Names of the nodes of ``TRT_KEEP_FP32_OPS`` in a graph (TensorRT's ONNX parser names layers after them)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return tuple(n.name for n in graph.node if n.op_type in TRT_KEEP_FP32_OPS)


def _job(folder: Path, graph: str, spec: EngineSpec, generation: str) -> EngineJob:
    dla = spec.dla_core is not None and graph == "encoder"
    precision, backend = _source(graph, spec.precision, generation, dla)
    strongly_typed = generation == "11" or precision == "fp16"
    weak_reduced = not strongly_typed and spec.precision in ("fp16", "int8")
    return EngineJob(
        graph, folder / graph_file(graph, precision, backend), folder / engine_file(graph, spec.precision),
        profile_for(graph, spec.limits), spec.precision, strongly_typed=strongly_typed,
        fp16=weak_reduced, int8=weak_reduced and precision == "int8", tf32=spec.precision != "fp32",
        pin_fp32=keep_fp32_nodes(folder / graph_file(graph)) if weak_reduced else (),
        dla_core=spec.dla_core if dla else None)


def plan(folder: Path, spec: EngineSpec, generation: str) -> list[EngineJob]:
    """One job per graph, for TensorRT ``generation`` (files named whether they exist yet or not)."""
    check_spec(spec)
    check_dla_generation(spec, generation)
    return [_job(folder, graph, spec, generation) for graph in GRAPHS]


def trtexec_lines(spec: EngineSpec, generation: str) -> list[str]:
    """The trtexec command lines equivalent to ``build``, one per graph."""
    from .trtexec import join, trtexec_command

    folder = Path(spec.folder)
    read_manifest(folder)  # a folder of ours
    return [join(trtexec_command(job, generation=generation, workspace_gb=spec.workspace_gb,
                                 timing_cache=folder / trtexec_timing_cache(generation),
                                 version_compatible=spec.version_compatible))
            for job in plan(folder, spec, generation)]


def trtexec_timing_cache(generation: str) -> str:
    """The timing cache of hand builds: trtexec loads any cache without checking the GPU, so the name carries
    this machine's GPU (``timing.trt10.sm87.cache``), or says it has none."""
    from ..hardware import this_platform

    cc = this_platform().compute_capability
    return timing_cache_name(generation, cc) if cc else f"timing.trt{generation}.this-gpu.cache"


def timing_cache_name(tensorrt_version: str, compute_capability: str) -> str:
    """A timing cache holds tactic timings of one TensorRT version on one GPU kind: one file per pair."""
    return f"timing.trt{tensorrt_version}.sm{compute_capability.replace('.', '')}.cache"


def _network_flags(generation: str, strongly_typed: bool) -> int:
    import tensorrt as trt

    if generation == "8":
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # ignored on 10, gone on 11
    if generation == "11":
        return 0  # always strongly typed; the flag is deprecated and ignored there
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0


def _pin_fp32(network: trt.INetworkDefinition, names: set[str]) -> list[str]:
    """FP32 precision and output types on the network's layers named in ``names`` and on its normalisation and
    softmax layers, where their outputs are floating point; the names pinned."""
    import tensorrt as trt

    by_type = {trt.LayerType.SOFTMAX}
    if hasattr(trt.LayerType, "NORMALIZATION"):  # 8.6 and later
        by_type.add(trt.LayerType.NORMALIZATION)
    floats = (trt.float32, trt.float16)
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name not in names and layer.type not in by_type:
            continue
        if not all(layer.get_output(k).dtype in floats for k in range(layer.num_outputs)):
            continue
        if any(layer.get_input(k) is not None and layer.get_input(k).is_shape_tensor
               for k in range(layer.num_inputs)):
            continue  # shape arithmetic cannot take a precision (trtexec skips these too)
        layer.precision = trt.float32
        for k in range(layer.num_outputs):
            layer.set_output_type(k, trt.float32)
        pinned.append(layer.name)
    return pinned


def _timing_cache(config: trt.IBuilderConfig, cache_path: Path) -> trt.ITimingCache:
    """The folder's timing cache for this TensorRT and GPU, or a fresh one when TensorRT refuses it."""
    blob = cache_path.read_bytes() if cache_path.exists() else b""
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _configure(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig, job: EngineJob,
               spec: EngineSpec) -> list[str]:
    """Precision, profile, DLA and compatibility settings of one build; the layers pinned to FP32."""
    import tensorrt as trt

    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gb * 2**30))
    if not job.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: fp32 engines must be fp32
    if job.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if job.int8:
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the Q/DQ graph carries the scales
    pinned = _pin_fp32(network, set(job.pin_fp32)) if job.pin_fp32 else []
    if pinned:
        # DLA takes the pins as preferences (trtexec does the same); elsewhere they are obeyed
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS if job.dla_core is not None
                        else trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in job.profile.shapes.items():
        profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    config.add_optimization_profile(profile)
    if job.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = job.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if spec.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    return pinned


def _progress_monitor() -> trt.IProgressMonitor | None:
    """TensorRT's build phases as progress lines (``IProgressMonitor``, TensorRT 9 and later), when progress is
    being reported. TensorRT calls it from its own threads: it writes to the reporter it was made with and
    never lets an exception reach TensorRT."""
    import tensorrt as trt

    current = progress.current()
    if current is None or not hasattr(trt, "IProgressMonitor"):
        return None
    reporter: progress.Reporter = current

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)  # the binding's trampoline needs it

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            try:
                if not parent_phase:  # top-level phases only: the nested ones come by the thousand
                    reporter.line(f"TensorRT: {phase_name} ({num_steps} steps)")
            except Exception:  # noqa: BLE001 - nothing may escape into TensorRT
                pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # go on

        def phase_finish(self, phase_name: str) -> None:
            return None

    return Monitor()


def _build_one(job: EngineJob, spec: EngineSpec, generation: str, cache_path: Path) -> tuple[bytes, list[str]]:
    """The serialized engine of one job, and the layers it pinned to FP32."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(generation, job.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(job.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT cannot parse {job.onnx.name}: {errors}")
    config = builder.create_builder_config()
    pinned = _configure(builder, network, config, job, spec)
    cache = _timing_cache(config, cache_path)
    monitor = _progress_monitor()
    if monitor is not None:
        config.progress_monitor = monitor  # kept alive by the config, and by this frame until the build ends
    with progress.stage(f"TensorRT: build the {job.graph} engine ({job.precision})"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UsageError(f"TensorRT failed to build {job.onnx.name} (see the TensorRT log above)")
    write_bytes(cache_path, bytes(cache.serialize()))
    return bytes(serialized), pinned


def check_tensorrt_version(spec: EngineSpec, version: str) -> str:
    """The generation of ``version``, refusing what it cannot build for ``spec``."""
    generation = generation_of(version)
    check_dla_generation(spec, generation)
    if spec.dla_core is not None and generation == "11" and version_tuple(version) < (11, 4, 1):
        raise BackendUnavailableError(f"TensorRT {version} has no DLA support (TensorRT 11.0-11.4.0 dropped it; "
                                      "11.4.1 brings it back on JetPack 7.2.2+): use TensorRT 10 / JetPack 6, or "
                                      "drop --dla-core")
    return generation


def check_dla_generation(spec: EngineSpec, generation: str) -> None:
    """DLA runs explicitly quantized (Q/DQ) networks from TensorRT 10 on."""
    if spec.dla_core is not None and spec.precision == "int8" and generation == "8":
        raise UsageError("--dla-core with --precision int8 needs TensorRT 10 or newer: TensorRT 8.x's DLA takes no "
                         "explicit (Q/DQ) quantization; use --precision fp16 on the DLA, or JetPack 6.1+")


def check_dla(spec: EngineSpec) -> None:
    """``--dla-core`` on a device without that core: refused before any graph is made."""
    if spec.dla_core is None:
        return
    import tensorrt as trt

    cores = trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores
    if spec.dla_core >= cores:
        raise BackendUnavailableError(f"--dla-core needs a device with DLA (Jetson AGX Orin / Orin NX): this one has "
                                      f"{cores} DLA core(s), core {spec.dla_core} was asked for")


def device_description() -> dict[str, str]:
    """GPU name and compute capability (through pycuda), recorded with every engine."""
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return {"gpu": dev.name(), "compute_capability": f"{major}.{minor}"}


def check_engines(manifest: Manifest, folder: Path, files: dict[str, str], spec: EngineSpec,
                  images: list[np.ndarray], bounds) -> dict:
    """The new engines against the fp32 PyTorch model on held-out images (as the CPU graphs are checked); the
    prompt sets stay inside the engines' profile (the backend reads it from them)."""
    from ..runtime.base import ModelInfo
    from ..runtime.compare import check, compare
    from ..runtime.tensorrt_backend import TensorRTBackend
    from ..runtime.torch_backend import TorchBackend

    info = ModelInfo.from_manifest(manifest)
    candidate = TensorRTBackend(info, folder / files["encoder"], folder / files["decoder"], precision=spec.precision,
                                version_compatible=spec.version_compatible, dla_core=spec.dla_core)
    reference = TorchBackend(manifest.build_model(), device="cpu", info=info)
    return check(compare(reference, candidate, images), bounds, f"the {spec.precision} TensorRT engines")


def build_engines(spec: EngineSpec, generation: str, images: list[np.ndarray], bounds) -> Artifact:
    """One engine per graph (its precision graphs already made and checked, and each the file the manifest
    records), checked on ``images`` against ``bounds`` and recorded in the manifest."""
    import tensorrt as trt

    folder = Path(spec.folder)
    manifest = read_manifest(folder)
    jobs = plan(folder, spec, generation)
    manifest.check_files(folder, [job.onnx.name for job in jobs])
    device = device_description()
    cache_path = folder / timing_cache_name(trt.__version__, device["compute_capability"])
    files, recipes = {}, {}
    for job in jobs:
        serialized, pinned = _build_one(job, spec, generation, cache_path)
        write_bytes(job.engine, serialized)
        files[job.graph] = job.engine.name
        recipes[job.graph] = {"source": job.onnx.name, "strongly_typed": job.strongly_typed, "fp16": job.fp16,
                              "int8": job.int8, "tf32": job.tf32, "fp32_layers": len(pinned), "dla_core": job.dla_core}
    parity = check_engines(manifest, folder, files, spec, images, bounds)
    limits = spec.limits
    artifact = Artifact(
        "tensorrt", spec.precision, files, format="engine",
        tool_versions={"tensorrt": trt.__version__, "generation": generation},
        device=device["gpu"], parity=parity,
        extra={"compute_capability": device["compute_capability"], "max_prompts": limits.max_prompts,
               "max_points": limits.max_points, "max_batch": limits.max_batch, "dla_core": spec.dla_core,
               "version_compatible": spec.version_compatible, "timing_cache": cache_path.name, "recipes": recipes,
               **provenance()},
    )
    manifest.add(artifact)
    manifest.record_files(folder, files.values())
    manifest.write(folder)
    return artifact
