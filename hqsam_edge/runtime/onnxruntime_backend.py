"""ONNX Runtime backend: the exported graphs on the CPU, CUDA or TensorRT execution providers.

Each graph gets its own session. A request is what runs, or it fails saying so:
ONNX Runtime drops a provider it cannot create (a log line) and retries a session
whose TensorRT provider throws on the CPU (a banner on stdout), so after making the
sessions the provider each one actually runs on (``get_providers()[0]``) is compared
with the request; an explicit request that did not start is ``BackendUnavailableError``
naming what ran, an automatic choice moves on to the next provider.

Under the TensorRT provider each graph gets its own profile (``export.profiles``), its
own engine cache folder (made before the session: the provider creates it with a
non-recursive create and throws otherwise), and no precision flag: the graph carries
its precision, and without ``trt_fp16_enable`` / ``trt_int8_enable`` the provider
builds TensorRT 9+ networks strongly typed, so the FP16 graphs' FP32 islands (norms,
softmax) hold as in the native engines (the flags would build weakly typed, the
islands mere hints, and ``trt_layer_norm_fp32_fallback`` matches no
``LayerNormalization``). So FP16 runs the FP16 graphs; INT8 runs the Q/DQ encoder laid
out for TensorRT (``build --backend onnxruntime --precision int8 --graphs-for tensorrt``)
with the FP16 decoder when the folder has it; the ONNX Runtime layout of INT8 (U8
activations) is for CUDA and the CPU, and TensorRT is tried for INT8 only with the
TensorRT layout. TensorRT 8.x has no strongly typed networks: FP16 / INT8 are refused
there. "fp32" is not offered under the TensorRT provider (its engines keep TF32 on and
no option clears it); the CUDA provider runs with ``use_tf32=0`` so fp32 means fp32.

"Available" means more than ONNX Runtime's compiled-in list: its TensorRT provider
needs TensorRT's libraries, which pip's TensorRT wheels load only on ``import
tensorrt``, so that import comes first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, UsageError
from ..export import contract as C
from ..export.profiles import Limits, profile_for
from .base import Backend, ModelInfo

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
GPU_HINT = "for CUDA / TensorRT install onnxruntime-gpu in place of onnxruntime (pip install 'hqsam-edge[gpu]')"
TENSORRT_CACHE = "ort-tensorrt-cache"  # inside the artifact folder: one engine cache per graph and precision
TF32_REFUSAL = ("fp32 under ONNX Runtime's TensorRT provider would be TF32 (TensorRT turns TF32 on and the provider "
                "has no option to clear it): use --precision fp16 / int8 there, the CUDA provider (--providers cuda) "
                "for fp32, or the native engines (--backend tensorrt), built with TF32 off")


def available_providers() -> list[str]:
    """ONNX Runtime's compiled-in providers (what it could run, not what will start)."""
    from .environment import require_onnxruntime

    require_onnxruntime()
    import onnxruntime as ort

    return list(ort.get_available_providers())


