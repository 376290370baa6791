"""Make the precision graphs of an artifact folder: graphs, check, manifest entry.

``make_precision_graphs(PrecisionSpec(folder, precision="int8"))`` writes
``encoder.int8.<graph_backend>.onnx`` (the decoder stays fp32) or
``encoder.fp16.onnx`` + ``decoder.fp16.onnx``, checks them on the CPU with
ONNX Runtime against the fp32 PyTorch model on held-out images
(``runtime.compare``), and records them with their figures in
``manifest.json``: as an ``onnxruntime`` artifact, or, laid out for TensorRT
(``graph_backend="tensorrt"``), as a ``tensorrt`` artifact of ``format`` ``onnx``
that TensorRT builds its engines from. A variant that misses its bound is
deleted and the build fails.

The graphs are made in a staging folder inside the artifact folder
(``.build.hqtmp-...``, removed on any failure or interruption) and renamed
into place together with the manifest update that records their sizes and
sha256; the graphs they are made from are checked against the manifest first.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import progress
from ..atomic import temp_dir
from ..errors import ArtifactError, ParityError, UsageError
from ..export.manifest import (INT8_ON_FP16, Artifact, graph_file, int8_on_fp16_file, provenance, read_manifest,
                               tool_versions)
from ..export.records import Calibration, LayerSearch
from ..inputs import DYNAMIC_RANGES, PRECISIONS, require_choice
from ..interrupts import deferred
from .images import CalibrationSet
from .ranges import QuantTarget, collect_ranges, load_ranges, quantizable_nodes, save_ranges
from .recipes import (BACKEND_OPS, DEFAULT_INT8_EXCLUDE, WEIGHT_QMAX, calib_method, dynamic_targets,
                      dynamic_weight_bits, fp16_graph, int8_dynamic_graph, int8_graph, int8_on_fp16_graph,
                      static_weight_bits)

HELDOUT_SEED = 900  # synthetic held-out pictures (random weights only) are seeded apart from calibration's (100)
# The layer search raises its SQNR goal above the bound in these steps until the real graph's check (which
# also decodes masks, and may need a cleaner embedding than the SQNR bound) passes.
SEARCH_GOAL_RAISES_DB = tuple(np.arange(1.0, 25.0, 3.0))


@dataclass(frozen=True)
class PrecisionSpec:
    """How to make one precision variant's graphs; the defaults are the real ones.

    ``graph_backend``: the runtime the graphs are laid out for (``recipes.BACKEND_OPS``): ``onnxruntime``
    (U8S8 GEMMs) or ``tensorrt`` (symmetric Q/DQ on convolutions and GEMMs, checked with exact Q/DQ
    arithmetic)."""

    folder: str
    _: KW_ONLY  # the rest by name
    precision: str = "fp16"
    graph_backend: str = "onnxruntime"
    calib_images: str | None = None  # a folder of the user's images; None: synthetic (random weights only)
    calib_limit: int = 16
    calib_method: str | None = None  # None: the graph backend's (``recipes.DEFAULT_CALIB_METHOD``)
    heldout: int = 2  # images for the check, never used for calibration
    int8_exclude: tuple[str, ...] = DEFAULT_INT8_EXCLUDE
    layer_search: bool = False  # INT8 missing its bound: keep in float the layers with the most harm per ms saved
    min_sqnr_db: float | None = None  # override the precision's bound (runtime.compare.PRECISION_BOUNDS)
    min_mask_iou: float | None = None

    @property
    def method(self) -> str:
        """The calibration method these graphs get (``dynamic``: none, ONNX Runtime ranges activations per call)."""
        return calib_method(self.graph_backend, self.calib_method)

    def bounds(self):
        from dataclasses import replace

        from ..runtime.compare import PRECISION_BOUNDS

        default = PRECISION_BOUNDS[self.precision]
        return replace(default, min_sqnr_db=default.min_sqnr_db if self.min_sqnr_db is None else self.min_sqnr_db,
                       min_mean_mask_iou=default.min_mean_mask_iou if self.min_mask_iou is None
                       else self.min_mask_iou)


def split_images(spec: PrecisionSpec) -> tuple[list[Path], list[Path]]:
    """The user's images as (calibration, held-out): up to ``calib_limit`` to calibrate, ``heldout`` never
    used for calibration (taken from the end of a folder that has too few for both)."""
    from .images import list_images

    files = list_images(spec.calib_images)
    if len(files) <= spec.heldout:
        raise UsageError(f"{spec.calib_images} has {len(files)} image(s); calibration and the accuracy check "
                         f"need at least {spec.heldout + 1} (more is better: 32-64 images like the ones you segment)")
    calib = files[: min(spec.calib_limit, len(files) - spec.heldout)]
    return calib, files[len(calib) : len(calib) + spec.heldout]


def heldout_images(spec: PrecisionSpec) -> list[np.ndarray]:
    """Images the check uses: the user's images never used for calibration, else synthetic ones."""
    if spec.calib_images is not None:
        from ..data.transforms import load_image

        return [load_image(str(p)) for p in split_images(spec)[1]]
    return list(CalibrationSet(None, limit=spec.heldout, synthetic_seed=HELDOUT_SEED).images())


