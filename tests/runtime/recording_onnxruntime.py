"""A stand-in for onnxruntime-gpu's ``InferenceSession``: what ONNX Runtime does with a provider list, on the CPU.

No GPU provider can start here, so ``install`` replaces ``onnxruntime.InferenceSession`` and
``get_available_providers`` with a model of what onnxruntime-gpu does with them (ONNX Runtime's
``onnxruntime_inference_collection.py`` and ``onnxruntime_pybind_state.cc``, the TensorRT provider's
constructor), running the graphs with the real CPU session underneath:

- a compiled-in provider whose libraries do not load (``Machine.tensorrt_loads`` / ``cuda_loads`` False) is
  dropped with a logged "Failed to create ..." (``LOG``), and the session runs on the others;
- the TensorRT provider's constructor makes ``trt_engine_cache_path`` and ``trt_timing_cache_path`` with a
  non-recursive create and throws ``RuntimeError("Failed to create directory ...")`` when a parent is missing;
  the Python wrapper then prints its "EP Error ... Falling back" banner and retries once on
  ``[CUDA, CPU]`` when both TensorRT and CUDA were asked for, else on ``[CPU]``;
- ``session.disable_cpu_ep_fallback`` = 1 with the CPU provider in the list is refused, as ONNX Runtime does;
- ``get_providers()`` lists what runs, the CPU provider always last; ``OPENED`` records every session made with
  the providers and options it was given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@dataclass
class Machine:
    compiled_in: list[str] = field(default_factory=lambda: [TENSORRT, CUDA, CPU])
    tensorrt_loads: bool = True  # libnvinfer found (pip TensorRT: only after `import tensorrt`)
    cuda_loads: bool = True


@dataclass
class Opened:
    path: str
    providers: list[str]  # asked for
    options: dict[str, dict[str, Any]]
    ran: list[str]  # get_providers()


MACHINE = Machine()
OPENED: list[Opened] = []
LOG: list[str] = []


def _name_and_options(entry: Any) -> tuple[str, dict[str, Any]]:
    return (entry[0], dict(entry[1])) if isinstance(entry, tuple) else (entry, {})


def _tensorrt_constructor(options: dict[str, Any]) -> None:
    """The TensorRT provider's constructor: its cache folders made one level at a time."""
    for enabled, key in (("trt_engine_cache_enable", "trt_engine_cache_path"),
                         ("trt_timing_cache_enable", "trt_timing_cache_path")):
        path = options.get(key)
        if options.get(enabled) and path and not os.path.isdir(path):
            try:
                os.mkdir(path)  # std::filesystem::create_directory: no parents
            except OSError:
                raise RuntimeError(f"Failed to create directory {path}") from None


class InferenceSession:
    def __init__(self, path: str, sess_options: Any = None, providers: list[Any] | None = None, **kwargs: Any) -> None:
        from onnxruntime.capi.onnxruntime_inference_collection import InferenceSession as Real

        entries = [_name_and_options(p) for p in (providers or [CPU])]
        self._path, self._options = str(path), sess_options
        try:
            ran = self._create(entries)
        except RuntimeError as exc:  # the Python wrapper's fallback, once
            names = [n for n, _ in entries]
            fallback = [CUDA, CPU] if TENSORRT in names and CUDA in names else [CPU]
            print("*************** EP Error ***************")
            print(f"EP Error {exc} when using {names}")
            print(f"Falling back to {fallback} and retrying.")
            ran = self._create([e for e in entries if e[0] in fallback] + ([(CPU, {})] if CPU not in names else []))
        self._providers = ran
        OPENED.append(Opened(self._path, [n for n, _ in entries], {n: o for n, o in entries}, ran))
        self._session = Real(self._path, sess_options, providers=[CPU])

    def _create(self, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
        names = [n for n, _ in entries]
        if CPU in names and self._config("session.disable_cpu_ep_fallback") == "1":
            raise RuntimeError("session.disable_cpu_ep_fallback is set, so the CPU provider cannot be added")
        ran = []
        for name, options in entries:
            if name not in MACHINE.compiled_in:
                LOG.append(f"Specified provider '{name}' is not in available provider names")
                continue
            loads = {TENSORRT: MACHINE.tensorrt_loads, CUDA: MACHINE.cuda_loads}.get(name, True)
            if not loads:
                LOG.append(f"Failed to create {name}. Please reference https://onnxruntime.ai/docs/execution-providers")
                continue
            if name == TENSORRT:
                _tensorrt_constructor(options)
            ran.append(name)
        return ran if CPU in ran else [*ran, CPU]

    def _config(self, key: str) -> str | None:
        try:
            return self._options.get_session_config_entry(key) if self._options is not None else None
        except RuntimeError:
            return None

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_inputs(self) -> Any:
        return self._session.get_inputs()

    def get_outputs(self) -> Any:
        return self._session.get_outputs()

    def run(self, output_names: Any, feeds: dict[str, Any]) -> Any:
        return self._session.run(output_names, feeds)


def install(monkeypatch, *, tensorrt_version: str | None = "10.13.0.35", **machine: Any) -> Machine:
    """This model as onnxruntime's session and provider list (``machine``: ``Machine``'s fields); TensorRT's Python
    module importable as ``tensorrt_version`` (None: not installed) for the backend's library check."""
    import sys
    import types

    import onnxruntime as ort

    MACHINE.__init__(**machine)  # type: ignore[misc]
    OPENED.clear()
    LOG.clear()
    monkeypatch.setattr(ort, "InferenceSession", InferenceSession)
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(MACHINE.compiled_in))
    if tensorrt_version is None:
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    else:
        fake = types.ModuleType("tensorrt")
        fake.__version__ = tensorrt_version  # type: ignore[attr-defined]
        fake.Builder = object  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return MACHINE
