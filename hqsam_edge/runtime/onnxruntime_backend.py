"""ONNX Runtime backend: the exported graphs on the CPU, CUDA or TensorRT execution providers.

Each graph gets its own session and, under the TensorRT provider, its own
options: its own profile (the encoder's images, the decoder's prompts and
points, from ``export.profiles``), its own engine cache folder, and the
precision flags its graph wants: FP16 for the fp16 graphs, and for INT8 the
Q/DQ encoder laid out for TensorRT (symmetric; ``build --backend onnxruntime
--precision int8 --flavour tensorrt``) with ``trt_int8_enable``, the decoder
in FP16. The ONNX Runtime layout of INT8 (U8 activations, 7-bit weights) is
for the CPU provider; TensorRT would partition those nodes off itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError
from ..export import contract as C
from ..export.profiles import Limits, profile_for
from .base import Backend, ModelInfo

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
GPU_HINT = "for CUDA / TensorRT install onnxruntime-gpu in place of onnxruntime (pip install 'hqsam-edge[gpu]')"
TENSORRT_CACHE = "ort-tensorrt-cache"  # inside the artifact folder: one engine cache per graph and precision


def available_providers() -> list[str]:
    from .environment import require_onnxruntime

    require_onnxruntime()
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(requested: list[str] | None) -> list[str]:
    """Execution provider names in order of preference: the ``requested`` ones (names or aliases cpu, cuda,
    tensorrt), each checked to exist here; ``None``: TensorRT > CUDA > CPU of what this onnxruntime offers."""
    available = available_providers()
    wanted = [PROVIDER_ALIASES.get(p, p) for p in (requested or [])]
    for name in wanted:
        if name not in available:
            raise BackendUnavailableError(f"onnxruntime has no {name} here (available: {', '.join(available)}); "
                                          f"{GPU_HINT}")
    if not wanted:
        wanted = [p for p in (TENSORRT, CUDA) if p in available]
    return wanted + ([CPU] if CPU not in wanted else [])


def tensorrt_provider_options(cache_dir: Path, graph: str, precision: str, limits: Limits) -> dict[str, Any]:
    """TensorRT EP options of one graph's session: its profile, its engine cache, its precision flags."""
    profile = profile_for(graph, limits)
    reduced = precision in ("fp16", "int8")
    return {
        "trt_fp16_enable": reduced,
        "trt_int8_enable": precision == "int8" and graph == "encoder",  # the decoder has no Q/DQ nodes
        "trt_layer_norm_fp32_fallback": reduced,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir / TENSORRT_CACHE / f"{graph}.{precision}"),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir / TENSORRT_CACHE),
        "trt_profile_min_shapes": profile.spec(0),
        "trt_profile_opt_shapes": profile.spec(1),
        "trt_profile_max_shapes": profile.spec(2),
    }


class OnnxRuntimeBackend(Backend):
    """Two ``InferenceSession``s; encoder outputs stay as host arrays between the calls.

    ``providers``: names or aliases (cpu, cuda, tensorrt) in order of preference;
    ``None`` picks TensorRT > CUDA > CPU from what this onnxruntime offers.
    ``limits``: the TensorRT provider's profile bounds (the backend's bounds when it runs under it).
    ``exact_qdq``: no graph fusions, so Q/DQ graphs run as written
    (dequantized values into float layers): the arithmetic TensorRT's int8
    kernels give up to rounding, instead of ONNX Runtime's x86 integer kernels
    (how INT8 graphs made for TensorRT are checked on a CPU).
    """

    name = "onnxruntime"

    def __init__(self, info: ModelInfo, encoder_path: str | Path, decoder_path: str | Path, *,
                 precision: str = "fp32", providers: list[str] | None = None, threads: int | None = None,
                 limits: Limits | None = None, exact_qdq: bool = False) -> None:
        super().__init__(info)
        self.paths = {"encoder": Path(encoder_path), "decoder": Path(decoder_path)}
        self.precision = precision
        self.requested_providers = providers
        self.threads = threads
        self.limits = limits or Limits()
        self.exact_qdq = exact_qdq
        self.sessions: dict[str, Any] = {}

    @property
    def encoder_path(self) -> Path:
        return self.paths["encoder"]

    def session_providers(self, graph: str) -> list[Any]:
        """The providers of one graph's session, the TensorRT provider with that graph's options."""
        folder = self.paths[graph].parent
        return [(name, tensorrt_provider_options(folder, graph, self.precision, self.limits)) if name == TENSORRT
                else name for name in resolve_providers(self.requested_providers)]

    @property
    def device(self) -> str:
        if not self.sessions:
            return "cpu"
        first = self.sessions["encoder"].get_providers()[0]
        return "cpu" if first == CPU else first.replace("ExecutionProvider", "").lower()

    def _activate(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if self.exact_qdq
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self.sessions = {graph: ort.InferenceSession(str(path), options, providers=self.session_providers(graph))
                             for graph, path in self.paths.items()}
        except BackendUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise BackendUnavailableError(f"onnxruntime cannot load {self.encoder_path.parent}: {exc}") from None
        if self.sessions["decoder"].get_providers()[0] == TENSORRT:  # engines built for the profile's bounds
            self.max_prompts, self.max_points = self.limits.max_prompts, self.limits.max_points
        if self.sessions["encoder"].get_providers()[0] == TENSORRT:
            self.max_batch = self.limits.max_batch

    def _deactivate(self) -> None:
        self.sessions = {}

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.sessions[graph]
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    def encode(self, image: np.ndarray) -> dict[str, np.ndarray]:
        self.check_batch(image)
        return self._run("encoder", {C.IMAGE.name: image})

    def _decode(self, features: dict[str, np.ndarray], prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run("decoder", {**features, **prompts})

    def features_to_numpy(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(features)
