"""A recording stand-in for the ``tensorrt`` module: it proves which calls we make, never that they run on a GPU.

Neither TensorRT nor pycuda can be installed on the development machines, so the engine builder and the
TensorRT backend are exercised against this double and ``recording_pycuda``, installed into ``sys.modules``
by ``install``. Every class, method, attribute and enum member it defines is one that TensorRT 10.13's type
stubs (``tensorrt-stubs``) define too (``test_recording_stand_in_names_are_tensorrts``), so the code under test
cannot lean on an API the real module lacks; what TensorRT does with the calls is not emulated beyond:

- the ONNX parser names layers as TensorRT's does (``OnnxParser.parse_from_file``: a node's further layers
  ``<node>_<N>`` by one network-wide counter, CONSTANT layers named after weights, none for ``Constant``
  nodes), of the ``LayerType`` TensorRT's importer makes of that op, with the graph's tensor types and shape
  tensors, so precision pins can be read back; strongly typed networks refuse precision setters;
- ``IBuilderConfig`` starts with TF32 on (TensorRT's default) and refuses a timing cache that is not its own;
- ``build_serialized_network`` records the build (``BUILDS``) and returns a JSON "plan": the ONNX graph, the
  profile, whether it is version compatible;
- a DETAILED build's plan lists its layers with their outputs' ``Format/Datatype`` (FP32 where pinned, FP16
  under the FP16 flag), read back through ``ICudaEngine.create_engine_inspector``;
- ``Runtime.deserialize_cuda_engine`` makes an engine that runs that ONNX graph with ONNX Runtime on the CPU,
  reading its inputs from and writing its outputs to ``recording_pycuda``'s device memory at the addresses
  it was given (in the graph's own I/O types), and refuses shapes outside its profile and version-compatible
  plans without host code allowed;
- each execution context takes ``ACTIVATION_BYTES`` of device memory of its own under the default STATIC
  allocation strategy (counted by ``recording_pycuda.DRIVER.allocated()``), none under USER_MANAGED or
  ``create_execution_context_without_device_memory``, where running without ``set_device_memory`` /
  ``device_memory`` is a recorded error; so is one context executing on two threads at once (TensorRT:
  "do not call the APIs of the same IExecutionContext from multiple threads at any given time").
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import recording_pycuda as cuda

__version__ = "10.13.0.35"


class _Member:
    """An enum member: a name and TensorRT 10.13's value."""

    def __init__(self, owner: str, name: str, value: int) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"<{self.owner}.{self.name}: {self.value}>"


def _enum(owner: str, **members: int) -> type:
    return type(owner, (), {name: _Member(owner, name, value) for name, value in members.items()})


NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
BuilderFlag = _enum("BuilderFlag", FP16=0, INT8=1, GPU_FALLBACK=3, TF32=6, OBEY_PRECISION_CONSTRAINTS=9,
                    PREFER_PRECISION_CONSTRAINTS=10, DIRECT_IO=11, VERSION_COMPATIBLE=13, EXCLUDE_LEAN_RUNTIME=14)
MemoryPoolType = _enum("MemoryPoolType", WORKSPACE=0)
DeviceType = _enum("DeviceType", GPU=0, DLA=1)
LayerType = _enum("LayerType", CONVOLUTION=0, CAST=1, ACTIVATION=2, SOFTMAX=6, CONCATENATION=8, ELEMENTWISE=9,
                  UNARY=11, SHUFFLE=13, REDUCE=14, GATHER=16, MATRIX_MULTIPLY=17, CONSTANT=19, SLICE=22,
                  QUANTIZE=32, DEQUANTIZE=33, NORMALIZATION=45, SHAPE=23, RESIZE=25, SELECT=30)
TensorIOMode = _enum("TensorIOMode", NONE=0, INPUT=1, OUTPUT=2)
DataType = _enum("DataType", FLOAT=0, HALF=1, INT8=2, INT32=3, BOOL=4, INT64=8)
float32, float16, int32 = DataType.FLOAT, DataType.HALF, DataType.INT32
_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT32: np.int32, DataType.BOOL: np.bool_,
          DataType.INT64: np.int64, DataType.INT8: np.int8}
