"""What a user names: the fixed choices (backbones, variants, backends, precisions ...) and the files and folders.

Declared once here, on the floor below everything heavy, so that the command line checks its options and
paths before torch, onnx or onnxruntime are imported (a typo costs a fraction of a second, not the seconds
those imports take), and the library raises the same errors, with the same words, when it is called from
Python. Each path check returns the path and raises the error type the deeper code would have raised.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from .errors import ArtifactError, CheckpointError, DataError, ImageError, UsageError

BACKBONES = ("vit_tiny", "vit_b", "vit_l", "vit_h")  # vit_tiny: Light HQ-SAM / MobileSAM (TinyViT)
VARIANTS = ("hq", "sam")  # HQ-SAM, or plain SAM / MobileSAM
PRECISIONS = ("fp32", "fp16", "int8")  # the graph and engine variants of an artifact folder
MODEL_PRECISIONS = (*PRECISIONS, "bf16")  # what a model runs in (bf16: the torch backend only)
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")  # what opens a model
BUILD_BACKENDS = ("onnxruntime", "tensorrt")  # what `build` makes: precision graphs, or TensorRT engines
RANGE_METHODS = ("max", "percentile", "entropy")  # activation ranges from calibration images (``calib.ranges``)
DYNAMIC_RANGES = "dynamic"  # INT8 activations ranged per call by ONNX Runtime: no calibration images, a CPU graph
CALIB_METHODS = (*RANGE_METHODS, DYNAMIC_RANGES)
EVAL_PROTOCOLS = ("official", "predictor")
TRITON_KINDS = ("gpu", "cpu")
TRITON_RUNTIMES = ("native", "python")  # graphs on Triton's onnxruntime / tensorrt backend, or in its Python backend
ON_ERROR = ("skip", "stop")  # `segment --on-error`: leave a bad image out (listed in OUT/errors.json), or end the run
TRTEXEC_GENERATIONS = ("8", "10", "11")  # TensorRT majors whose trtexec lines `build --print-trtexec` writes
MANIFEST = "manifest.json"  # an artifact folder's record of itself (``export.manifest``)


VARIANTS_MEANING = "'hq' = HQ-SAM, 'sam' = plain SAM / MobileSAM"  # what VARIANTS name, for a refusal's hint


def require_choice(value: str, choices: Collection[str], what: str, hint: str = "") -> str:
    """``value`` if it is one of ``choices``; else ``UsageError`` listing them (the words every refusal of a
    fixed value uses, the command line's included), and ``hint`` in brackets after them if given."""
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}"
                         + (f" ({hint})" if hint else ""))
    return value


def _require(path: str | Path, is_folder: bool, error: type[Exception], message: str) -> Path:
    """``path`` if it is an existing folder (``is_folder``) or file; else ``error(message)`` (``{}``: the path)."""
    path = Path(path)
    if not (path.is_dir() if is_folder else path.is_file()):
        raise error(message.replace("{}", str(path)))
    return path


def artifact_folder(folder: str | Path) -> Path:
    folder = _require(folder, True, ArtifactError, "artifact folder not found: {} (make one with `hqsam-edge export`)")
    _require(folder / MANIFEST, False, ArtifactError,
             f"{folder} has no {MANIFEST}: not an artifact folder of `hqsam-edge export`")
    return folder


def checkpoint_file(path: str | Path) -> Path:
    return _require(path, False, CheckpointError, "checkpoint not found: {} (download one with `hqsam-edge download`)")


def image_file(path: str | Path) -> Path:
    return _require(path, False, ImageError, "image not found: {}")


def data_root(root: str | Path) -> Path:
    return _require(root, True, DataError,
                    "data root not found: {} (expected the HQSeg-44K layout; see `hqsam_edge.data.hqseg`)")


def calibration_folder(folder: str | Path) -> Path:
    return _require(folder, True, UsageError, "calibration folder not found: {}")


def boxes_file(path: str | Path) -> Path:
    return _require(path, False, UsageError, "boxes file not found: {}")
