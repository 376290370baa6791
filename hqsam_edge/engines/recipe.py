"""The engine recipe and every TensorRT version / DLA rule, read by the real build and the trtexec lines alike.

``plan`` makes one ``EngineJob`` per graph: the ONNX file it starts from, its
profile, and how TensorRT is told to build it (strongly or weakly typed, FP16 /
INT8 flags, the layers kept in FP32, TF32, DLA, workspace, version
compatibility) for the TensorRT generation at hand. ``engines.tensorrt_build``
turns a job into TensorRT API calls, ``engines.trtexec`` into a trtexec line;
neither decides anything a job does not say. Nothing here imports
``tensorrt``. The precision graphs a plan reads (``source_graphs``) are made
and checked on the CPU first (``hqsam_edge.pipeline.build``).

| precision | TensorRT 8.6                                | TensorRT 10.x                              | TensorRT 11.x              |
|-----------|---------------------------------------------|--------------------------------------------|----------------------------|
| fp32      | ``encoder.onnx``, TF32 off                  | the same                                   | the same                   |
| fp16      | fp32 graph + FP16 flag, norms pinned FP32   | ``encoder.fp16.onnx`` strongly typed       | ``encoder.fp16.onnx``      |
| int8      | Q/DQ encoder + INT8 + FP16, norms pinned;   | Q/DQ encoder as on 8.x; decoder as fp16    | Q/DQ encoder on the FP16   |
|           | decoder as fp16 (no INT8: it has no Q/DQ)   |                                            | graph (``encoder.int8.     |
|           |                                             |                                            | tensorrt.fp16.onnx``);     |
|           |                                             |                                            | fp16 decoder               |

"Norms pinned": the layers FP16 overflows in (LayerNorm, softmax, the
reductions and exponentials around them; mit-han-lab/efficientvit issue 113:
an FP16 SAM encoder at mIoU 0.0) get FP32 precision and output types under
``OBEY_PRECISION_CONSTRAINTS``, the weakly typed counterpart of the FP16
graph's own FP32 islands. A DLA encoder is built weakly typed with FP16 (DLA
runs FP16 / INT8 only) at a static batch of 1, its pins taken as preferences;
the decoder's dynamic shapes cannot run on DLA, so it is built for the GPU.
TensorRT 8.5 and older are refused: their ONNX parser has no
LayerNormalization (opset 17), which every graph uses.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from ..calib.recipes import FP16_KEEP_FP32
from ..errors import BackendUnavailableError, UsageError
from ..export.manifest import engine_file, graph_file, int8_on_fp16_file
from ..export.profiles import Limits, Profile, profile_for
from ..hardware import MIN_TENSORRT, dla_refusal, version_tuple
from ..inputs import PRECISIONS, TRTEXEC_GENERATIONS as GENERATIONS, require_choice

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
    _: KW_ONLY  # the rest by name
    precision: str = "fp16"
    limits: Limits = field(default_factory=Limits)  # profile bounds: prompts, points, encoder batch
    workspace_gb: float = 4.0
    dla_core: int | None = None
    version_compatible: bool = False


@dataclass(frozen=True, kw_only=True)
class EngineJob:
    """One engine: its source graph, profile, and everything TensorRT (or trtexec) is told to build it."""

    graph: str  # "encoder" or "decoder"
    onnx: Path
    engine: Path
    profile: Profile
    precision: str
    generation: str  # "8", "10" or "11" (``generation_of``)
    strongly_typed: bool = False  # tensor types from the graph (the FP16 graph); no precision flags
    fp16: bool = False  # BuilderFlag.FP16 (weakly typed)
    int8: bool = False  # BuilderFlag.INT8: the Q/DQ encoder only
    tf32: bool = True  # TensorRT's default; cleared for fp32 engines
    pin_fp32: tuple[str, ...] = ()  # ONNX nodes whose TensorRT layers are kept in FP32 (``layers_to_pin``)
    dla_core: int | None = None
    workspace_gb: float = 4.0
    version_compatible: bool = False

    @property
    def explicit_batch(self) -> bool:
        """``EXPLICIT_BATCH`` at network creation: needed on 8.x, ignored on 10, gone on 11."""
        return self.generation == "8"

    @property
    def strongly_typed_flag(self) -> bool:
        """``STRONGLY_TYPED`` at network creation (trtexec ``--stronglyTyped``): 10.x only, since 11 is always
        strongly typed (the flag deprecated there) and 8.x has none."""
        return self.strongly_typed and self.generation == "10"

    @property
    def prefer_constraints(self) -> bool:
        """Precision pins as preferences (DLA; trtexec's own DLA path does the same), else obeyed."""
        return self.dla_core is not None

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gb * 2**30)


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