ExecutionContextAllocationStrategy = _enum("ExecutionContextAllocationStrategy", STATIC=0, ON_PROFILE_CHANGE=1,
                                           USER_MANAGED=2)
_ORT_TYPES = {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF, "tensor(int32)": DataType.INT32,
              "tensor(int64)": DataType.INT64, "tensor(bool)": DataType.BOOL, "tensor(int8)": DataType.INT8}
ProfilingVerbosity = _enum("ProfilingVerbosity", LAYER_NAMES_ONLY=0, NONE=1, DETAILED=2)
LayerInformationFormat = _enum("LayerInformationFormat", ONELINE=0, JSON=1)
ACTIVATION_BYTES = 1 << 20  # what each engine says its execution context needs (device_memory_size_v2)

# ONNX op -> the layer TensorRT's ONNX importer registers under the node's name
_LAYER_OF = {"Conv": "CONVOLUTION", "ConvTranspose": "CONVOLUTION", "MatMul": "MATRIX_MULTIPLY",
             "Gemm": "MATRIX_MULTIPLY", "LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX",
             "ReduceMean": "REDUCE", "ReduceSum": "REDUCE", "Sqrt": "UNARY", "Exp": "UNARY", "Erf": "UNARY",
             "Reciprocal": "UNARY", "Sin": "UNARY", "Cos": "UNARY", "Pow": "ELEMENTWISE", "Add": "ELEMENTWISE",
             "Mul": "ELEMENTWISE", "Sub": "ELEMENTWISE", "Div": "ELEMENTWISE", "Cast": "CAST",
             "QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "Gather": "GATHER",
             "Concat": "CONCATENATION", "Slice": "SLICE", "Shape": "SHAPE", "Resize": "RESIZE", "Where": "SELECT",
             "Transpose": "SHUFFLE", "Reshape": "SHUFFLE", "Split": "SLICE"}
# ops whose importer registers more layers under the node's name (named <node>_<N> by the network-wide counter):
# Gemm's bias add, one slice per further Split output
_EXTRA_LAYERS = {"Gemm": ("ELEMENTWISE",)}
# inputs read as shapes (ONNX op -> input positions): integer tensors there are shape tensors
_SHAPE_OPERANDS = {"Reshape": (1,), "Expand": (1,), "ConstantOfShape": (0,), "Tile": (1,), "Range": (0, 1, 2),
                   "Slice": (1, 2, 3, 4), "Resize": (2, 3), "Unsqueeze": (1,), "Squeeze": (1,), "ReduceMean": (1,),
                   "ReduceSum": (1,), "Split": (1,)}
_ONNX_TYPES = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 9: "BOOL", 3: "INT8"}


def nptype(trt_type: _Member) -> type:
    return _NUMPY[trt_type]


class ILogger:
    Severity = _enum("Severity", INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)


class Logger(ILogger):
    WARNING = ILogger.Severity.WARNING

    def __init__(self, min_severity: _Member = ILogger.Severity.WARNING) -> None:
        self.min_severity = min_severity


class Dims(tuple):
    def __new__(cls, shape: Any = ()) -> Dims:
        return super().__new__(cls, tuple(int(d) for d in shape))


# -- building ----------------------------------------------------------------------------------------------------


class ITensor:
    def __init__(self, name: str, dtype: _Member = DataType.FLOAT, shape_tensor: bool = False) -> None:
        self.name, self.dtype, self._shape_tensor = name, dtype, shape_tensor

    @property
    def is_shape_tensor(self) -> bool:
        return self._shape_tensor


