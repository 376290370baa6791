"""TensorRT backend through pycuda: engines from an artifact folder, on one GPU.

Lifecycle (``Backend``): ``activate`` makes an explicit CUDA context,
deserialises both engines once, and prepares per-thread state lazily (one
execution context per thread and engine, a non-default stream, device
buffers allocated once at the profile maximum, page-locked host buffers).
``encode`` leaves ``image_embeddings`` / ``hq_features`` on the device; the
decoder reads them from there (no host round trip). Only the decoder's
outputs come back to the host.

Uses the name-based I/O API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) of TensorRT 8.5 and later; ``tensorrt`` and ``pycuda``
are imported only here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ArtifactError, BackendUnavailableError, UsageError
from ..export import contract as C
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
    generation: int = 0  # which set_image the encoder outputs on the device belong to


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, info: ModelInfo, encoder_engine: str | Path, decoder_engine: str | Path, *,
                 precision: str, device_index: int = 0, expected_device: dict[str, str] | None = None) -> None:
        super().__init__(info)
        self.paths = {"encoder": Path(encoder_engine), "decoder": Path(decoder_engine)}
        self.precision = precision
        self.device_index = device_index
        self.expected_device = expected_device or {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0

    # -- lifecycle ------------------------------------------------------------
    def _activate(self) -> None:
        try:
            import pycuda.driver as cuda
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailableError(f"the tensorrt backend needs TensorRT and pycuda ({exc})") from None
        built_with = self.expected_device.get("tensorrt")
        if built_with and built_with != trt.__version__:
            raise ArtifactError(
                f"these engines were built with TensorRT {built_with}, this machine has TensorRT {trt.__version__}: "
                "build them again here with `hqsam-edge build DIR --backend tensorrt` (or build with "
                "--version-compatible to load them with a newer TensorRT)"
            )
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
        self._cuda = cuda
        self._ctx = device.make_context()
        try:
            logger = trt.Logger(trt.Logger.WARNING)
            runtime = trt.Runtime(logger)
            self.engines: dict[str, trt.ICudaEngine] = {}
            for graph, path in self.paths.items():
                engine = runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    raise ArtifactError(
                        f"TensorRT {trt.__version__} cannot load {path.name} (built by another TensorRT version or "
                        "for another GPU?): build it again with `hqsam-edge build DIR --backend tensorrt`"
                    )
                self.engines[graph] = engine
            self._device_name = device.name()
        finally:
            self._ctx.pop()

    def _deactivate(self) -> None:
        self._ctx.push()
        try:
            self._local = threading.local()
            self.engines = {}
        finally:
            self._ctx.pop()
            self._ctx.detach()

    @property
    def device(self) -> str:
        return getattr(self, "_device_name", "cuda")

    # -- per-thread state -----------------------------------------------------
    @staticmethod
    def _io_names(engine: trt.ICudaEngine) -> list[str]:
        return [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]

    @staticmethod
    def _max_shape(engine: trt.ICudaEngine, context: trt.IExecutionContext, name: str) -> tuple[int, ...]:
        import tensorrt as trt

        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            return _shape(engine.get_tensor_profile_shape(name, 0)[2])
        return _shape(context.get_tensor_shape(name))

    def _state(self) -> _ThreadState:
        state = getattr(self._local, "state", None)
        if state is not None:
            return state
        import tensorrt as trt

        cuda = self._cuda
        contexts: dict[str, trt.IExecutionContext] = {}
        buffers: dict[str, _Buffers] = {}
        for graph, engine in self.engines.items():
            context = engine.create_execution_context()
            for name in self._io_names(engine):  # maximum input shapes give the maximum output shapes
                if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    context.set_input_shape(name, _shape(engine.get_tensor_profile_shape(name, 0)[2]))
            bufs = _Buffers()
            for name in self._io_names(engine):
                shape = self._max_shape(engine, context, name)
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                bufs.host[name] = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
                bufs.device[name] = cuda.mem_alloc(max(1, bufs.host[name].nbytes))
            contexts[graph], buffers[graph] = context, bufs
        # The decoder reads the encoder's outputs where the encoder wrote them.
        for spec in C.encoder_outputs(self.info.is_hq):
            buffers["decoder"].device[spec.name] = buffers["encoder"].device[spec.name]
        state = _ThreadState(contexts, buffers, cuda.Stream())
        self._local.state = state
        return state

    def _run(self, graph: str, inputs: dict[str, np.ndarray], fetch: list[str]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        state = self._state()
        engine, context, bufs = self.engines[graph], state.contexts[graph], state.buffers[graph]
        for name, array in inputs.items():
            array = np.ascontiguousarray(array, dtype=bufs.host[name].dtype)
            if array.size > bufs.host[name].size:
                raise UsageError(f"{name} {array.shape} exceeds the engine's profile; build with larger "
                                 "--max-prompts / --max-points")
            host = bufs.host[name][: array.size]
            host[...] = array.ravel()
            cuda.memcpy_htod_async(bufs.device[name], host, state.stream)
            if not context.set_input_shape(name, array.shape):
                raise UsageError(f"{name} {array.shape} is outside the engine's profile")
        for name in self._io_names(engine):
            context.set_tensor_address(name, int(bufs.device[name]))
        if not context.execute_async_v3(state.stream.handle):
            raise UsageError(f"TensorRT failed to run the {graph} engine")
        out = {}
        for name in fetch:
            shape = _shape(context.get_tensor_shape(name))
            host = bufs.host[name][: int(np.prod(shape))]
            cuda.memcpy_dtoh_async(host, bufs.device[name], state.stream)
            out[name] = host
        state.stream.synchronize()
        return {name: np.array(value).reshape(_shape(context.get_tensor_shape(name))) for name, value in out.items()}

    # -- Backend --------------------------------------------------------------
    def encode(self, image: np.ndarray) -> int:
        self._ctx.push()
        try:
            self._run("encoder", {C.IMAGE.name: image}, fetch=[])
            with self._lock:
                self._generation += 1
                self._state().generation = self._generation
                return self._generation
        finally:
            self._ctx.pop()

    def _decode(self, features: int, prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._ctx.push()
        try:
            if self._state().generation != features:
                raise UsageError("the image features on the device belong to another image: call set_image again")
            return self._run("decoder", prompts, fetch=[s.name for s in C.decoder_outputs()])
        finally:
            self._ctx.pop()

    def features_to_numpy(self, features: int) -> dict[str, np.ndarray]:
        cuda = self._cuda
        self._ctx.push()
        try:
            state = self._state()
            context, bufs = state.contexts["encoder"], state.buffers["encoder"]
            out = {}
            for spec in C.encoder_outputs(self.info.is_hq):
                shape = _shape(context.get_tensor_shape(spec.name))
                host = np.empty(shape, dtype=bufs.host[spec.name].dtype)
                cuda.memcpy_dtoh(host, bufs.device[spec.name])
                out[spec.name] = host
            return out
        finally:
            self._ctx.pop()