def tensorrt_libraries() -> tuple[bool, str]:
    """``(True, version)`` when TensorRT's Python module imports (which loads pip TensorRT's libraries for the
    provider), ``(False, why)`` when it does not."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return False, f"TensorRT is not installed ({exc})"
    except Exception as exc:  # noqa: BLE001 - a broken install says why
        return False, f"TensorRT failed to import ({exc})"
    if not hasattr(trt, "Builder"):
        return False, "only TensorRT type stubs are installed, not TensorRT"
    return True, str(getattr(trt, "__version__", "?"))


def _check_tensorrt_precision(precision: str | None, version: str) -> str | None:
    """Why ``precision`` cannot run as built under the TensorRT provider on TensorRT ``version``; None if it can."""
    from ..hardware import version_tuple

    if precision == "fp32":
        return TF32_REFUSAL
    if precision in ("fp16", "int8") and version_tuple(version)[:1] and version_tuple(version) < (9,):
        return (f"ONNX Runtime's TensorRT provider builds the {precision} graphs strongly typed only on TensorRT 9 "
                f"and later; TensorRT {version} would take their FP32 islands as hints: use the native engines "
                "(--backend tensorrt), which pin them, or the CUDA provider")
    return None


def resolve_providers(requested: list[str] | None, precision: str | None = None) -> list[str]:
    """Execution providers in order of preference.

    ``requested`` (names or aliases cpu, cuda, tensorrt): each must be compiled in and, for TensorRT, its libraries
    must load and ``precision`` must run as built there (else ``BackendUnavailableError`` / ``UsageError``); a request
    for TensorRT runs TensorRT, then CUDA (when compiled in) for the nodes TensorRT does not take, then the CPU.
    ``None``: TensorRT (when it loads and ``precision`` runs there) > CUDA > CPU of what this onnxruntime offers.
    """
    available = available_providers()
    wanted = [PROVIDER_ALIASES.get(p, p) for p in (requested or [])]
    for name in wanted:
        if name not in available:
            raise BackendUnavailableError(f"onnxruntime has no {name} here (available: {', '.join(available)}); "
                                          f"{GPU_HINT}")
    if TENSORRT in wanted:
        loads, detail = tensorrt_libraries()
        if not loads:
            from ..hardware import TENSORRT_HINT

            raise BackendUnavailableError(f"onnxruntime's TensorRT provider needs TensorRT's libraries, which do not "
                                          f"load here: {detail}; {TENSORRT_HINT}")
        why = _check_tensorrt_precision(precision, detail)
        if why:
            raise UsageError(why)
        if wanted[0] == TENSORRT and CUDA in available and CUDA not in wanted:
            wanted.insert(1, CUDA)
    if not wanted:
        wanted = [CUDA] if CUDA in available else []
        if TENSORRT in available:
            loads, detail = tensorrt_libraries()
            if loads and _check_tensorrt_precision(precision, detail) is None:
                wanted.insert(0, TENSORRT)
    return wanted + ([CPU] if CPU not in wanted else [])


def tensorrt_cache_dir(folder: Path, graph: str, precision: str) -> Path:
    """The TensorRT provider's engine cache folder of one graph and precision."""
    return folder / TENSORRT_CACHE / f"{graph}.{precision}"


def tensorrt_provider_options(cache_dir: Path, graph: str, precision: str, limits: Limits) -> dict[str, Any]:
    """TensorRT EP options of one graph's session: its profile, its engine cache, and no precision flag (the graph
    carries its precision; without the flags the provider builds strongly typed)."""
    profile = profile_for(graph, limits)
    return {
        "trt_fp16_enable": False,
        "trt_int8_enable": False,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tensorrt_cache_dir(cache_dir, graph, precision)),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir / TENSORRT_CACHE),
        "trt_profile_min_shapes": profile.spec(0),
        "trt_profile_opt_shapes": profile.spec(1),
        "trt_profile_max_shapes": profile.spec(2),
    }


CUDA_OPTIONS = {"use_tf32": "0"}  # TF32 is on by default in the CUDA provider: the graphs' precision, not TF32