def check_dla_generation(spec: EngineSpec, generation: str) -> None:
    """DLA runs explicitly quantized (Q/DQ) networks from TensorRT 10 on."""
    if spec.dla_core is not None and spec.precision == "int8" and generation == "8":
        raise UsageError("--dla-core with --precision int8 needs TensorRT 10 or newer: TensorRT 8.x's DLA takes no "
                         "explicit (Q/DQ) quantization; use --precision fp16 on the DLA, or JetPack 6.1+")


def check_tensorrt_version(spec: EngineSpec, version: str, jetson_model: str = "", jetpack: str = "") -> str:
    """The generation of ``version``, refusing what it cannot build for ``spec``: for ``--dla-core``, NVIDIA's DLA
    matrix on this board (``hardware.dla_refusal``: none on 10.8-10.x and 11.0-11.4.0, AGX Orin with JetPack
    7.2.2+ only from 11.4.1; ``jetson_model`` / ``jetpack`` empty where not known)."""
    generation = generation_of(version)
    check_dla_generation(spec, generation)
    if spec.dla_core is not None:
        why = dla_refusal(version, jetson_model, jetpack)
        if why:
            raise BackendUnavailableError(f"{why}; drop --dla-core to build GPU engines")
    return generation


def check_dla_cores(spec: EngineSpec, cores: int) -> None:
    """``--dla-core`` on a device with ``cores`` DLA cores: refused before any graph is made unless it has it."""
    if spec.dla_core is not None and spec.dla_core >= cores:
        raise BackendUnavailableError(f"--dla-core needs a device with DLA (Jetson AGX Orin / Orin NX): this one has "
                                      f"{cores} DLA core(s), core {spec.dla_core} was asked for")


def _source(graph: str, precision: str, generation: str, dla: bool) -> tuple[str, str]:
    """(precision, backend) of the graph an engine is built from (see the module table)."""
    if precision == "int8" and graph == "encoder":
        return "int8", "tensorrt"
    reduced = precision in ("fp16", "int8")
    if reduced and (generation == "11" or (generation == "10" and not dla)):
        return "fp16", "onnxruntime"
    return "fp32", "onnxruntime"


def int8_on_fp16(generation: str) -> bool:
    """Whether the INT8 encoder is built from the Q/DQ graph on the FP16 graph (``encoder.int8.tensorrt.fp16.onnx``):
    on 11, strongly typed, where the fp32-based one would run every non-quantized layer in FP32; 8.6 / 10.x build
    the fp32-based one weakly typed (INT8 + FP16 flags, norms pinned)."""
    return generation == "11"


def source_graphs(spec: EngineSpec, generation: str) -> list[tuple[str, str]]:
    """The precision graphs (precision, backend they are laid out for) the plan reads besides the fp32 ones."""
    kinds = {_source(g, spec.precision, generation, spec.dla_core is not None and g == "encoder") for g in GRAPHS}
    return sorted(kinds - {("fp32", "onnxruntime")})


def keep_fp32_nodes(onnx_path: Path) -> tuple[str, ...]:
    """Names of the nodes of ``TRT_KEEP_FP32_OPS`` in a graph (TensorRT's ONNX parser names layers after them)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return tuple(n.name for n in graph.node if n.op_type in TRT_KEEP_FP32_OPS)


PIN_BY_TYPE = ("SOFTMAX", "NORMALIZATION")  # layer types pinned whatever node made them


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a parsed TensorRT network, as far as pinning reads it (``LayerType`` member name)."""

    name: str
    kind: str
    float_outputs: bool  # every output FLOAT or HALF
    shape_inputs: bool  # an input is a shape tensor (shape arithmetic takes no precision)


def node_of(layer: str, nodes: Collection[str]) -> str | None:
    """The ONNX node of ``nodes`` a layer came from, by onnx-tensorrt's naming (``ImporterContext::registerLayer``):
    a node's first layer is ``<node>``, its further ones ``<node>_<N>`` (N from one network-wide counter), so a
    name that is a node's is that node's; else the name less a numeric ``_<N>``; None when neither is a node."""
    if layer in nodes:
        return layer
    base, sep, suffix = layer.rpartition("_")
    return base if sep and suffix.isdigit() and base in nodes else None


def layers_to_pin(layers: Sequence[LayerInfo], nodes: Collection[str]) -> tuple[str, ...]:
    """The layers a weakly typed build keeps in FP32: those of ``nodes`` (all of each node's layers) and every
    softmax / normalisation layer, where their outputs are floating point and no input is a shape tensor (the
    same list the build pins and the trtexec line prints). CONSTANT layers (weights, named after them) are not
    computed, so never pinned."""
    nodes = set(nodes)
    return tuple(layer.name for layer in layers if layer.kind != "CONSTANT"
                 and (layer.kind in PIN_BY_TYPE or node_of(layer.name, nodes) is not None)
                 and layer.float_outputs and not layer.shape_inputs)