class ILayer:
    def __init__(self, network: INetworkDefinition, name: str, type: _Member, outputs: list[ITensor],  # noqa: A002
                 inputs: list[ITensor] | None = None) -> None:
        self._network, self.name, self.type, self._outputs = network, name, type, outputs
        self._inputs = inputs or []
        self.precision_is_set = False
        self._precision = DataType.FLOAT
        self.output_types: dict[int, _Member] = {}

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    @property
    def precision(self) -> _Member:
        return self._precision

    @precision.setter
    def precision(self, value: _Member) -> None:
        if self._network.strongly_typed:
            raise RuntimeError("strongly typed networks reject ILayer.precision")
        self._precision, self.precision_is_set = value, True

    def set_output_type(self, index: int, dtype: _Member) -> None:
        if self._network.strongly_typed:
            raise RuntimeError("strongly typed networks reject ILayer.set_output_type")
        self.output_types[index] = dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        flag = getattr(NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # 9.0 and later
        self.strongly_typed = flag is not None and int(flag) > 0 and bool(flags & (1 << int(flag)))
        self.layers: list[ILayer] = []
        self.onnx = ""

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network = network
        self.errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    refuse_int8_weights = False  # TensorRT 8.x's parser (as_version)

    def parse_from_file(self, model: str) -> bool:
        """Layers as TensorRT's ONNX importer names them (onnx-tensorrt ``ImporterContext::registerLayer``): a
        node's first layer takes its name, further layers of the same node ``<name>_<N>`` from one network-wide
        counter (``generateUniqueName``), helper layers ``ONNXTRT_*``; a ``Constant`` node makes no layer (its
        value is weights), weights become CONSTANT layers named after them where a layer takes them as a tensor.
        Tensors carry the graph's types (integer shape arithmetic included) and ``is_shape_tensor``."""
        import onnx

        proto = onnx.load(model, load_external_data=False)
        graph = proto.graph
        int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
        if self.refuse_int8_weights and any(n.op_type == "DequantizeLinear" and n.input[0] in int8
                                            for n in graph.node):
            self.errors.append("Assertion failed: invalid weights type of Int8")
            return False
        types = _tensor_types(proto)
        shapes = _shape_tensors(graph, types)
        weights = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                         for o in n.output}
        namer = _UniqueNames()

        def tensor(name: str) -> ITensor:
            return ITensor(name, getattr(DataType, types.get(name, "FLOAT")), name in shapes)

        for node in graph.node:
            if node.op_type == "Constant":
                continue  # "No layer will be added for Constant nodes in ONNX"
            inputs = []
            for position, name in enumerate(node.input):
                if not name:
                    continue
                if name in weights and position not in _SHAPE_OPERANDS.get(node.op_type, ()):
                    self._add(namer(name), "CONSTANT", [tensor(name)], [])  # weights as a tensor
                inputs.append(tensor(name))
            outputs = [tensor(o) for o in node.output]
            self._add(namer(node.name), _LAYER_OF.get(node.op_type, "SHUFFLE"), outputs[:1] if node.op_type == "Split"
                      else outputs, inputs)
            extra = () if node.op_type == "Gemm" and len(node.input) < 3 else _EXTRA_LAYERS.get(node.op_type, ())
            extra += ("SLICE",) * (len(node.output) - 1) if node.op_type == "Split" else ()
            for k, kind in enumerate(extra):
                out = (outputs[k + 1:k + 2] if node.op_type == "Split"
                       else [ITensor(f"{node.name}:{k}", outputs[0].dtype)])
                self._add(namer(node.name), kind, out, inputs)
        self.network.onnx = str(model)
        return True

    def _add(self, name: str, kind: str, outputs: list[ITensor], inputs: list[ITensor]) -> None:
        self.network.layers.append(ILayer(self.network, name, getattr(LayerType, kind), outputs, inputs))


