"""Make a precision variant of an artifact folder: graphs, check, manifest entry.

``make_precision_graphs(BuildSpec(folder, precision="int8"))`` writes
``encoder.int8.<flavour>.onnx`` (decoder kept in fp32 by default) or
``encoder.fp16.onnx`` + ``decoder.fp16.onnx``, checks them on the CPU with
ONNX Runtime against the fp32 PyTorch model on held-out images, and records
them with their figures in ``manifest.json``. A variant that misses its
bound is deleted and the build fails.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, ParityError, UsageError
from ..export.manifest import Artifact, read_manifest
from ..export.onnx_export import tool_versions
from ..hardware import this_platform
from .images import CalibrationSet
from .ranges import collect_ranges, load_ranges, quantizable_nodes, save_ranges
from .recipes import DEFAULT_INT8_EXCLUDE, fp16_graph, int8_graph

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BuildSpec:
    """Everything ``hqsam-edge build`` decides; the defaults are the real ones."""

    folder: str
    backend: str = "onnxruntime"
    precision: str = "fp16"
    calib_images: str | None = None  # a folder of the user's images; None: synthetic (random weights only)
    calib_limit: int = 16
    calib_method: str = "max"
    heldout: int = 2  # images for the check, never used for calibration
    int8_exclude: tuple[str, ...] = DEFAULT_INT8_EXCLUDE
    quantize_decoder: bool = False  # the decoder stays in higher precision by default
    max_prompts: int = 64
    max_points: int = 16
    workspace_gb: float = 4.0
    dla_core: int | None = None
    version_compatible: bool = False
    flavour: str | None = None  # graphs laid out for this runtime (None: the backend's); see recipes.FLAVOUR_OPS
    layer_search: bool = False  # INT8 missing its bound: keep in float the layers with the most harm per ms saved (calib.sensitivity)
    min_sqnr_db: float | None = None  # override the precision's bound (calib.check.BOUNDS)
    min_mask_iou: float | None = None

    def bounds(self):
        from .check import BOUNDS, Bounds

        default = BOUNDS[self.precision]
        return Bounds(default.min_sqnr_db if self.min_sqnr_db is None else self.min_sqnr_db,
                      default.min_mean_mask_iou if self.min_mask_iou is None else self.min_mask_iou)


def graph_file(graph: str, precision: str, flavour: str = "onnxruntime") -> str:
    """The file name ``build`` gives a precision graph: ``encoder.fp16.onnx``, ``encoder.int8.tensorrt.onnx``."""
    return f"{graph}.int8.{flavour}.onnx" if precision == "int8" else f"{graph}.{precision}.onnx"


def split_images(spec: BuildSpec) -> tuple[list[Path], list[Path]]:
    """The user's images as (calibration, held-out): up to ``calib_limit`` to calibrate, ``heldout`` never
    used for calibration (taken from the end of a folder that has too few for both)."""
    from .images import list_images

    files = list_images(spec.calib_images)
    if len(files) <= spec.heldout:
        raise UsageError(f"{spec.calib_images} has {len(files)} image(s); calibration and the accuracy check "
                         f"need at least {spec.heldout + 1} (more is better: 32-64 images like the ones you segment)")
    calib = files[: min(spec.calib_limit, len(files) - spec.heldout)]
    return calib, files[len(calib) : len(calib) + spec.heldout]


def heldout_images(spec: BuildSpec):
    """Images the check uses: the user's images never used for calibration, else synthetic ones."""
    if spec.calib_images is not None:
        from ..data.transforms import load_image

        return [load_image(str(p)) for p in split_images(spec)[1]]
    return list(CalibrationSet(None, limit=spec.heldout, synthetic_seed=900).images())


def calibrate(folder: Path, encoder: Path, spec: BuildSpec) -> tuple[dict[str, tuple[float, float]], list]:
    """Ranges for the encoder's quantizable layers, from the cache when images and method match."""
    import onnx

    from ..model.checkpoint import sha256_file

    targets = quantizable_nodes(onnx.load(str(encoder), load_external_data=False), spec.int8_exclude)
    calib = calibration_set(spec)
    meta = {"graph_sha256": sha256_file(encoder), "images": calib.fingerprint(), "method": spec.calib_method,
            "count": len(calib)}
    cache = folder / f"calib.{encoder.stem}.{spec.calib_method}.json"
    ranges = load_ranges(cache, **meta)
    if ranges is None or not all(t.activation in ranges and t.output in ranges for t in targets):
        tensors = [name for t in targets for name in (t.activation, t.output)]
        ranges = collect_ranges(encoder, tensors, calib, method=spec.calib_method)
        save_ranges(cache, ranges, **meta)
    return ranges, targets


