"""TensorRT backend through pycuda: engines from an artifact folder, on one GPU.

Lifecycle (``Backend``): ``activate`` checks the engines were built for this
TensorRT and GPU, retains the device's *primary* CUDA context (the one the CUDA
runtime, torch and ONNX Runtime use, so they all share it), and deserialises
both engines once under it, with the logger and runtime kept on the backend for
as long as the engines live. The primary context is retained once per device
and process and kept (as ``pycuda.autoprimaryctx`` does): it is what torch and
the CUDA runtime share, and pycuda's ``detach`` leaves it on the driver's
context stack of the thread that calls it. Each thread that runs the engines
gets its own state lazily (an execution context per engine, a stream, device
buffers at the profile maximum, page-locked host buffers), recorded in one
registry; ``deactivate`` frees every thread's state, then the engines, with
the context pushed on the calling thread.

``encode`` leaves ``image_embeddings`` / ``hq_features`` on the device; the
decoder reads them from there (no host round trip). Only the decoder's
outputs come back to the host. The engines' profile sets the backend's bounds
(``max_prompts``, ``max_points``, ``max_batch``); ``Backend.decode`` splits
more prompts into several calls.

Version-compatible plans embed TensorRT's lean runtime (host code): they are
loaded with ``engine_host_code_allowed`` only when the manifest records them as
built version-compatible by hqsam-edge, and on a TensorRT at least as new as
the one that built them (8.6 or newer).

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
class _Buffers:
    """Device and page-locked host memory for each I/O tensor of one engine, sized at the profile maximum."""

    device: dict[str, Any] = field(default_factory=dict)
    host: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _ThreadState:
    contexts: dict[str, trt.IExecutionContext]
    buffers: dict[str, _Buffers]
    stream: Any
    generation: int = 0  # which encode the encoder outputs on the device belong to
    batch: int = 1  # images in that encode (the decoder reads one image's features)


_PRIMARY_CONTEXTS: dict[int, Any] = {}  # device index -> its retained primary context, for the process


def primary_context(cuda, index: int) -> Any:
    """The device's primary CUDA context, retained once and kept for the process."""
    if index not in _PRIMARY_CONTEXTS:
        _PRIMARY_CONTEXTS[index] = cuda.Device(index).retain_primary_context()
    return _PRIMARY_CONTEXTS[index]