class _UniqueNames:
    """onnx-tensorrt's ``generateUniqueName``: the name if unused, else ``<name>_<N>`` with N from one counter for the
    whole network (so a node's second layer is not necessarily ``_0``, and numbers skip)."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.counter = 0

    def __call__(self, basename: str) -> str:
        candidate = basename
        while candidate in self.used:
            candidate = f"{basename}_{self.counter}"
            self.counter += 1
        self.used.add(candidate)
        return candidate


def _tensor_types(model: Any) -> dict[str, str]:
    """Every tensor's ``DataType`` name, from ONNX's type inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a graph ONNX cannot infer: graph I/O and weights only
        inferred = model
    graph = inferred.graph
    types = {i.name: _ONNX_TYPES.get(i.data_type, "FLOAT") for i in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        types[value.name] = _ONNX_TYPES.get(value.type.tensor_type.elem_type, "FLOAT")
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    types[node.output[0]] = _ONNX_TYPES.get(attribute.t.data_type, "FLOAT")
    return types


def _shape_tensors(graph: Any, types: dict[str, str]) -> set[str]:
    """Tensors TensorRT treats as shape tensors: the outputs of Shape, what integer arithmetic makes of them (a data
    input that is one, an integer output), and what layers read as shapes."""
    shapes = {o for n in graph.node if n.op_type == "Shape" for o in n.output}
    for node in graph.node:  # forward: shape arithmetic (Gather / Concat / Unsqueeze / Cast ... of shapes)
        operands = _SHAPE_OPERANDS.get(node.op_type, ())
        data = [i for k, i in enumerate(node.input) if k not in operands]
        if node.op_type != "Shape" and any(i in shapes for i in data):
            shapes.update(o for o in node.output if types.get(o) in ("INT32", "INT64"))
    for node in graph.node:  # read as shapes
        shapes.update(node.input[k] for k in _SHAPE_OPERANDS.get(node.op_type, ()) if k < len(node.input)
                      and node.input[k])
    return shapes


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Dims, opt: Dims, max: Dims) -> None:  # noqa: A002 - TensorRT's names
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    MAGIC = b"recording-timing-cache"

    def __init__(self, data: bytes) -> None:
        self.data = data or self.MAGIC

    def serialize(self) -> bytes:
        return self.data


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags = {BuilderFlag.TF32}  # TensorRT's default: TF32 on
        self.pools: dict[_Member, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.timing_cache: ITimingCache | None = None
        self.progress_monitor: IProgressMonitor | None = None
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY  # TensorRT's default

    def set_flag(self, flag: _Member) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: _Member) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: _Member) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: _Member, pool_size: int) -> None:
        self.pools[pool] = pool_size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if not cache.data.startswith(ITimingCache.MAGIC):
            return False  # a cache of another TensorRT version or GPU
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


@dataclass
class BuildRecord:
    """One ``build_serialized_network`` call, as the tests read it."""

    onnx: str
    strongly_typed: bool
    explicit_batch: bool
    flags: set[str]
    workspace: int | None
    profile: dict[str, tuple[tuple[int, ...], ...]]
    device: str
    dla_core: int
    fp32_layers: list[str]
    timing_cache: bool
    progress_monitor: bool


BUILDS: list[BuildRecord] = []


class Builder:
    num_DLA_cores = 0

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes:
        profile = config.profiles[0].shapes if config.profiles else {}
        BUILDS.append(BuildRecord(
            network.onnx, network.strongly_typed, bool(network.flags & 1), {f.name for f in config.flags},
            config.pools.get(MemoryPoolType.WORKSPACE), profile, config.default_device_type.name, config.DLA_core,
            [layer.name for layer in network.layers if layer.precision_is_set], config.timing_cache is not None,
            config.progress_monitor is not None))
        monitor = config.progress_monitor
        if monitor is not None:  # as TensorRT reports its phases (from its own threads, in truth)
            monitor.phase_start("Building engine", None, 2)
            monitor.phase_start("Tactic selection", "Building engine", 10)
            for step in range(2):
                if not monitor.step_complete("Building engine", step):
                    return None  # type: ignore[return-value]  # a cancelled build gives no engine
            monitor.phase_finish("Building engine")
        plan = {"onnx": network.onnx, "profile": {k: [list(s) for s in v] for k, v in profile.items()},
                "version_compatible": BuilderFlag.VERSION_COMPATIBLE in config.flags,
                "layers": _engine_layers(network, config)}
        return json.dumps(plan).encode()


