"""The TensorRT API calls of an engine build: one ``EngineJob`` (``engines.recipe``) in, a serialized plan out.

A short recipe over TensorRT's Python API (network from the ONNX parser,
builder config, optimization profile, timing cache, progress monitor); every
choice it applies is the job's, made in ``engines.recipe``. ``tensorrt`` and
``pycuda`` are imported inside the functions that need them. Checking the
engines and recording them in the manifest is ``hqsam_edge.pipeline.build``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import progress
from ..atomic import write_bytes
from ..errors import BuildError

if TYPE_CHECKING:  # typed against tensorrt-stubs; imported for real only inside the functions
    import tensorrt as trt

    from .recipe import EngineJob, LayerInfo


def tensorrt_version() -> str:
    import tensorrt as trt

    return trt.__version__


def dla_cores() -> int:
    """The DLA cores TensorRT sees on this device (0 on a GPU without DLA)."""
    import tensorrt as trt

    return trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores


def device_description() -> dict[str, str]:
    """GPU name and compute capability (through pycuda), recorded with every engine."""
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return {"gpu": dev.name(), "compute_capability": f"{major}.{minor}"}


def _network_flags(job: EngineJob) -> int:
    import tensorrt as trt

    if job.explicit_batch:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if job.strongly_typed_flag else 0


def _layer_infos(network: trt.INetworkDefinition) -> list[LayerInfo]:
    import tensorrt as trt

    from .recipe import LayerInfo

    floats = (trt.float32, trt.float16)
    infos = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        infos.append(LayerInfo(
            layer.name, layer.type.name, all(layer.get_output(k).dtype in floats for k in range(layer.num_outputs)),
            any(layer.get_input(k) is not None and layer.get_input(k).is_shape_tensor
                for k in range(layer.num_inputs))))
    return infos


def _pin_fp32(network: trt.INetworkDefinition, nodes: set[str]) -> list[str]:
    """FP32 precision and output types on the layers ``recipe.layers_to_pin`` names; the names pinned."""
    import tensorrt as trt

    from .recipe import layers_to_pin

    pinned = set(layers_to_pin(_layer_infos(network), nodes))
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in pinned:
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
    return [name for name in (network.get_layer(i).name for i in range(network.num_layers)) if name in pinned]


def _parse(job: EngineJob) -> tuple[trt.Builder, trt.INetworkDefinition, trt.OnnxParser]:
    """Builder, network and parser of ``job``'s graph (the parser holds the weights: keep it until the build);
    ``BuildError`` when TensorRT cannot parse it."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(job))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(job.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT {trt.__version__} cannot parse {job.onnx.name}: {errors}; export the folder "
                         "again with this hqsam-edge, or build with another TensorRT version")
    return builder, network, parser


def pinned_layers(job: EngineJob) -> tuple[str, ...]:
    """The layers a build of ``job`` pins to FP32, from a parse without a build (for the trtexec line)."""
    from .recipe import layers_to_pin

    if not job.pin_fp32:
        return ()
    _, network, _ = _parse(job)
    return layers_to_pin(_layer_infos(network), set(job.pin_fp32))


def engine_information(serialized: bytes) -> str:
    """``EngineInspector``'s JSON of a plan (layer precisions need a build with ``detailed=True``)."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise BuildError("TensorRT cannot load the plan it just built; build it again")
    return str(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))


def _timing_cache(config: trt.IBuilderConfig, cache_path: Path) -> trt.ITimingCache:
    """The folder's timing cache for this TensorRT and GPU, or a fresh one when TensorRT refuses it."""
    blob = cache_path.read_bytes() if cache_path.exists() else b""
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _configure(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig,
               job: EngineJob) -> list[str]:
    """Precision, profile, DLA and compatibility settings of one build; the layers pinned to FP32."""
    import tensorrt as trt

    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, job.workspace_bytes)
    if not job.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: fp32 engines must be fp32
    if job.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if job.int8:
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the Q/DQ graph carries the scales
    pinned = _pin_fp32(network, set(job.pin_fp32)) if job.pin_fp32 else []
    if pinned:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS if job.prefer_constraints
                        else trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in job.profile.shapes.items():
        profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    config.add_optimization_profile(profile)
    if job.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = job.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if job.version_compatible:
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


def build_serialized(job: EngineJob, cache_path: Path, *, detailed: bool = False) -> tuple[bytes, list[str]]:
    """The serialized engine of one job and the layers it pinned to FP32; the timing cache at ``cache_path``
    read (if TensorRT takes it) and written back. ``detailed``: ``ProfilingVerbosity.DETAILED``, so
    ``engine_information`` says each layer's precision (larger plans: for checks). ``BuildError`` when TensorRT
    cannot parse or build."""
    import tensorrt as trt

    builder, network, _parser = _parse(job)  # the parser holds the weights until the build ends
    config = builder.create_builder_config()
    pinned = _configure(builder, network, config, job)
    if detailed:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    cache = _timing_cache(config, cache_path)
    monitor = _progress_monitor()
    if monitor is not None:
        config.progress_monitor = monitor  # kept alive by the config, and by this frame until the build ends
    with progress.stage(f"TensorRT: build the {job.graph} engine ({job.precision})"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build {job.onnx.name} (see the TensorRT log above); a larger "
                         "--workspace-gb or smaller --max-prompts / --max-points may let it")
    write_bytes(cache_path, bytes(cache.serialize()))
    return bytes(serialized), pinned
