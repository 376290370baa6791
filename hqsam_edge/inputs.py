"""What a user names: the fixed choices (backbones, variants, backends, precisions ...) and the files and folders.

Declared once here, on the floor below everything heavy, so that the command line checks its options and
paths before torch, onnx or onnxruntime are imported (a typo costs a fraction of a second, not the seconds
those imports take), and the library raises the same errors, with the same words, when it is called from
Python. Each path check returns the path and raises the error type the deeper code would have raised.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ArtifactError, CheckpointError, DataError, ImageError, UsageError

BACKBONES = ("vit_tiny", "vit_b", "vit_l", "vit_h")  # vit_tiny: Light HQ-SAM / MobileSAM (TinyViT)
VARIANTS = ("hq", "sam")  # HQ-SAM, or plain SAM / MobileSAM
PRECISIONS = ("fp32", "fp16", "int8")  # the graph and engine variants of an artifact folder
MODEL_PRECISIONS = (*PRECISIONS, "bf16")  # what a model runs in (bf16: the torch backend only)
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")  # what opens a model
BUILD_BACKENDS = ("onnxruntime", "tensorrt")  # what `build` makes: precision graphs, or TensorRT engines
CALIB_METHODS = ("max", "percentile", "entropy")
EVAL_PROTOCOLS = ("official", "predictor")
TRITON_KINDS = ("gpu", "cpu")
TRTEXEC_GENERATIONS = ("8", "10", "11")  # TensorRT majors whose trtexec lines `build --print-trtexec` writes
MANIFEST = "manifest.json"  # an artifact folder's record of itself (``export.manifest``)


def require_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``; else ``UsageError`` listing them."""
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def artifact_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder not found: {folder} (make one with `hqsam-edge export`)")
    if not (folder / MANIFEST).is_file():
        raise ArtifactError(f"{folder} has no {MANIFEST}: not an artifact folder of `hqsam-edge export`")
    return folder


def checkpoint_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (download one with `hqsam-edge download`)")
    return path


def image_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image not found: {path}")
    return path


def data_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root} (expected the HQSeg-44K layout; see `hqsam_edge.data.hqseg`)")
    return root


def calibration_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"calibration folder not found: {folder}")
    return folder


def boxes_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"boxes file not found: {path}")
    return path
