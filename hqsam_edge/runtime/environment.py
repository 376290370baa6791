"""What this machine can run: library versions, backends, devices, and why not.

Everything is probed lazily and defensively: a missing optional library is a
row saying so (with the install hint), never an import error.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hardware import TENSORRT_HINT
from ..hardware import module_version as _version


@dataclass(frozen=True)
class BackendStatus:
    name: str
    usable: bool
    detail: str  # version and devices when usable, else why not and how to fix


def torch_status() -> BackendStatus:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return BackendStatus("torch", True, f"torch {torch.__version__}; CPU and CUDA ({names})")
    why = "no CUDA device visible" if torch.version.cuda else "CPU-only build of torch"
    return BackendStatus("torch", True, f"torch {torch.__version__}; CPU only ({why})")


ONNXRUNTIME_HINT = ("install ONNX Runtime: pip install 'hqsam-edge[cpu]' (onnxruntime) or 'hqsam-edge[gpu]' "
                    "(onnxruntime-gpu, for CUDA / TensorRT; never both)")


def onnxruntime_status() -> BackendStatus:
    try:
        import onnxruntime as ort
    except ImportError:
        return BackendStatus("onnxruntime", False, f"onnxruntime is not installed: {ONNXRUNTIME_HINT}")
    providers = ort.get_available_providers()
    return BackendStatus("onnxruntime", True, f"onnxruntime {ort.__version__}; providers {', '.join(providers)}")


def tensorrt_status() -> BackendStatus:
    try:
        import tensorrt as trt
    except ImportError as exc:
        return BackendStatus("tensorrt", False, f"TensorRT is not installed ({exc}); {TENSORRT_HINT}")
    except Exception as exc:  # noqa: BLE001 - a broken install says why
        return BackendStatus("tensorrt", False, f"TensorRT failed to import: {exc}")
    if not hasattr(trt, "Builder"):  # e.g. only `tensorrt-stubs` (type stubs) is installed
        return BackendStatus("tensorrt", False,
                             f"only TensorRT type stubs are installed, not TensorRT; {TENSORRT_HINT}")
    try:
        import pycuda.driver as cuda

        cuda.init()
        count = cuda.Device.count()
    except ImportError:
        return BackendStatus("tensorrt", False, f"TensorRT {trt.__version__} found, but pycuda is not: {TENSORRT_HINT}")
    except Exception as exc:  # noqa: BLE001 - no driver, no device
        return BackendStatus("tensorrt", False, f"TensorRT {trt.__version__} found, but no CUDA device: {exc}")
    if count == 0:
        return BackendStatus("tensorrt", False, f"TensorRT {trt.__version__} found, but no CUDA device")
    why = builder_failure(trt, cuda)
    if why:
        return BackendStatus("tensorrt", False, why)
    names = ", ".join(cuda.Device(i).name() for i in range(count))
    return BackendStatus("tensorrt", True, f"TensorRT {trt.__version__}; {names}")


_BUILDER_CHECKED: dict[tuple[int, int], str] = {}  # (tensorrt module, pycuda module) -> why not ("" usable)


def builder_failure(trt, cuda) -> str:  # noqa: ANN001 - the modules
    """Why TensorRT cannot make a ``trt.Builder`` here ("" when it can), checked once per process.

    pycuda may work on a driver too old for the CUDA TensorRT was built with; TensorRT then fails to initialise CUDA
    and ``trt.Builder`` raises ``TypeError`` (pybind11: "factory function returned nullptr")."""
    key = (id(trt), id(cuda))
    if key not in _BUILDER_CHECKED:
        try:
            builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
            why = "" if builder is not None else "trt.Builder returned nothing"
        except Exception as exc:  # noqa: BLE001 - TypeError from a null builder, or a CUDA error
            why = str(exc) or type(exc).__name__
        if why:
            try:
                driver = cuda.get_driver_version()
            except Exception:  # noqa: BLE001 - a driver that cannot even say its version
                driver = "?"
            why = (f"TensorRT {trt.__version__} found, but it cannot initialise CUDA on this driver ({driver}; {why}): "
                   "TensorRT for CUDA 13 needs driver r580+, for CUDA 12 r535+ (pip install 'hqsam-edge[tensorrt]' "
                   "pins TensorRT 10 for CUDA 12), or update the driver")
        _BUILDER_CHECKED[key] = why
    return _BUILDER_CHECKED[key]


def require_onnxruntime() -> None:
    """``BackendUnavailableError`` naming the two packages when neither provides ``onnxruntime`` here."""
    status = onnxruntime_status()
    if not status.usable:
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(status.detail)


def require_tensorrt() -> BackendStatus:
    """TensorRT's status when it is usable here; else ``BackendUnavailableError`` saying why and how to fix."""
    status = tensorrt_status()
    if not status.usable:
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(f"--backend tensorrt is not usable here: {status.detail}")
    return status


def backend_statuses() -> list[BackendStatus]:
    return [torch_status(), onnxruntime_status(), tensorrt_status()]


def library_versions() -> dict[str, str | None]:
    mods = ["hqsam_edge", "torch", "torchvision", "segment_anything", "numpy", "onnx", "onnxruntime",
            "polygraphy", "tensorrt", "pycuda"]
    versions = {m: _version(m) for m in mods}
    if versions["segment_anything"] == "?":
        versions["segment_anything"] = "installed"
    return versions