def calibration_set(spec: PrecisionSpec) -> CalibrationSet:
    """The images that calibrate: the user's (minus the held-out ones), else synthetic ones."""
    if spec.calib_images is not None:
        return CalibrationSet(files=split_images(spec)[0])
    return CalibrationSet(None, limit=spec.calib_limit)


def _cached_ranges(folder: Path, cache: Path, manifest, **meta) -> dict[str, tuple[float, float]] | None:
    """The cached ranges if ``cache`` is the file the manifest records (and was made with ``meta``); a cache
    without a record, or changed since, is not used (it only saves time: calibrating again is safe)."""
    if not cache.is_file() or cache.name not in (manifest.files or {}):
        return None
    try:
        manifest.check_files(folder, [cache.name])
    except ArtifactError as exc:
        warnings.warn(f"{exc}; calibrating again", stacklevel=2)
        return None
    return load_ranges(cache, **meta)


def calibrate(folder: Path, encoder: Path, spec: PrecisionSpec, manifest=None) -> tuple[dict[str, tuple[float, float]],
                                                                                       list]:
    """Ranges for the encoder's quantizable layers, from the cache when images and method match; a new cache
    is recorded in the manifest at once, so that a build that then misses its bound leaves it for the next."""
    import onnx

    from ..digest import sha256_file

    manifest = manifest or read_manifest(folder)
    targets = quantizable_nodes(onnx.load(str(encoder), load_external_data=False), spec.int8_exclude)
    calib = calibration_set(spec)
    graph_sha256 = (manifest.files or {}).get(encoder.name, {}).get("sha256") or sha256_file(encoder)
    meta = {"graph_sha256": graph_sha256, "images": calib.fingerprint(), "method": spec.method,
            "count": len(calib)}
    cache = folder / f"calib.{encoder.stem}.{spec.method}.json"
    ranges = _cached_ranges(folder, cache, manifest, **meta)
    if ranges is None or not all(t.activation in ranges and t.output in ranges for t in targets):
        tensors = [name for t in targets for name in (t.activation, t.output)]
        ranges = collect_ranges(encoder, tensors, calib, method=spec.method)
        with deferred():
            save_ranges(cache, ranges, **meta)
            manifest.record_files(folder, [cache.name])
            manifest.write(folder)
    return ranges, targets


Check = Callable[[Path], dict[str, Any]]


def _search_record(search, chosen, goal: float, measured: float, first_miss: str) -> LayerSearch:
    """What the manifest says of a layer search's choice (most harmful kept layer first)."""
    chosen_nodes = {t.node for t in chosen}
    kept = [s for s in search.ranked() if s.node not in chosen_nodes]
    return LayerSearch(
        first_miss=first_miss, goal_sqnr_db=float(goal), search_sqnr_db=round(measured, 1), order=search.order,
        quantized_fp32_ms=round(sum(s.fp32_ms or 0.0 for s in search.table if s.node in chosen_nodes), 1),
        candidate_fp32_ms=round(sum(s.fp32_ms or 0.0 for s in search.table), 1),
        kept_float=tuple((s.node, round(s.sqnr_db, 1), None if s.fp32_ms is None else round(s.fp32_ms, 2))
                         for s in kept))


Quantize = Callable[[list[QuantTarget]], Path]  # write the INT8 graph of these layers


