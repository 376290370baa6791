"""Options that several commands share, as typer ``Annotated`` types, and the helpers that make options.

Everything a value is checked against comes from ``inputs`` (fixed choices, path checks), so a mistyped value
or a missing path fails while the options are read, before anything heavy is imported. The everything mode's
options take their names, help and defaults from ``apps.generator_options.GeneratorOptions`` (light: no
numpy at import).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import inputs
from ..apps.generator_options import GeneratorOptions
from ..apps.shards import SHARDS_ENV, Shard, parse_shard
from ..errors import HQSamEdgeError


def choice(values: Collection[str], what: str) -> dict[str, Any]:
    """Option settings for one of fixed ``values`` (``inputs``): shown as ``a|b|c``, refused with the words the
    library uses (``unknown precision 'fp61'; choose one of: fp32, fp16, int8``)."""

    def parse(value: str) -> str:
        try:
            return inputs.require_choice(value, values, what)
        except HQSamEdgeError as exc:
            raise typer.BadParameter(str(exc)) from None

    return {"parser": parse, "metavar": "|".join(values)}


def checked(check: Callable[[Any], object]) -> Callable[[Any], Any]:
    """An option callback: ``check`` (an ``inputs`` path check) on the value given, or on each of a list."""

    def callback(value: Any) -> Any:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None:
                check(item)
        return value

    return callback


def artifact_manifest(folder: Path) -> None:
    """An artifact folder whose manifest reads (``read_manifest``: numpy and the manifest, nothing heavy)."""
    inputs.artifact_folder(folder)
    from ..export.manifest import read_manifest

    read_manifest(folder)


BACKBONE = choice(inputs.BACKBONES, "backbone")
VARIANT = choice(inputs.VARIANTS, "variant")
PRECISION = choice(inputs.PRECISIONS, "precision")
BUILD_BACKEND = choice(inputs.BUILD_BACKENDS, "backend")

# The model: a checkpoint (or random weights) of a backbone and variant ...
Backbone = Annotated[str, typer.Option("--backbone", "-b", **BACKBONE,
                                       help="vit_tiny (Light HQ-SAM / MobileSAM), vit_b, vit_l, vit_h.")]
Variant = Annotated[str, typer.Option("--variant", **VARIANT, help="hq (HQ-SAM) or sam (plain SAM / MobileSAM).")]
Checkpoint = Annotated[Path | None, typer.Option("--checkpoint", "-c", callback=checked(inputs.checkpoint_file),
                                                 help="Official .pth checkpoint (or one from `hqsam-edge train`).")]
RandomWeights = Annotated[bool, typer.Option("--random-weights",
                                             help="No checkpoint: random weights (seeded; for speed and smoke runs).")]
# ... or an artifact folder, opened with a backend and precision (``runtime.choice.ModelChoice`` holds them all).
Folder = Annotated[Path | None, typer.Argument(
    callback=checked(artifact_manifest), show_default=False,
    help="Artifact folder from `hqsam-edge export` (else use --checkpoint / --random-weights).")]
Backend = Annotated[str, typer.Option(
    "--backend", **choice(inputs.BACKENDS, "backend"),
    help="auto (TensorRT > ONNX Runtime > torch, as the folder has), torch, onnxruntime or tensorrt.")]
ModelPrecision = Annotated[str | None, typer.Option(
    "--precision", **choice(inputs.MODEL_PRECISIONS, "precision"),
    help="fp32, fp16 or int8 of a folder (default: its best here); bf16 with torch.")]
DlaCore = Annotated[int | None, typer.Option(
    "--dla-core", help="Run the folder's TensorRT engines built for this DLA core (default: its GPU engines).")]

# A folder the command reads (``build``, ``verify``, ``triton``).
ArtifactFolder = Annotated[Path, typer.Argument(callback=checked(artifact_manifest),
                                                help="Artifact folder from `hqsam-edge export` / `build`.")]

# Progress: every command has these two (``group.Command`` adds them).
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Progress: also a line per step (not only per stage).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines or bars (errors and results only).")]

# The everything mode (``predict --everything``, ``segment --everything``): GeneratorOptions' fields, but the
# two that take no command-line form (``point_grids``: arrays; ``output_mode``: the command writes its own).
EVERYTHING = GeneratorOptions()  # the defaults
_HELP = {f.name: f.metadata["help"] for f in fields(GeneratorOptions)}


def _everything(name: str) -> Any:
    return typer.Option("--" + name.replace("_", "-"), help=f"--everything: {_HELP[name]}")


PointsPerSide = Annotated[int, _everything("points_per_side")]
PointsPerBatch = Annotated[int, _everything("points_per_batch")]
PredIouThresh = Annotated[float, _everything("pred_iou_thresh")]
StabilityScoreThresh = Annotated[float, _everything("stability_score_thresh")]
StabilityScoreOffset = Annotated[float, _everything("stability_score_offset")]
BoxNmsThresh = Annotated[float, _everything("box_nms_thresh")]
CropNLayers = Annotated[int, _everything("crop_n_layers")]
CropNmsThresh = Annotated[float, _everything("crop_nms_thresh")]
CropOverlapRatio = Annotated[float, _everything("crop_overlap_ratio")]
CropNPointsDownscaleFactor = Annotated[int, _everything("crop_n_points_downscale_factor")]
MinMaskRegionArea = Annotated[int, _everything("min_mask_region_area")]
LowResStability = Annotated[bool, _everything("low_res_stability")]

# A detector whose boxes prompt the model (``segment --detector``, ``track --detector``): the graph's layout is
# read from the file while the options are read (``apps.detector.check_graph``: no onnx, no ONNX Runtime).


def detector_graph(path: Path) -> None:
    from ..apps.detector import check_graph

    check_graph(path)


def class_ids(values: list[str] | None, option: str) -> tuple[int, ...] | None:
    """``["0,2", "5"]`` (repeated and/or comma-separated) -> ``(0, 2, 5)``; None for none given."""
    if not values:
        return None
    try:
        ids = tuple(int(v) for text in values for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise typer.BadParameter(f"{option} takes class ids (integers from 0) like 0,2,5; got {values}") from None
    if not ids or min(ids) < 0:
        raise typer.BadParameter(f"{option} takes class ids (integers from 0) like 0,2,5; got {values}")
    return ids


DetectorGraph = Annotated[Path | None, typer.Option(
    "--detector", callback=checked(detector_graph),
    help="ONNX detector exported from Ultralytics ([1,4+C,A] raw head, or [1,K,6] end-to-end) whose boxes prompt "
         "the model.")]
DetectorClasses = Annotated[list[str] | None, typer.Option(
    "--detector-classes", callback=lambda v: class_ids(v, "--detector-classes"),
    help="--detector: keep only these class ids (0-based, comma-separated or repeated).")]
DetectorScore = Annotated[float, typer.Option(
    "--detector-score", min=0.0, max=1.0, help="--detector: the least score a box needs.")]


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except HQSamEdgeError as exc:
        raise typer.BadParameter(str(exc)) from None


# Beyond one machine (``segment``): a shard of the set (``apps.shards``), or Ray Data actors (``ray_runner``).
ShardOption = Annotated[Shard | None, typer.Option(
    "--shard", parser=_shard, metavar="K/N", show_default=False,
    help="Only shard K of N (from 0) of the images, split by path; default: from SLURM_ARRAY_TASK_ID / _MIN / _COUNT "
         f"or JOB_COMPLETION_INDEX + {SHARDS_ENV}. Shards share --out; then `hqsam-edge merge OUT`.")]
Ray = Annotated[bool, typer.Option(
    "--ray", help="Run the images through Ray Data actors, each holding one model (the ray extra).")]
RayAddress = Annotated[str | None, typer.Option(
    "--ray-address", show_default=False, help="--ray: join this Ray cluster (default: start a local Ray).")]
RayActors = Annotated[int | None, typer.Option(
    "--ray-actors", min=1, show_default=False, help="--ray: actors, each with its own model (default 1).")]
RayGpusPerActor = Annotated[float | None, typer.Option(
    "--ray-gpus-per-actor", min=0.0, show_default=False,
    help="--ray: share of a GPU each actor reserves (0.5: two actors a GPU; default 0).")]