def _engine_layers(network: INetworkDefinition, config: IBuilderConfig) -> list[Any]:
    """What ``EngineInspector`` will say of the layers: names only, or (DETAILED) each layer with its outputs'
    ``Format/Datatype``: FP32 where pinned or without the FP16 flag, else FP16 (no fusion modelled)."""
    if config.profiling_verbosity is not ProfilingVerbosity.DETAILED:
        return [layer.name for layer in network.layers]
    fp16 = getattr(BuilderFlag, "FP16", None) in config.flags
    layers = []
    for layer in network.layers:
        pinned = layer.precision_is_set and all(t is DataType.FLOAT for t in layer.output_types.values())
        kind = "Row major linear FP16 format" if fp16 and not pinned else "Row major linear FP32"
        layers.append({"Name": layer.name, "LayerType": layer.type.name,
                       "Outputs": [{"Name": o.name,
                                    "Format/Datatype": kind if o.dtype in (DataType.FLOAT, DataType.HALF)
                                    else "Row major linear Int32"} for o in layer._outputs]})
    return layers


class EngineInspector:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine

    def get_engine_information(self, format: _Member) -> str:
        return json.dumps({"Layers": self.engine.plan_layers, "Bindings": self.engine.names})


# -- running -----------------------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        cuda.DRIVER.require_current("deserialize_cuda_engine")
        try:
            plan = json.loads(bytes(serialized_engine))
        except ValueError:
            return None  # not a plan (TensorRT logs an error and returns None)
        if plan["version_compatible"] and not self.engine_host_code_allowed:
            return None  # a plan that embeds the lean runtime needs host code allowed
        return ICudaEngine(plan, self)