class OnnxRuntimeBackend(Backend):
    """Two ``InferenceSession``s; encoder outputs stay as host arrays between the calls.

    ``providers``: names or aliases (cpu, cuda, tensorrt) in order of preference, each of which must run;
    ``None`` picks TensorRT > CUDA > CPU of what runs here (``resolve_providers``).
    ``tensorrt_graphs``: ``(encoder, decoder)`` run when the TensorRT provider runs (INT8: the Q/DQ encoder laid out
    for TensorRT); an INT8 backend without them leaves TensorRT out.
    ``limits``: the TensorRT provider's profile bounds (the backend's bounds when it runs under it).
    ``exact_qdq``: no graph fusions, so Q/DQ graphs run as written
    (dequantized values into float layers): the arithmetic TensorRT's int8
    kernels give up to rounding, instead of ONNX Runtime's x86 integer kernels
    (how INT8 graphs made for TensorRT are checked on a CPU).
    """

    name = "onnxruntime"

    def __init__(self, info: ModelInfo, encoder_path: str | Path, decoder_path: str | Path, *,
                 precision: str = "fp32", providers: list[str] | None = None, threads: int | None = None,
                 limits: Limits | None = None, exact_qdq: bool = False,
                 tensorrt_graphs: tuple[str | Path, str | Path] | None = None) -> None:
        super().__init__(info)
        self.paths = {"encoder": Path(encoder_path), "decoder": Path(decoder_path)}
        self.tensorrt_paths = ({"encoder": Path(tensorrt_graphs[0]), "decoder": Path(tensorrt_graphs[1])}
                               if tensorrt_graphs else None)
        self.precision = precision
        self.requested_providers = providers
        self.threads = threads
        self.limits = limits or Limits()
        self.exact_qdq = exact_qdq
        self.sessions: dict[str, Any] = {}

    @property
    def encoder_path(self) -> Path:
        return self.paths["encoder"]

    def wanted_providers(self) -> list[str]:
        """The providers the sessions are made with (``resolve_providers`` for this precision); INT8 without the
        TensorRT layout leaves TensorRT out."""
        wanted = resolve_providers(self.requested_providers, self.precision)
        if TENSORRT in wanted and self.precision == "int8" and self.tensorrt_paths is None:
            if self.requested_providers:
                raise BackendUnavailableError("ONNX Runtime's TensorRT provider runs INT8 from the Q/DQ graph laid out "
                                              "for TensorRT (build --backend onnxruntime --precision int8 --graphs-for "
                                              "tensorrt)")
            wanted.remove(TENSORRT)
        return wanted

    def session_providers(self, graph: str, wanted: list[str] | None = None) -> list[Any]:
        """The providers of one graph's session, TensorRT and CUDA with that graph's options."""
        folder = self.paths[graph].parent
        options = {TENSORRT: lambda: tensorrt_provider_options(folder, graph, self.precision, self.limits),
                   CUDA: lambda: dict(CUDA_OPTIONS)}
        return [(name, options[name]()) if name in options else name
                for name in (wanted if wanted is not None else self.wanted_providers())]

    @property
    def providers(self) -> dict[str, list[str]]:
        """What each graph's session runs on (``get_providers()``: the first takes what it can, the next the rest)."""
        return {graph: list(session.get_providers()) for graph, session in self.sessions.items()}

    @property
    def device(self) -> str:
        if not self.sessions:
            return "cpu"
        first = self.sessions["encoder"].get_providers()[0]
        return "cpu" if first == CPU else first.replace("ExecutionProvider", "").lower()

    def _options(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if self.exact_qdq
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if self.threads:
            options.intra_op_num_threads = self.threads
        return options

    def _open(self, paths: dict[str, Path], wanted: list[str]) -> dict[str, Any]:
        """One session per graph on ``wanted``; the TensorRT provider's cache folders made first."""
        import onnxruntime as ort

        if TENSORRT in wanted:
            for graph in paths:
                tensorrt_cache_dir(self.paths[graph].parent, graph, self.precision).mkdir(parents=True, exist_ok=True)
        options = self._options()
        try:
            return {graph: ort.InferenceSession(str(path), options, providers=self.session_providers(graph, wanted))
                    for graph, path in paths.items()}
        except BackendUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise BackendUnavailableError(f"onnxruntime cannot load {self.encoder_path.parent}: {exc}") from None

    def _activate(self) -> None:
        wanted = self.wanted_providers()
        if TENSORRT in wanted:
            sessions = self._open(self.tensorrt_paths or self.paths, wanted)
            ran = {graph: s.get_providers()[0] for graph, s in sessions.items()}
            if set(ran.values()) == {TENSORRT}:
                self.sessions, self.max_batch = sessions, self.limits.max_batch
                self.max_prompts, self.max_points = self.limits.max_prompts, self.limits.max_points
                return
            if self.requested_providers:
                self._refuse(TENSORRT, ran)
            wanted = [p for p in wanted if p != TENSORRT]  # automatic: the next provider, with the ORT layout
        sessions = self._open(self.paths, wanted)
        ran = {graph: s.get_providers()[0] for graph, s in sessions.items()}
        if self.requested_providers and set(ran.values()) != {wanted[0]}:
            self._refuse(wanted[0], ran)
        self.sessions = sessions

    @staticmethod
    def _refuse(requested: str, ran: dict[str, str]) -> None:
        what = ", ".join(f"the {graph} on {provider}" for graph, provider in ran.items())
        raise BackendUnavailableError(
            f"onnxruntime's {requested} did not start ({what}; ONNX Runtime's log above says why): fix that, or ask "
            "for the provider that runs (--providers cuda / cpu)")

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
