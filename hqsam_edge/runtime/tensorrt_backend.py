"""TensorRT backend through pycuda: engines from an artifact folder, on one GPU.

Lifecycle (``Backend``): ``activate`` checks the engines were built for this
TensorRT and GPU, retains the device's *primary* CUDA context (the one the CUDA
runtime, torch and ONNX Runtime use, so they all share it), and deserialises
both engines once under it, with the logger and runtime kept on the backend for
as long as the engines live. The primary context is retained once per device
and process and kept (as ``pycuda.autoprimaryctx`` does): it is what torch and
the CUDA runtime share, and pycuda's ``detach`` leaves it on the driver's
context stack of the thread that calls it.

State is bounded and belongs to no thread: ``activate`` makes ``slots`` slots
(default 1), each an execution context per engine, one stream, device buffers
at the profile maximum, page-locked host buffers only for what crosses to or
from the host (the image, the prompts, the decoder's outputs), and one
activation buffer both contexts share (they run one after the other under the
slot's lock): contexts made with the USER_MANAGED allocation strategy and
``set_device_memory`` on TensorRT 10.1+, ``create_execution_context_without_device_memory``
and ``device_memory`` on 8.x (TensorRT's default would give every context its
own). Any thread takes a slot under its lock: ``encode`` the least recently
used one, ``decode`` the one holding its image's features, so a decode on
another thread than its encode works, and threads that end leave nothing
behind. ``deactivate`` frees the slots, then the engines, with the context
pushed on the calling thread.

``encode`` leaves ``image_embeddings`` / ``hq_features`` on the device; the
decoder reads them from there (no host round trip). Only the decoder's
outputs come back to the host. The engines' profile sets the backend's bounds
(``max_prompts``, ``max_points``, ``max_batch``); ``Backend.decode`` splits
more prompts into several calls.

Version-compatible plans embed TensorRT's lean runtime (host code): they are
loaded with ``engine_host_code_allowed`` only when the manifest records them as
built version-compatible by hqsam-edge, and only where NVIDIA supports them: a
runtime of the same major at least as new, or one major step (8.6 -> 9 / 10,
10 -> 11; ``check_versions``).

Uses the name-based I/O API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) of TensorRT 8.5 and later (builds need 8.6); ``tensorrt`` and ``pycuda``
are imported only here.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ArtifactError, BackendUnavailableError, UsageError
from ..export import contract as C
from ..hardware import version_tuple
from .base import Backend, ModelInfo

if TYPE_CHECKING:  # typed against tensorrt-stubs; imported for real only inside the methods
    import tensorrt as trt


def _shape(dims: trt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


@dataclass
class _Slot:
    """Everything one call needs, used by one thread at a time (``lock``): an execution context per engine, the
    activation memory they share, device buffers for each I/O tensor at the profile maximum (the decoder's feature
    inputs are the encoder's outputs), page-locked host buffers for what crosses to or from the host, a stream, and
    which encode the features on the device belong to."""

    contexts: dict[str, trt.IExecutionContext]
    activations: Any
    device: dict[str, dict[str, Any]]
    host: dict[str, dict[str, np.ndarray]]
    stream: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0  # which encode the encoder outputs on the device belong to (0: none)
    batch: int = 1  # images in that encode (the decoder reads one image's features)
    used: int = 0  # when it was last taken for an encode (least recently used first)


_PRIMARY_CONTEXTS: dict[int, Any] = {}  # device index -> its retained primary context, for the process


def primary_context(cuda, index: int) -> Any:
    """The device's primary CUDA context, retained once and kept for the process."""
    if index not in _PRIMARY_CONTEXTS:
        _PRIMARY_CONTEXTS[index] = cuda.Device(index).retain_primary_context()
    return _PRIMARY_CONTEXTS[index]


def version_compatible_loads(built_with: str, running: str) -> bool:
    """Whether NVIDIA supports a version-compatible plan built with ``built_with`` on ``running``: built with 8.6 or
    newer, and run on the same major at least as new, or one major step on (8 -> 9 / 10, 10 -> 11: "engines built
    with TensorRT 8 work with TensorRT 9 and TensorRT 10 runtimes", "engines built with TensorRT 10 work with
    TensorRT 11"; nothing across two majors)."""
    built, run = version_tuple(built_with), version_tuple(running)
    if not built or not run or built < (8, 6) or run < built:
        return False
    return run[0] == built[0] or (built[0], run[0]) in ((8, 9), (8, 10), (10, 11))


def check_versions(built_with: str, running: str, version_compatible: bool) -> None:
    """``ArtifactError`` unless engines built with TensorRT ``built_with`` load on ``running``: the same version,
    or, for version-compatible plans, what ``version_compatible_loads`` allows."""
    if not built_with or built_with == running:
        return
    if version_compatible and version_compatible_loads(built_with, running):
        return
    hint = ("NVIDIA supports version-compatible plans on a newer TensorRT of the same major or one major step on "
            "(8.6 -> 9 / 10, 10 -> 11), never on an older one" if version_compatible
            else "or build with --version-compatible on the oldest TensorRT that will load them")
    raise ArtifactError(
        f"these engines were built with TensorRT {built_with}, this machine has TensorRT {running}: build them "
        f"again here with `hqsam-edge build DIR --backend tensorrt` ({hint})")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, info: ModelInfo, encoder_engine: str | Path, decoder_engine: str | Path, *,
                 precision: str, device_index: int = 0, expected_device: dict[str, str] | None = None,
                 version_compatible: bool = False, dla_core: int | None = None, slots: int = 1) -> None:
        super().__init__(info)
        if slots < 1:
            raise UsageError(f"slots must be at least 1, not {slots}")
        self.paths = {"encoder": Path(encoder_engine), "decoder": Path(decoder_engine)}
        self.precision = precision
        self.device_index = device_index
        self.expected_device = expected_device or {}
        self.version_compatible = version_compatible
        self.dla_core = dla_core  # the DLA core the encoder was built for (the runtime must load it there)
        self.slot_count = slots  # calls that can run at once; each slot holds one image's features
        self._lock = threading.Lock()  # guards the slots' generations and the counter
        self._slots: list[_Slot] = []
        self._generation = 0

    # -- lifecycle ------------------------------------------------------------
    def _check_device(self) -> Any:
        import pycuda.driver as cuda
        import tensorrt as trt

        check_versions(self.expected_device.get("tensorrt", ""), trt.__version__, self.version_compatible)
        cuda.init()
        device = cuda.Device(self.device_index)
        major, minor = device.compute_capability()
        built_for = self.expected_device.get("compute_capability")
        if built_for and built_for != f"{major}.{minor}":
            raise ArtifactError(
                f"these engines were built for compute capability {built_for} "
                f"({self.expected_device.get('gpu', '?')}), this GPU is {device.name()} ({major}.{minor}): "
                "build them again here with `hqsam-edge build DIR --backend tensorrt`"
            )
        return device

    def _load_engines(self) -> None:
        import tensorrt as trt

        self._logger = trt.Logger(trt.Logger.WARNING)  # the logger and runtime outlive the engines they made
        runtime = trt.Runtime(self._logger)
        self._runtime: trt.Runtime | None = runtime
        if self.dla_core is not None:
            runtime.DLA_core = self.dla_core  # before deserializing, as trtexec does
        if self.version_compatible:
            if not hasattr(runtime, "engine_host_code_allowed"):
                raise BackendUnavailableError(f"TensorRT {trt.__version__} cannot load version-compatible engines "
                                              "(8.6 or newer can)")
            runtime.engine_host_code_allowed = True  # the plans embed the lean runtime
        self.engines: dict[str, trt.ICudaEngine] = {}
        for graph, path in self.paths.items():
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise ArtifactError(
                    f"TensorRT {trt.__version__} cannot load {path.name} (built by another TensorRT version or "
                    "for another GPU?): build it again with `hqsam-edge build DIR --backend tensorrt`"
                )
            self.engines[graph] = engine
        self._set_limits()

    def _set_limits(self) -> None:
        """The backend's bounds from the engines' profiles."""
        decoder, encoder = self.engines["decoder"], self.engines["encoder"]
        coords = self._max_input_shape(decoder, C.POINT_COORDS.name)
        self.max_prompts, self.max_points = coords[0], coords[1]
        self.max_batch = self._max_input_shape(encoder, C.IMAGE.name)[0]

    def _activate(self) -> None:
        try:
            import pycuda.driver as cuda
            import tensorrt  # noqa: F401 - both must import before anything is touched
        except ImportError as exc:
            raise BackendUnavailableError(f"the tensorrt backend needs TensorRT and pycuda ({exc})") from None
        device = self._check_device()
        self._cuda = cuda
        self._ctx = primary_context(cuda, self.device_index)
        self._ctx.push()
        try:
            self._load_engines()
            self._slots = [self._new_slot() for _ in range(self.slot_count)]
        except BaseException:
            self._release()
            raise
        finally:
            cuda.Context.pop()
        self._device_name = device.name()

    def _release(self) -> None:
        """The slots' contexts and buffers, then the engines and runtime: freed while the context is current on this
        thread (its caller pushed it)."""
        with self._lock:
            for slot in self._slots:
                slot.contexts.clear()  # contexts before the memory they run in
                slot.device.clear()
                slot.host.clear()
                slot.activations = slot.stream = None
            self._slots = []
        self.engines = {}
        self._runtime = None
        gc.collect()  # the device frees run now, with the context current

    def _deactivate(self) -> None:
        self._ctx.push()
        try:
            self._release()
        finally:
            self._cuda.Context.pop()

    @property
    def device(self) -> str:
        return getattr(self, "_device_name", "cuda")

    # -- slots ----------------------------------------------------------------
    @staticmethod
    def _io_names(engine: trt.ICudaEngine) -> list[str]:
        return [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]

    @staticmethod
    def _max_input_shape(engine: trt.ICudaEngine, name: str) -> tuple[int, ...]:
        """An input's largest shape: its profile maximum if it is dynamic, else its static shape."""
        static = _shape(engine.get_tensor_shape(name))
        if -1 not in static:
            return static
        return _shape(engine.get_tensor_profile_shape(name, 0)[2])

    @staticmethod
    def _activation_size(engine: trt.ICudaEngine) -> int:
        """Device memory one execution context of ``engine`` needs (the largest over its profiles)."""
        if hasattr(engine, "device_memory_size_v2"):  # 10.1 and later
            return int(engine.device_memory_size_v2)
        return int(engine.device_memory_size)  # 8.x / 10.0 (gone in 11)

    @staticmethod
    def _context_on(engine: trt.ICudaEngine, memory: Any, size: int) -> trt.IExecutionContext:
        """An execution context that runs in ``memory`` (``size`` bytes) instead of allocating its own."""
        import tensorrt as trt

        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        if strategy is not None:  # 10.0 and later
            context = engine.create_execution_context(strategy.USER_MANAGED)
        else:  # 8.x (the call is deprecated in 10 and gone in 11)
            context = engine.create_execution_context_without_device_memory()
        if hasattr(context, "set_device_memory"):  # 10.1 and later
            context.set_device_memory(int(memory), size)
        else:
            setattr(context, "device_memory", int(memory))  # noqa: B010 - write-only property, not in the stubs
        return context

    def _host_names(self, graph: str, engine: trt.ICudaEngine) -> list[str]:
        """The I/O tensors that cross to or from the host: the inputs fed from it and the decoder's outputs (the
        encoder's outputs stay on the device for the decoder)."""
        features = {s.name for s in C.encoder_outputs(self.info.is_hq)}
        return [n for n in self._io_names(engine) if n not in features]

    def _new_slot(self) -> _Slot:
        import tensorrt as trt

        cuda = self._cuda
        size = max(self._activation_size(e) for e in self.engines.values())
        activations = cuda.mem_alloc(max(1, size))  # shared: the slot's contexts run one after the other
        contexts: dict[str, trt.IExecutionContext] = {}
        device: dict[str, dict[str, Any]] = {}
        host: dict[str, dict[str, np.ndarray]] = {}
        for graph, engine in self.engines.items():
            context = self._context_on(engine, activations, size)
            inputs = [n for n in self._io_names(engine) if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            for name in inputs:  # maximum input shapes give the maximum output shapes
                context.set_input_shape(name, self._max_input_shape(engine, name))
            device[graph], host[graph] = {}, {}
            crossing = self._host_names(graph, engine)
            for name in self._io_names(engine):
                if graph == "decoder" and name not in crossing:
                    continue  # the encoder's output buffer, below
                shape = (self._max_input_shape(engine, name) if name in inputs
                         else _shape(context.get_tensor_shape(name)))
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                device[graph][name] = cuda.mem_alloc(max(1, int(np.prod(shape)) * dtype.itemsize))
                if name in crossing:
                    host[graph][name] = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            contexts[graph] = context
        for spec in C.encoder_outputs(self.info.is_hq):  # the decoder reads the encoder's outputs where they are
            device["decoder"][spec.name] = device["encoder"][spec.name]
        return _Slot(contexts, activations, device, host, cuda.Stream())

    def _slot_for_encode(self) -> _Slot:
        """A slot, locked: a free one used least recently, else the least recently used once it is free."""
        with self._lock:
            slots = sorted(self._slots, key=lambda s: s.used)
        for slot in slots:
            if slot.lock.acquire(blocking=False):
                return slot
        slots[0].lock.acquire()
        return slots[0]

    def _slot_of(self, features: int) -> _Slot:
        """The slot holding the encode ``features`` names, locked; ``UsageError`` if no slot holds it any more."""
        with self._lock:
            slot = next((s for s in self._slots if s.generation == features), None)
        if slot is not None:
            slot.lock.acquire()
            if slot.generation == features:
                return slot
            slot.lock.release()
        raise UsageError("the image features on the device belong to another image (a later set_image replaced "
                         "them): call set_image again")

    def _run(self, slot: _Slot, graph: str, inputs: dict[str, np.ndarray], fetch: list[str]) -> dict[str, np.ndarray]:
        """One engine call in ``slot`` (locked by the caller, the CUDA context pushed)."""
        cuda = self._cuda
        engine, context = self.engines[graph], slot.contexts[graph]
        device, host = slot.device[graph], slot.host[graph]
        for name, array in inputs.items():
            array = np.ascontiguousarray(array, dtype=host[name].dtype)
            if array.size > host[name].size or not context.set_input_shape(name, array.shape):
                raise UsageError(f"{name} {array.shape} is outside the engine's profile; build with larger "
                                 "--max-prompts / --max-points / --max-batch")
            staged = host[name][: array.size]
            staged[...] = array.ravel()
            cuda.memcpy_htod_async(device[name], staged, slot.stream)
        for name in self._io_names(engine):
            context.set_tensor_address(name, int(device[name]))
        if not context.execute_async_v3(slot.stream.handle):
            raise UsageError(f"TensorRT failed to run the {graph} engine")
        out = {}
        for name in fetch:
            shape = _shape(context.get_tensor_shape(name))
            staged = host[name][: int(np.prod(shape))]
            cuda.memcpy_dtoh_async(staged, device[name], slot.stream)
            out[name] = (staged, shape)
        slot.stream.synchronize()  # the activation memory is free again for the slot's other context
        return {name: np.array(staged).reshape(shape) for name, (staged, shape) in out.items()}

    # -- Backend --------------------------------------------------------------
    def encode(self, image: np.ndarray) -> int:
        self.check_batch(image)
        slot = self._slot_for_encode()
        try:
            with self._lock:
                slot.generation = 0  # until this encode has finished, the slot holds no image's features
                self._generation += 1
                generation = slot.used = self._generation
            self._ctx.push()
            try:
                self._run(slot, "encoder", {C.IMAGE.name: image}, fetch=[])
            finally:
                self._cuda.Context.pop()
            with self._lock:
                slot.generation, slot.batch = generation, int(image.shape[0])
            return generation
        finally:
            slot.lock.release()

    def _decode(self, features: int, prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        slot = self._slot_of(features)
        try:
            if slot.batch != 1:
                raise UsageError(f"the features on the device are of {slot.batch} images; the decoder takes one "
                                 "image's: encode one image to decode its prompts")
            self._ctx.push()
            try:
                return self._run(slot, "decoder", prompts, fetch=[s.name for s in C.decoder_outputs()])
            finally:
                self._cuda.Context.pop()
        finally:
            slot.lock.release()

    def features_to_numpy(self, features: int) -> dict[str, np.ndarray]:
        cuda = self._cuda
        slot = self._slot_of(features)
        try:
            self._ctx.push()
            try:
                context, device = slot.contexts["encoder"], slot.device["encoder"]
                out = {}
                for spec in C.encoder_outputs(self.info.is_hq):
                    shape = _shape(context.get_tensor_shape(spec.name))
                    dtype = np.dtype(trt_nptype(self.engines["encoder"], spec.name))
                    array = np.empty(shape, dtype=dtype)
                    cuda.memcpy_dtoh(array, device[spec.name])
                    out[spec.name] = array
                return out
            finally:
                cuda.Context.pop()
        finally:
            slot.lock.release()


def trt_nptype(engine: trt.ICudaEngine, name: str) -> type:
    """The numpy type of one of ``engine``'s I/O tensors."""
    import tensorrt as trt

    return trt.nptype(engine.get_tensor_dtype(name))
