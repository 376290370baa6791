"""ONNX Runtime backend: the exported graphs on the CPU, CUDA or TensorRT execution providers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError
from ..export import contract as C
from .base import Backend, ModelInfo

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def tensorrt_provider_options(cache_dir: Path, *, fp16: bool, max_prompts: int, max_points: int) -> dict[str, Any]:
    """TensorRT EP options: engine and timing caches in the artifact folder, and
    the decoder's profile over P prompts and N points (read from the contract)."""

    from ..export.profiles import decoder_profile

    profile = decoder_profile(max_prompts, max_points)

    def shapes(which: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, dims[which]))}" for name, dims in profile.shapes.items())

    return {
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        "trt_profile_min_shapes": shapes(0),
        "trt_profile_opt_shapes": shapes(1),
        "trt_profile_max_shapes": shapes(2),
    }


class OnnxRuntimeBackend(Backend):
    """Two ``InferenceSession``s; encoder outputs stay as host arrays between the calls.

    ``providers``: names or aliases (cpu, cuda, tensorrt) in order of preference;
    ``None`` picks TensorRT > CUDA > CPU from what this onnxruntime offers.
    ``exact_qdq``: no graph fusions, so Q/DQ graphs run as written
    (dequantized values into float layers): the arithmetic TensorRT's int8
    kernels give up to rounding, instead of ONNX Runtime's x86 integer kernels
    (how INT8 graphs made for TensorRT are checked on a CPU).
    """

    name = "onnxruntime"

    def __init__(self, info: ModelInfo, encoder_path: str | Path, decoder_path: str | Path, *,
                 precision: str = "fp32", providers: list[str] | None = None, threads: int | None = None,
                 max_prompts: int = 64, max_points: int = 16, exact_qdq: bool = False) -> None:
        super().__init__(info)
        self.exact_qdq = exact_qdq
        self.encoder_path, self.decoder_path = Path(encoder_path), Path(decoder_path)
        self.precision = precision
        self.requested_providers = providers
        self.threads = threads
        self.trt_profile = (max_prompts, max_points)  # decoder profile of the TensorRT provider
        self.sessions: dict[str, Any] = {}

    def _providers(self) -> list[Any]:
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = [PROVIDER_ALIASES.get(p, p) for p in (self.requested_providers or [])]
        for name in wanted:
            if name not in available:
                raise BackendUnavailableError(
                    f"onnxruntime has no {name} here (available: {', '.join(available)}); "
                    "for CUDA/TensorRT install onnxruntime-gpu instead of onnxruntime"
                )
        if not wanted:
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
            wanted.append("CPUExecutionProvider")
        result: list[Any] = []
        for name in wanted:
            if name == "TensorrtExecutionProvider":
                opts = tensorrt_provider_options(self.encoder_path.parent, fp16=self.precision == "fp16",
                                                 max_prompts=self.trt_profile[0], max_points=self.trt_profile[1])
                result.append((name, opts))
            else:
                result.append(name)
        return result

    @property
    def device(self) -> str:
        if not self.sessions:
            return "cpu"
        first = self.sessions["encoder"].get_providers()[0]
        return "cpu" if first == "CPUExecutionProvider" else first.replace("ExecutionProvider", "").lower()

    def _activate(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if self.exact_qdq
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if self.threads:
            options.intra_op_num_threads = self.threads
        providers = self._providers()
        try:
            self.sessions = {
                "encoder": ort.InferenceSession(str(self.encoder_path), options, providers=providers),
                "decoder": ort.InferenceSession(str(self.decoder_path), options, providers=providers),
            }
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise BackendUnavailableError(f"onnxruntime cannot load {self.encoder_path.parent}: {exc}") from None

    def _deactivate(self) -> None:
        self.sessions = {}

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.sessions[graph]
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    def encode(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return self._run("encoder", {C.IMAGE.name: image})

    def _decode(self, features: dict[str, np.ndarray], prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run("decoder", {**features, **prompts})

    def features_to_numpy(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(features)