class ICudaEngine:
    def __init__(self, plan: dict, runtime: Runtime) -> None:
        import onnxruntime as ort

        self.runtime = runtime  # engines keep their runtime alive, as TensorRT's bindings do
        self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
        self.profile = {k: [tuple(s) for s in v] for k, v in plan["profile"].items()}
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = {o.name: o for o in self.session.get_outputs()}
        self.names = list(self.inputs) + list(self.outputs)
        self.profile_queries: list[str] = []
        self.plan_layers = plan.get("layers", [])

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> _Member:
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> _Member:
        meta = self.inputs.get(name) or self.outputs[name]
        return _ORT_TYPES[meta.type]

    def get_tensor_shape(self, name: str) -> Dims:
        meta = self.inputs.get(name) or self.outputs[name]
        return Dims(d if isinstance(d, int) else -1 for d in meta.shape)

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        self.profile_queries.append(name)
        if name not in self.profile:
            raise RuntimeError(f"{name} is not a dynamic input of the profile")
        return [Dims(s) for s in self.profile[name]]

    @property
    def device_memory_size_v2(self) -> int:  # 10.1 and later
        return ACTIVATION_BYTES

    @property
    def device_memory_size(self) -> int:  # deprecated in 10.1, gone in 11
        return ACTIVATION_BYTES

    def create_execution_context(self, strategy: _Member = ExecutionContextAllocationStrategy.STATIC
                                 ) -> IExecutionContext:
        """A context; with the default STATIC strategy it allocates its own activation memory (counted by
        ``recording_pycuda``), USER_MANAGED leaves it to ``set_device_memory``."""
        cuda.DRIVER.require_current("create_execution_context")
        return IExecutionContext(self, own_memory=strategy is not ExecutionContextAllocationStrategy.USER_MANAGED)

    def create_execution_context_without_device_memory(self) -> IExecutionContext:  # 8.x, deprecated 10, gone 11
        cuda.DRIVER.require_current("create_execution_context_without_device_memory")
        return IExecutionContext(self, own_memory=False)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine, own_memory: bool = True) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.output_shapes: dict[str, tuple[int, ...]] = {}
        self.running = threading.Lock()  # held while it executes: a second thread at once is TensorRT's misuse
        # TensorRT's own activation memory (STATIC), freed with the context; else the user's (set_device_memory)
        self.own_memory = cuda.mem_alloc(ACTIVATION_BYTES) if own_memory else None
        self.user_memory: tuple[int, int] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "device_memory":  # 8.x's write-only property (TensorRT's stubs do not list it)
            self.user_memory = (int(value), ACTIVATION_BYTES if int(value) in cuda.DRIVER.memory else 0)
            return
        super().__setattr__(name, value)

    def set_device_memory(self, memory: int, size: int) -> None:  # 10.1 and later
        if size < self.engine.device_memory_size_v2:
            cuda.DRIVER.errors.append(f"set_device_memory: {size} bytes, the engine needs "
                                      f"{self.engine.device_memory_size_v2}")
        self.user_memory = (int(memory), int(size))

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        static = tuple(self.engine.get_tensor_shape(name))
        lo, _, hi = self.engine.profile.get(name, (static, static, static))
        if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return False  # TensorRT logs the profile error and refuses
        self.shapes[name] = shape
        self.output_shapes = {}
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        if name in self.engine.inputs:
            return Dims(self.shapes.get(name, self.engine.get_tensor_shape(name)))
        if name not in self.output_shapes:  # inferred from the input shapes, as TensorRT does
            self.output_shapes.update(self._infer_output_shapes())
        return Dims(self.output_shapes[name])

    def _infer_output_shapes(self) -> dict[str, tuple[int, ...]]:
        symbols = {}
        for name, meta in self.engine.inputs.items():
            for dim, value in zip(meta.shape, self.shapes.get(name, ())):
                if isinstance(dim, str):
                    symbols[dim] = value
        shapes = {o: tuple(symbols.get(d, -1) if isinstance(d, str) else d for d in meta.shape)
                  for o, meta in self.engine.outputs.items()}
        if all(-1 not in s for s in shapes.values()):
            return shapes
        feeds = {n: np.zeros(s, np.float32) for n, s in self.shapes.items()}  # a symbol of its own: run it
        return {o: tuple(v.shape) for o, v in zip(self.engine.outputs, self.engine.session.run(None, feeds))}

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if not self.running.acquire(blocking=False):
            cuda.DRIVER.errors.append("an IExecutionContext ran on two threads at once")
            return False
        try:
            return self._execute()
        finally:
            self.running.release()

    def _execute(self) -> bool:
        cuda.DRIVER.require_current("execute_async_v3")
        if self.own_memory is None and (self.user_memory is None or self.user_memory[0] not in cuda.DRIVER.memory):
            cuda.DRIVER.errors.append("execute_async_v3 of a context without device memory")
        feeds = {name: np.frombuffer(bytes(cuda.DRIVER.memory[self.addresses[name]]),
                                     nptype(self.engine.get_tensor_dtype(name)),
                                     count=int(np.prod(shape))).reshape(shape)
                 for name, shape in self.shapes.items()}
        for name, value in zip(self.engine.outputs, self.engine.session.run(None, feeds)):
            data = np.ascontiguousarray(value, nptype(self.engine.get_tensor_dtype(name))).tobytes()
            buffer = cuda.DRIVER.memory[self.addresses[name]]
            if len(data) > len(buffer):
                raise RuntimeError(f"{name} overflows its device buffer ({len(data)} > {len(buffer)} bytes)")
            buffer[: len(data)] = data
            self.output_shapes[name] = tuple(value.shape)
        EXECUTIONS.append({name: shape for name, shape in self.shapes.items()})
        return True


EXECUTIONS: list[dict[str, tuple[int, ...]]] = []