@dataclass(frozen=True)
class PinCheck:
    """What a built engine did with the pinned layers (``EngineInspector``'s JSON, ``check_pins``)."""

    fp32: tuple[str, ...] = ()  # engine layers holding a pinned layer whose outputs are FP32
    reduced: tuple[tuple[str, str], ...] = ()  # (engine layer, its output precision) holding a pinned layer
    unknown: tuple[str, ...] = ()  # engine layers holding a pinned layer, their types not said (dynamic shapes)
    unseen: tuple[str, ...] = ()  # pinned layers in no named engine layer (fused into a Myelin region, or gone)


def _precision(datatype: str) -> str:
    text = datatype.lower()
    for word, precision in (("int8", "int8"), ("fp16", "fp16"), ("half", "fp16"), ("fp32", "fp32"),
                            ("float", "fp32")):
        if word in text:
            return precision
    return "unknown"  # "N/A due to dynamic shapes" and the like


def check_pins(engine_json: str, pinned: Sequence[str]) -> PinCheck:
    """Pinned layers against an engine's layers as ``EngineInspector.get_engine_information(JSON)`` gives them
    (built with ``ProfilingVerbosity.DETAILED``): an engine layer is ``"a + b"`` when TensorRT fused layers, its
    outputs' ``Format/Datatype`` the precision it ran in."""
    wanted, found = set(pinned), set()
    fp32, reduced, unknown = [], [], []
    for layer in json.loads(engine_json).get("Layers", []):
        if not isinstance(layer, dict):
            continue  # LAYER_NAMES_ONLY: names without types
        parts = {p.strip() for p in str(layer.get("Name", "")).split(" + ")} & wanted
        if not parts:
            continue
        found |= parts
        kinds = {_precision(str(o.get("Format/Datatype", ""))) for o in layer.get("Outputs", [])} - {"unknown"}
        if not kinds:
            unknown.append(layer["Name"])
        elif kinds == {"fp32"}:
            fp32.append(layer["Name"])
        else:
            reduced.append((layer["Name"], ",".join(sorted(kinds))))
    return PinCheck(tuple(fp32), tuple(reduced), tuple(unknown), tuple(p for p in pinned if p not in found))


def _job(folder: Path, graph: str, spec: EngineSpec, generation: str) -> EngineJob:
    dla = spec.dla_core is not None and graph == "encoder"
    precision, backend = _source(graph, spec.precision, generation, dla)
    strongly_typed = generation == "11" or precision == "fp16"
    weak_reduced = not strongly_typed and spec.precision in ("fp16", "int8")
    source = (int8_on_fp16_file(graph) if (precision, backend) == ("int8", "tensorrt") and int8_on_fp16(generation)
              else graph_file(graph, precision, backend))
    return EngineJob(
        graph=graph, onnx=folder / source,
        engine=folder / engine_file(graph, spec.precision, spec.dla_core), profile=profile_for(graph, spec.limits),
        precision=spec.precision, generation=generation, strongly_typed=strongly_typed,
        fp16=weak_reduced, int8=weak_reduced and precision == "int8", tf32=spec.precision != "fp32",
        pin_fp32=keep_fp32_nodes(folder / graph_file(graph)) if weak_reduced else (),
        dla_core=spec.dla_core if dla else None, workspace_gb=spec.workspace_gb,
        version_compatible=spec.version_compatible)


def plan(folder: Path, spec: EngineSpec, generation: str) -> list[EngineJob]:
    """One job per graph, for TensorRT ``generation`` (files named whether they exist yet or not)."""
    check_spec(spec)
    require_choice(generation, GENERATIONS, "TensorRT generation")
    check_dla_generation(spec, generation)
    return [_job(folder, graph, spec, generation) for graph in GRAPHS]


def timing_cache_name(tensorrt_version: str, compute_capability: str) -> str:
    """A timing cache holds tactic timings of one TensorRT version on one GPU kind: one file per pair."""
    return f"timing.trt{tensorrt_version}.sm{compute_capability.replace('.', '')}.cache"


def trtexec_timing_cache(generation: str) -> str:
    """The timing cache of hand builds: trtexec loads any cache without checking the GPU, so the name carries
    this machine's GPU (``timing.trt10.sm87.cache``), or says it has none."""
    from ..hardware import this_platform

    cc = this_platform().compute_capability
    return timing_cache_name(generation, cc) if cc else f"timing.trt{generation}.this-gpu.cache"