def check_versions(built_with: str, running: str, version_compatible: bool) -> None:
    """``ArtifactError`` unless engines built with TensorRT ``built_with`` load on ``running``: the same version,
    or, for version-compatible plans (8.6+), a runtime at least as new."""
    if not built_with or built_with == running:
        return
    if version_compatible and version_tuple(built_with) >= (8, 6) and version_tuple(running) >= version_tuple(built_with):
        return
    hint = ("version-compatible plans load only on the TensorRT that built them or a newer one"
            if version_compatible else "or build with --version-compatible on the oldest TensorRT that will load them")
    raise ArtifactError(
        f"these engines were built with TensorRT {built_with}, this machine has TensorRT {running}: build them "
        f"again here with `hqsam-edge build DIR --backend tensorrt` ({hint})")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, info: ModelInfo, encoder_engine: str | Path, decoder_engine: str | Path, *,
                 precision: str, device_index: int = 0, expected_device: dict[str, str] | None = None,
                 version_compatible: bool = False, dla_core: int | None = None) -> None:
        super().__init__(info)
        self.paths = {"encoder": Path(encoder_engine), "decoder": Path(decoder_engine)}
        self.precision = precision
        self.device_index = device_index
        self.expected_device = expected_device or {}
        self.version_compatible = version_compatible
        self.dla_core = dla_core  # the DLA core the encoder was built for (the runtime must load it there)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._states: list[_ThreadState] = []  # every thread's state, freed together in deactivate
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
        except BaseException:
            self._release()
            raise
        finally:
            cuda.Context.pop()
        self._device_name = device.name()

    def _release(self) -> None:
        """Every thread's contexts and buffers, then the engines and runtime: freed while the context is current
        on this thread (its caller pushed it)."""
        with self._lock:
            for state in self._states:
                state.contexts.clear()
                state.buffers.clear()
                state.stream = None
            self._states.clear()
        self._local = threading.local()
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

    # -- per-thread state -----------------------------------------------------
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

    def _new_state(self) -> _ThreadState:
        import tensorrt as trt

        cuda = self._cuda
        contexts: dict[str, trt.IExecutionContext] = {}
        buffers: dict[str, _Buffers] = {}
        for graph, engine in self.engines.items():
            context = engine.create_execution_context()
            inputs = [n for n in self._io_names(engine) if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            for name in inputs:  # maximum input shapes give the maximum output shapes
                context.set_input_shape(name, self._max_input_shape(engine, name))
            bufs = _Buffers()
            for name in self._io_names(engine):
                shape = (self._max_input_shape(engine, name) if name in inputs
                         else _shape(context.get_tensor_shape(name)))
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                bufs.host[name] = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
                bufs.device[name] = cuda.mem_alloc(max(1, bufs.host[name].nbytes))
            contexts[graph], buffers[graph] = context, bufs
        # The decoder reads the encoder's outputs where the encoder wrote them.
        for spec in C.encoder_outputs(self.info.is_hq):
            buffers["decoder"].device[spec.name] = buffers["encoder"].device[spec.name]
        return _ThreadState(contexts, buffers, cuda.Stream())

    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._new_state()
            with self._lock:
                self._states.append(state)
            self._local.state = state
        return state

    def _run(self, graph: str, inputs: dict[str, np.ndarray], fetch: list[str]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        state = self._state()
        engine, context, bufs = self.engines[graph], state.contexts[graph], state.buffers[graph]
        for name, array in inputs.items():
            array = np.ascontiguousarray(array, dtype=bufs.host[name].dtype)
            if array.size > bufs.host[name].size or not context.set_input_shape(name, array.shape):
                raise UsageError(f"{name} {array.shape} is outside the engine's profile; build with larger "
                                 "--max-prompts / --max-points / --max-batch")
            host = bufs.host[name][: array.size]
            host[...] = array.ravel()
            cuda.memcpy_htod_async(bufs.device[name], host, state.stream)
        for name in self._io_names(engine):
            context.set_tensor_address(name, int(bufs.device[name]))
        if not context.execute_async_v3(state.stream.handle):
            raise UsageError(f"TensorRT failed to run the {graph} engine")
        out = {}
        for name in fetch:
            shape = _shape(context.get_tensor_shape(name))
            host = bufs.host[name][: int(np.prod(shape))]
            cuda.memcpy_dtoh_async(host, bufs.device[name], state.stream)
            out[name] = (host, shape)
        state.stream.synchronize()
        return {name: np.array(host).reshape(shape) for name, (host, shape) in out.items()}

    # -- Backend --------------------------------------------------------------
    def encode(self, image: np.ndarray) -> int:
        self.check_batch(image)
        self._ctx.push()
        try:
            self._run("encoder", {C.IMAGE.name: image}, fetch=[])
            state = self._state()  # outside the lock: making a thread's state takes it
            with self._lock:
                self._generation += 1
                state.generation, state.batch = self._generation, int(image.shape[0])
                return self._generation
        finally:
            self._cuda.Context.pop()

    def _decode(self, features: int, prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._ctx.push()
        try:
            state = self._check_features(features)
            if state.batch != 1:
                raise UsageError(f"the features on the device are of {state.batch} images; the decoder takes one "
                                 "image's: encode one image to decode its prompts")
            return self._run("decoder", prompts, fetch=[s.name for s in C.decoder_outputs()])
        finally:
            self._cuda.Context.pop()

    def _check_features(self, features: int) -> _ThreadState:
        """This thread's state, if its device buffers still hold the encode ``features`` names."""
        state = self._state()
        if state.generation != features:
            raise UsageError("the image features on the device belong to another image (or were encoded on "
                             "another thread): call set_image again")
        return state

    def features_to_numpy(self, features: int) -> dict[str, np.ndarray]:
        cuda = self._cuda
        self._ctx.push()
        try:
            state = self._check_features(features)
            context, bufs = state.contexts["encoder"], state.buffers["encoder"]
            out = {}
            for spec in C.encoder_outputs(self.info.is_hq):
                shape = _shape(context.get_tensor_shape(spec.name))
                host = np.empty(shape, dtype=bufs.host[spec.name].dtype)
                cuda.memcpy_dtoh(host, bufs.device[spec.name])
                out[spec.name] = host
            return out
        finally:
            cuda.Context.pop()