def _layer_search(spec: PrecisionSpec, encoder: Path, quantize: Quantize, ranges, candidates, record: Calibration,
                  check: Check, first_miss: str) -> tuple[Path, dict[str, Any], Calibration]:
    """Keep in float the layers with the most harm per ms they would save (``calib.sensitivity``), raising the
    goal until the real graph's check passes; the graph, its figures, and ``record`` with the search's choice."""
    from . import sensitivity

    search = sensitivity.LayerSearch(encoder, ranges, candidates, [next(iter(calibration_set(spec)))],
                                     symmetric=spec.graph_backend == "tensorrt",
                                     weight_qmax=WEIGHT_QMAX[record.weight_bits], dynamic=record.ranged_per_call)
    try:
        for goal in spec.bounds().min_sqnr_db + np.asarray(SEARCH_GOAL_RAISES_DB):
            chosen, measured = search.choose(goal)
            if not chosen:
                break
            record = replace(record, quantized_layers=len(chosen),
                             layer_search=_search_record(search, chosen, goal, measured, first_miss))
            try:
                graph = quantize(chosen)
                return graph, check(graph), record
            except ParityError:
                continue
    finally:
        search.close()
    raise ParityError(f"the int8 variant misses its bound even with the layer search's choice of layers in float "
                      f"({first_miss}); use fp16, or calibrate on more typical images")


def _int8_encoder(spec: PrecisionSpec, manifest, encoder: Path, staging: Path,
                  check: Check) -> tuple[Path, dict[str, Any], Calibration]:
    """Calibrate (unless ``dynamic``), quantize every candidate layer and check; on a miss, the layer search
    (``spec.layer_search``). The graph, its figures and how it was calibrated."""
    import onnx

    out = staging / graph_file("encoder", "int8", spec.graph_backend)
    if spec.method == DYNAMIC_RANGES:
        ranges: dict[str, tuple[float, float]] = {}
        candidates = dynamic_targets(onnx.load(str(encoder), load_external_data=False), spec.int8_exclude)
        bits = dynamic_weight_bits()
        record = Calibration(method=DYNAMIC_RANGES, images="none", count=0, quantized_layers=len(candidates),
                             candidate_layers=len(candidates), excluded=tuple(spec.int8_exclude), weight_bits=bits)

        def quantize(chosen: list[QuantTarget]) -> Path:
            return int8_dynamic_graph(encoder, out, chosen, weight_bits=bits)
    else:
        ranges, targets = calibrate(Path(spec.folder), encoder, spec, manifest)
        candidates = [t for t in targets if t.op_type in BACKEND_OPS[spec.graph_backend]]
        record = Calibration(method=spec.method, images=spec.calib_images or "synthetic",
                             count=len(calibration_set(spec)), quantized_layers=len(candidates),
                             candidate_layers=len(candidates), excluded=tuple(spec.int8_exclude),
                             weight_bits=static_weight_bits(spec.graph_backend))

        def quantize(chosen: list[QuantTarget]) -> Path:
            return int8_graph(encoder, out, ranges, chosen, spec.graph_backend)
    try:
        return quantize(candidates), check(out), record
    except ParityError as miss:
        if not spec.layer_search:
            hint = "" if record.ranged_per_call else ", or try more typical calibration images"
            raise ParityError(f"{miss}; --layer-search keeps the layers with the most harm per ms saved in float "
                              f"(measured one by one: minutes){hint}") from None
        return _layer_search(spec, encoder, quantize, ranges, candidates, record, check, str(miss))


def ensure_precision_graphs(spec: PrecisionSpec) -> Artifact:
    """The checked ``spec.precision`` graphs for ``spec.graph_backend``: the ones the manifest records, else new ones.

    This is how INT8 graphs calibrated on a workstation (``build --backend
    onnxruntime --precision int8 --graphs-for tensorrt``) are used by a Jetson's
    ``build --backend tensorrt``: no calibration on the device. Passing
    ``--calib-images`` asks for a new calibration.
    """
    if spec.calib_images is None:
        manifest = read_manifest(spec.folder)
        try:
            artifact = manifest.find(spec.graph_backend, spec.precision, format="onnx")
        except ArtifactError:
            return make_precision_graphs(spec)
        manifest.check_files(spec.folder, artifact.files.values())
        return artifact
    return make_precision_graphs(spec)


