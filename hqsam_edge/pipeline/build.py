"""``hqsam-edge build``: precision variants of an artifact folder, for ONNX Runtime or TensorRT.

``build(BuildSpec(folder, backend=..., precision=...))`` makes and checks the
FP16 / INT8 graphs on the CPU (``calib.precision_graphs``); for ``--backend
tensorrt`` it then builds engines from the graphs the TensorRT generation
wants (the jobs of ``engines.recipe``, built by ``engines.tensorrt_build``),
checks them on the GPU against the same fp32 PyTorch model, on the same
held-out images, and records them in the manifest (``build_engines``).

It starts by removing what a killed process left in the folder
(``remove_stale_temporaries``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import progress
from ..atomic import note_kept
from ..calib.recipes import DEFAULT_INT8_EXCLUDE, calib_method
from ..errors import UsageError
from ..export.manifest import Artifact, Manifest, remove_stale_temporaries
from ..inputs import BUILD_BACKENDS as BACKENDS
from ..inputs import require_choice
from ..runtime.environment import require_onnxruntime

if TYPE_CHECKING:
    import numpy as np

    from ..calib.precision_graphs import PrecisionSpec
    from ..engines.recipe import EngineJob, EngineSpec
    from ..export.records import EngineRecipe
    from ..runtime.compare import Bounds
    from .export import ExportSpec

DLA_NOTE = ("note: only the encoder runs on the DLA; the decoder's prompt and point dimensions are dynamic, which DLA "
            "cannot run, so its engine is built for the GPU")


@dataclass(frozen=True)
class BuildSpec:
    """Everything ``hqsam-edge build`` decides; the defaults are the real ones.

    Graph options go to ``calib.precision_graphs.PrecisionSpec``, TensorRT options to
    ``engines.recipe.EngineSpec``."""

    folder: str
    backend: str = "onnxruntime"
    precision: str | None = None  # None: the fastest accurate one for the backend here (``default_precision``)
    # the graphs
    calib_images: str | None = None  # a folder of the user's images; None: synthetic (random weights only)
    calib_limit: int = 16
    calib_method: str | None = None  # None: the graph backend's (``calib.recipes.DEFAULT_CALIB_METHOD``)
    heldout: int = 2  # images for the check, never used for calibration
    int8_exclude: tuple[str, ...] = DEFAULT_INT8_EXCLUDE
    graph_backend: str | None = None  # lay the graphs out for this runtime (None: the backend's)
    layer_search: bool = False
    min_sqnr_db: float | None = None
    min_mask_iou: float | None = None
    # the engines
    max_prompts: int = 64
    max_points: int = 16
    max_batch: int = 1  # encoder images per call
    workspace_gb: float = 4.0
    dla_core: int | None = None
    version_compatible: bool = False

    def precision_spec(self, precision: str | None = None, graph_backend: str | None = None) -> PrecisionSpec:
        """The graphs of ``precision`` (default: the build's) for ``graph_backend``; bound overrides apply to the
        build's own precision only (an INT8 build's FP16 decoder graph keeps FP16's bounds)."""
        from ..calib.precision_graphs import PrecisionSpec

        precision = precision or self.precision
        own = precision == self.precision
        # only INT8 graphs depend on calibration: the FP16 graphs an INT8 build reads are the recorded ones
        return PrecisionSpec(folder=self.folder, precision=precision,
                             graph_backend=graph_backend or self.graph_backend or self.backend,
                             calib_images=self.calib_images if precision == "int8" else None,
                             calib_limit=self.calib_limit,
                             calib_method=self.calib_method, heldout=self.heldout, int8_exclude=self.int8_exclude,
                             layer_search=self.layer_search, min_sqnr_db=self.min_sqnr_db if own else None,
                             min_mask_iou=self.min_mask_iou if own else None)

    def engine_spec(self) -> EngineSpec:
        from ..engines.recipe import EngineSpec
        from ..export.profiles import Limits

        return EngineSpec(folder=self.folder, precision=self.precision,  # type: ignore[arg-type]  # checked there
                          limits=Limits(max_prompts=self.max_prompts, max_points=self.max_points,
                                        max_batch=self.max_batch),
                          workspace_gb=self.workspace_gb, dla_core=self.dla_core,
                          version_compatible=self.version_compatible)


def default_precision(backend: str) -> tuple[str, str]:
    """The fastest accurate precision for ``backend`` on this machine, and why: fp16 for TensorRT engines and
    for ONNX Runtime with a GPU provider; fp32 for ONNX Runtime on the CPU alone, where fp16 graphs run
    slower than fp32 (0.67x on these machines: the CPU has no fp16 arithmetic and casts)."""
    if backend == "tensorrt":
        return "fp16", "TensorRT engines"
    from ..runtime.onnxruntime_backend import CUDA, TENSORRT, available_providers

    gpu = [p for p in (TENSORRT, CUDA) if p in available_providers()]
    if gpu:
        return "fp16", f"ONNX Runtime with {gpu[0]}"
    return "fp32", "ONNX Runtime on the CPU, where fp16 graphs run slower"


def with_precision(spec: BuildSpec) -> tuple[BuildSpec, str | None]:
    """``spec`` with its precision chosen (``default_precision``) if it names none, and a line saying so."""
    if spec.precision is not None:
        return spec, None
    precision, why = default_precision(spec.backend)
    return (replace(spec, precision=precision),
            f"--precision {precision}, the default for {why} (give --precision to choose)")


def check_spec(spec: BuildSpec) -> None:
    """Every option that can be refused before anything heavy is imported."""
    require_choice(spec.backend, BACKENDS, "backend for build")
    if spec.precision not in (None, "int8"):
        for given, option in ((spec.calib_images is not None, "--calib-images"), (spec.layer_search, "--layer-search"),
                              (spec.calib_method is not None, "--calib-method")):
            if given:
                raise UsageError(f"{option} is for --precision int8, not {spec.precision}")
    if spec.calib_method is not None:
        calib_method(spec.graph_backend or spec.backend, spec.calib_method)  # dynamic: ONNX Runtime graphs only
    if spec.backend == "tensorrt" or spec.dla_core is not None:
        from ..engines.recipe import check_spec as check_engine_spec

        check_engine_spec(spec.engine_spec())


def trtexec_lines(spec: BuildSpec, generation: str) -> list[str]:
    """The trtexec lines that build what ``build --backend tensorrt`` would, for TensorRT ``generation``."""
    from ..engines.trtexec import trtexec_lines as lines

    spec = replace(spec, precision=spec.precision or default_precision("tensorrt")[0])
    check_spec(spec)
    return lines(spec.engine_spec(), generation)


def _engines(spec: BuildSpec) -> Artifact:
    from ..calib.precision_graphs import ensure_int8_on_fp16, ensure_precision_graphs, heldout_images
    from ..engines.recipe import check_dla_cores, check_tensorrt_version, int8_on_fp16, source_graphs
    from ..engines.tensorrt_build import dla_cores, tensorrt_version
    from ..hardware import this_platform
    from ..runtime.environment import require_tensorrt

    require_tensorrt()
    engines = spec.engine_spec()
    board = this_platform() if engines.dla_core is not None else None  # DLA: NVIDIA's matrix names boards
    generation = check_tensorrt_version(engines, tensorrt_version(), board.jetson_model if board else "",
                                        board.jetpack if board else "")
    if engines.dla_core is not None:
        check_dla_cores(engines, dla_cores())
    for precision, graph_backend in source_graphs(engines, generation):
        typed = (precision, graph_backend) == ("int8", "tensorrt") and int8_on_fp16(generation)
        (ensure_int8_on_fp16 if typed else ensure_precision_graphs)(spec.precision_spec(precision, graph_backend))
    graphs = spec.precision_spec()
    return build_engines(engines, generation, heldout_images(graphs), graphs.bounds())


def check_engines(manifest: Manifest, folder: Path, files: dict[str, str], spec: EngineSpec,
                  images: list[np.ndarray], bounds: Bounds) -> dict:
    """The new engines against the fp32 PyTorch model on held-out images (as the CPU graphs are checked); the
    prompt sets stay inside the engines' profile (the backend reads it from them)."""
    from ..runtime.base import ModelInfo
    from ..runtime.compare import check, compare
    from ..runtime.tensorrt_backend import TensorRTBackend
    from ..runtime.torch_backend import TorchBackend

    info = ModelInfo.from_manifest(manifest)
    candidate = TensorRTBackend(info, folder / files["encoder"], folder / files["decoder"], precision=spec.precision,
                                version_compatible=spec.version_compatible, dla_core=spec.dla_core)
    reference = TorchBackend(manifest.build_model(), device="cpu", info=info)
    return check(compare(reference, candidate, images), bounds, f"the {spec.precision} TensorRT engines")


def _recipe(job: EngineJob, pinned: list[str]) -> EngineRecipe:
    from ..export.records import EngineRecipe

    return EngineRecipe(source=job.onnx.name, strongly_typed=job.strongly_typed, fp16=job.fp16, int8=job.int8,
                        tf32=job.tf32, fp32_layers=len(pinned), dla_core=job.dla_core,
                        pinned_layers=tuple(pinned))


def build_engines(spec: EngineSpec, generation: str, images: list[np.ndarray], bounds: Bounds) -> Artifact:
    """One engine per graph (its precision graphs already made and checked, and each the file the manifest
    records), checked on ``images`` against ``bounds`` and recorded in the manifest."""
    from ..atomic import write_bytes
    from ..engines.recipe import plan, timing_cache_name
    from ..engines.tensorrt_build import build_serialized, device_description, tensorrt_version
    from ..export.manifest import provenance, read_manifest
    from ..export.records import EngineRecord

    folder = Path(spec.folder)
    manifest = read_manifest(folder)
    jobs = plan(folder, spec, generation)
    manifest.check_files(folder, [job.onnx.name for job in jobs])
    device, version = device_description(), tensorrt_version()
    cache_path = folder / timing_cache_name(version, device["compute_capability"])
    files, recipes = {}, {}
    for job in jobs:
        serialized, pinned = build_serialized(job, cache_path)
        write_bytes(job.engine, serialized)
        files[job.graph], recipes[job.graph] = job.engine.name, _recipe(job, pinned)
    parity = check_engines(manifest, folder, files, spec, images, bounds)
    artifact = Artifact(
        "tensorrt", spec.precision, files, format="engine",
        tool_versions={"tensorrt": version, "generation": generation}, device=device["gpu"], parity=parity,
        provenance=provenance(),
        engine=EngineRecord(limits=spec.limits.resolved(), compute_capability=device["compute_capability"],
                            dla_core=spec.dla_core, version_compatible=spec.version_compatible,
                            timing_cache=cache_path.name, recipes=recipes))
    manifest.add(artifact)
    manifest.record_files(folder, files.values())
    manifest.write(folder)
    return artifact


def build(spec: BuildSpec) -> Artifact:
    """The ``spec.precision`` variant of ``spec.folder`` for ``spec.backend``, made, checked and recorded."""
    from ..calib.precision_graphs import make_precision_graphs

    check_spec(spec)  # the options given, before anything heavy is imported
    require_onnxruntime()  # every graph is checked under it
    spec, chosen = with_precision(spec)
    check_spec(spec)  # and with the precision chosen
    remove_stale_temporaries(spec.folder)  # what a killed build left
    if chosen:
        progress.note(f"build: {chosen}")
    try:
        if spec.backend == "tensorrt":
            return _engines(spec)
        return make_precision_graphs(spec.precision_spec())
    except BaseException:
        note_kept(f"kept {spec.folder} with the artifacts its manifest.json lists")
        raise


def summary(spec: BuildSpec, artifact: Artifact) -> list[str]:
    """The lines ``hqsam-edge build`` prints: the layer search's choice (if any), then the figures."""
    from ..runtime.compare import encoder_sqnr

    lines = []
    chosen = with_precision(spec)[1]
    if chosen:
        lines.append(f"precision: {chosen.removeprefix('--precision ')}")
    calibration = artifact.calibration
    if calibration is not None:
        how = ("activations ranged per call (dynamic)" if calibration.ranged_per_call
               else f"{calibration.method} ranges from {calibration.count} {calibration.images} image(s)")
        bits = "" if calibration.weight_bits is None else f", {calibration.weight_bits}-bit weights"
        lines.append(f"int8: {how}{bits}")
    if calibration is not None and calibration.layer_search is not None:
        search = calibration.layer_search
        lines.append(f"int8: {calibration.quantized_layers} of {calibration.candidate_layers} layers quantized "
                     f"({search.quantized_fp32_ms} of their {search.candidate_fp32_ms} fp32 ms); "
                     f"{len(search.kept_float)} kept in float (chosen {search.order}, each measured)")
    if artifact.engine is not None and artifact.engine.dla_core is not None:
        lines.append(DLA_NOTE)
    figures = artifact.parity
    sqnr = ", ".join(f"{k} SQNR {v:.1f} dB" for k, v in encoder_sqnr(figures).items())
    files = ", ".join(artifact.files.values())
    lines.append(f"built {spec.backend}/{artifact.precision} in {Path(spec.folder)}: {files}; "
                 f"vs fp32 PyTorch: {sqnr}, mean mask IoU {figures.get('mean_mask_iou', float('nan')):.4f}, "
                 f"mean boundary IoU {figures.get('mean_boundary_iou', float('nan')):.4f}")
    return lines


def export_then_build(export: ExportSpec, spec: BuildSpec) -> tuple[Manifest, Artifact]:
    """``hqsam-edge export --precision ...``: the verified export into ``export.out_dir``, then ``spec``'s build
    of it (``spec.folder`` is that folder). The build's options are checked before the export starts; a build
    that fails keeps the exported folder (build it again with ``hqsam-edge build``)."""
    from .export import export_artifacts

    if Path(spec.folder) != export.out_dir:
        raise ValueError(f"the build's folder {spec.folder} is not the export's {export.out_dir}")
    check_spec(with_precision(spec)[0])
    manifest = export_artifacts(export)
    return manifest, build(spec)