_FULL_API = {(owner, name): getattr(owner, name) for owner, names in (
    (NetworkDefinitionCreationFlag, ("EXPLICIT_BATCH", "STRONGLY_TYPED")),
    (BuilderFlag, ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")),
    (ILayer, ("precision", "set_output_type")),
    (ICudaEngine, ("create_execution_context", "create_execution_context_without_device_memory",
                   "device_memory_size", "device_memory_size_v2")),
    (IExecutionContext, ("set_device_memory",))) for name in names}
_FULL_API[(sys.modules[__name__], "IProgressMonitor")] = IProgressMonitor
_FULL_API[(sys.modules[__name__], "ExecutionContextAllocationStrategy")] = ExecutionContextAllocationStrategy


def _create_execution_context_8(self: ICudaEngine) -> IExecutionContext:
    """8.x's ``create_execution_context()``: no strategy, the context's own memory."""
    cuda.DRIVER.require_current("create_execution_context")
    return IExecutionContext(self)


def as_version(monkeypatch, version: str) -> None:
    """Make the double look like TensorRT ``version``: its version string, and the API of its major.

    8.6: no ``STRONGLY_TYPED`` (9.0), no ``IProgressMonitor`` (9.0), no allocation strategies (10.0), no
    ``set_device_memory`` / ``device_memory_size_v2`` (10.1), and the ONNX parser refuses int8 weights
    feeding a DequantizeLinear ("invalid weights type of Int8"). 11: no ``EXPLICIT_BATCH``, no FP16 / INT8 /
    precision-constraint builder flags, ``STRONGLY_TYPED`` is 0 and deprecated, layer precisions cannot be set,
    no ``create_execution_context_without_device_memory`` / ``device_memory_size``.
    """
    import sys

    module = sys.modules[__name__]
    for (owner, name), value in _FULL_API.items():  # the 10.13 API first, then what the version lacks
        monkeypatch.setattr(owner, name, value, raising=False)
    monkeypatch.setattr(module, "__version__", version)
    major = int(version.split(".")[0])
    if major < 9:
        monkeypatch.delattr(NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
        monkeypatch.delattr(module, "IProgressMonitor")
    if major < 10:
        monkeypatch.delattr(module, "ExecutionContextAllocationStrategy")
        monkeypatch.setattr(ICudaEngine, "create_execution_context", _create_execution_context_8)
    if tuple(int(p) for p in version.split(".")[:2]) < (10, 1):
        monkeypatch.delattr(ICudaEngine, "device_memory_size_v2")
        monkeypatch.delattr(IExecutionContext, "set_device_memory")
    monkeypatch.setattr(OnnxParser, "refuse_int8_weights", major < 10)
    if major >= 11:
        for flag in ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"):
            monkeypatch.delattr(BuilderFlag, flag)
        monkeypatch.delattr(NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
        monkeypatch.setattr(NetworkDefinitionCreationFlag, "STRONGLY_TYPED",
                            _Member("NetworkDefinitionCreationFlag", "STRONGLY_TYPED", 0))
        monkeypatch.setattr(ILayer, "precision", property(lambda self: self._precision))  # no setter in 11
        monkeypatch.delattr(ILayer, "set_output_type")
        monkeypatch.delattr(ICudaEngine, "create_execution_context_without_device_memory")
        monkeypatch.delattr(ICudaEngine, "device_memory_size")


def install(monkeypatch, version: str = __version__) -> None:
    """This double as ``tensorrt`` (reporting ``version``, with that major's API: ``as_version``) and
    ``recording_pycuda`` as ``pycuda.driver``."""
    import sys
    import types

    from hqsam_edge.runtime import tensorrt_backend

    cuda.reset()
    BUILDS.clear()
    EXECUTIONS.clear()
    module = sys.modules[__name__]
    as_version(monkeypatch, version)
    monkeypatch.setattr(tensorrt_backend, "_PRIMARY_CONTEXTS", {})  # retained per process: a fresh process here
    monkeypatch.setattr(Builder, "num_DLA_cores", 0)
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