def _int8_encoder(spec: BuildSpec, flavour: str, folder: Path, encoder: Path, staging: Path, extra: dict[str, Any],
                  check: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """Calibrate, quantize every candidate layer and check; on a miss (``spec.layer_search``), keep in float the
    layers with the most harm per ms they would save, found by ``calib.sensitivity``, until the check passes."""
    from . import sensitivity
    from .recipes import FLAVOUR_OPS, weight_qmax

    ranges, targets = calibrate(folder, encoder, spec)
    candidates = [t for t in targets if t.op_type in FLAVOUR_OPS[flavour]]
    out = staging / graph_file("encoder", "int8", flavour)
    extra["calibration"] = {"method": spec.calib_method, "images": spec.calib_images or "synthetic",
                            "count": spec.calib_limit, "quantized_layers": len(candidates),
                            "candidate_layers": len(candidates), "excluded": list(spec.int8_exclude)}
    try:
        return int8_graph(encoder, out, ranges, candidates, flavour), check(out)
    except ParityError as miss:
        if not spec.layer_search:
            raise ParityError(f"{miss}; --layer-search keeps the layers with the most harm per ms saved in float "
                              "(measured one by one: minutes), or try more typical calibration images") from None
        first_miss = str(miss)
    search = sensitivity.LayerSearch(encoder, ranges, candidates, [next(iter(calibration_set(spec)))],
                                     symmetric=flavour == "tensorrt", weight_qmax=weight_qmax(flavour))
    try:
        # the check also decodes masks, which may need a cleaner embedding than the SQNR bound: raise the goal
        for goal in spec.bounds().min_sqnr_db + np.arange(1.0, 25.0, 3.0):
            chosen, measured = search.choose(goal)
            chosen_nodes = {t.node for t in chosen}
            kept = [s for s in search.ranked() if s.node not in chosen_nodes]
            extra["calibration"].update(
                quantized_layers=len(chosen),
                layer_search={"first_miss": first_miss, "goal_sqnr_db": float(goal), "search_sqnr_db": round(measured, 1),
                              "order": search.order,
                              "quantized_fp32_ms": round(sum(s.fp32_ms or 0.0 for s in search.table
                                                             if s.node in chosen_nodes), 1),
                              "candidate_fp32_ms": round(sum(s.fp32_ms or 0.0 for s in search.table), 1),
                              # most harmful first: [node, SQNR dB with it alone in int8, its fp32 ms or None]
                              "kept_float": [[s.node, round(s.sqnr_db, 1), None if s.fp32_ms is None else round(s.fp32_ms, 2)]
                                             for s in kept]})
            if not chosen:
                break
            try:
                return int8_graph(encoder, out, ranges, chosen, flavour), check(out)
            except ParityError:
                continue
    finally:
        search.close()
    raise ParityError(f"the int8 variant misses its bound even with the layer search's choice of layers in float "
                      f"({first_miss}); use fp16, or calibrate on more typical images")


def calibration_set(spec: BuildSpec) -> CalibrationSet:
    """The images that calibrate: the user's (minus the held-out ones), else synthetic ones."""
    if spec.calib_images is not None:
        return CalibrationSet(files=split_images(spec)[0])
    return CalibrationSet(None, limit=spec.calib_limit)


def ensure_precision_graphs(spec: BuildSpec, flavour: str) -> Artifact:
    """The checked ``spec.precision`` graphs for ``flavour``: the ones the manifest already records, else new ones.

    This is how INT8 graphs calibrated on a workstation (``build --backend
    onnxruntime --precision int8 --flavour tensorrt``) are used by a Jetson's
    ``build --backend tensorrt``: no calibration on the device. Passing
    ``--calib-images`` asks for a new calibration.
    """
    if spec.calib_images is None:
        try:
            return read_manifest(spec.folder).find("onnxruntime", spec.precision, flavour=flavour)
        except ArtifactError:
            pass
    return make_precision_graphs(spec, flavour=flavour)


def make_precision_graphs(spec: BuildSpec, flavour: str | None = None) -> Artifact:
    """Write, check and record the ``spec.precision`` graphs of ``spec.folder`` (laid out for ``flavour``)."""
    from .check import check_variant
    from .recipes import FLAVOUR_OPS

    flavour = flavour or spec.flavour or "onnxruntime"
    if flavour not in FLAVOUR_OPS:
        raise UsageError(f"unknown --flavour {flavour!r}; choose one of: {', '.join(FLAVOUR_OPS)}")
    if spec.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {spec.precision!r}; choose one of: {', '.join(PRECISIONS)}")
    folder = Path(spec.folder)
    manifest = read_manifest(folder)
    base = manifest.find("onnxruntime", "fp32")
    encoder, decoder = folder / base.files["encoder"], folder / base.files["decoder"]
    if spec.precision == "fp32":
        return base
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    extra: dict[str, Any] = {"flavour": flavour}
    model = manifest.build_model()
    heldout = heldout_images(spec)

    def check(enc_out: Path, dec_out: Path) -> dict[str, Any]:
        return check_variant(model, enc_out, dec_out, heldout, precision=spec.precision,
                             multimask_output=manifest.multimask_output, hq_token_only=manifest.hq_token_only,
                             bounds=spec.bounds(), exact_qdq=flavour == "tensorrt" and spec.precision == "int8")

    try:
        if spec.precision == "fp16":
            enc_out = fp16_graph(encoder, staging / graph_file("encoder", "fp16"))
            dec_out = fp16_graph(decoder, staging / graph_file("decoder", "fp16"))
            figures = check(enc_out, dec_out)
        else:
            dec_out = decoder
            enc_out, figures = _int8_encoder(spec, flavour, folder, encoder, staging, extra,
                                             lambda path: check(path, dec_out))
        for path in staging.iterdir():  # graphs and their external data, into place
            os.replace(path, folder / path.name)
        files = {"encoder": enc_out.name, "decoder": dec_out.name}
        extra["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        extra["platform"] = this_platform().to_dict()
        artifact = Artifact("onnxruntime", spec.precision, files, tool_versions=tool_versions(),
                            device="cpu (onnxruntime check)", parity=figures, extra=extra)
        manifest.add(artifact)
        manifest.write(folder)
        return artifact
    finally:
        shutil.rmtree(staging, ignore_errors=True)