def ensure_int8_on_fp16(spec: PrecisionSpec) -> Artifact:
    """The TensorRT INT8 graph artifact with its strongly typed encoder (``INT8_ON_FP16``: the Q/DQ graph through
    the FP16 recipe, ``recipes.int8_on_fp16_graph``), checked on the CPU with the FP16 decoder and recorded in the
    same artifact (so new INT8 graphs drop it with theirs). Made from the recorded Q/DQ graph (no calibration) and
    the recorded FP16 graphs (made only where the folder has none)."""
    ensure_precision_graphs(spec)
    ensure_precision_graphs(replace(spec, precision="fp16", graph_backend="onnxruntime", calib_images=None,
                                    layer_search=False, min_sqnr_db=None, min_mask_iou=None))
    folder = Path(spec.folder)
    manifest = read_manifest(folder)
    artifact = manifest.find("tensorrt", "int8", format="onnx")
    if INT8_ON_FP16 in artifact.files:
        manifest.check_files(folder, [artifact.files[INT8_ON_FP16]])
        return artifact
    decoder = folder / manifest.find("onnxruntime", "fp16").files["decoder"]
    check = _checker(spec, manifest, heldout_images(spec))
    with temp_dir(folder, "build") as staging:
        encoder = int8_on_fp16_graph(folder / artifact.files["encoder"], staging / int8_on_fp16_file())
        figures = check(encoder, decoder)
        typed = replace(artifact, files={**artifact.files, INT8_ON_FP16: encoder.name},
                        parity={**artifact.parity, INT8_ON_FP16: figures})
        with deferred():
            made = []
            for path in staging.iterdir():
                os.replace(path, folder / path.name)
                made.append(path.name)
            manifest.add(typed)
            manifest.record_files(folder, made)
            manifest.write(folder)
    return typed


def _checker(spec: PrecisionSpec, manifest, heldout: list[np.ndarray]) -> Callable[[Path, Path], dict[str, Any]]:
    """``check(encoder, decoder)``: the graphs under ONNX Runtime on the CPU vs the fp32 PyTorch model."""
    from ..runtime.base import ModelInfo
    from ..runtime.compare import check, compare
    from ..runtime.onnxruntime_backend import OnnxRuntimeBackend
    from ..runtime.torch_backend import TorchBackend

    info = ModelInfo.from_manifest(manifest)
    reference = TorchBackend(manifest.build_model(), device="cpu", info=info)
    exact_qdq = spec.graph_backend == "tensorrt" and spec.precision == "int8"

    def run(encoder: Path, decoder: Path) -> dict[str, Any]:
        candidate = OnnxRuntimeBackend(info, encoder, decoder, precision=spec.precision, providers=["cpu"],
                                       exact_qdq=exact_qdq)
        with progress.stage(f"build: check the {spec.precision} graphs against PyTorch ({len(heldout)} held-out "
                            f"image{'s' if len(heldout) != 1 else ''}, ONNX Runtime, CPU)"):
            return check(compare(reference, candidate, heldout), spec.bounds(), f"the {spec.precision} variant")

    return run


def make_precision_graphs(spec: PrecisionSpec) -> Artifact:
    """Write, check and record the ``spec.precision`` graphs of ``spec.folder`` (laid out for
    ``spec.graph_backend``)."""
    require_choice(spec.graph_backend, BACKEND_OPS, "--graphs-for")
    require_choice(spec.precision, PRECISIONS, "precision")
    folder = Path(spec.folder)
    manifest = read_manifest(folder)
    base = manifest.find("onnxruntime", "fp32")
    manifest.check_files(folder, base.files.values())
    encoder, decoder = folder / base.files["encoder"], folder / base.files["decoder"]
    if spec.precision == "fp32":
        return base
    calibration: Calibration | None = None
    check = _checker(spec, manifest, heldout_images(spec))
    with temp_dir(folder, "build") as staging:
        if spec.precision == "fp16":
            enc_out = fp16_graph(encoder, staging / graph_file("encoder", "fp16"))
            dec_out = fp16_graph(decoder, staging / graph_file("decoder", "fp16"))
            figures = check(enc_out, dec_out)
        else:
            dec_out = decoder  # fp32: an int8 decoder costs the encoder more layers than it saves (RESULTS.md)
            enc_out, figures, calibration = _int8_encoder(spec, manifest, encoder, staging,
                                                          lambda path: check(path, dec_out))
        files = {"encoder": enc_out.name, "decoder": dec_out.name}
        artifact = Artifact(spec.graph_backend, spec.precision, files, format="onnx", tool_versions=tool_versions(),
                            device="cpu (onnxruntime check)", parity=figures, provenance=provenance(),
                            calibration=calibration)
        with deferred():  # the graphs into place, then the manifest that names them: never half
            made = []
            for path in staging.iterdir():  # graphs and their external data
                os.replace(path, folder / path.name)
                made.append(path.name)
            manifest.add(artifact)
            manifest.record_files(folder, made)
            manifest.write(folder)
    return artifact
