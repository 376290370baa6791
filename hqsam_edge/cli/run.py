"""Commands that run a model: ``predict`` (one image), ``segment`` (an image set, streamed and resumable),
``bench`` (latency, throughput, memory).

``predict`` and ``segment`` name their model with the same seven options (``options.Folder`` ...
``options.ModelPrecision``, one ``ModelChoice`` inside the command) and take the everything mode's options
(``options.PointsPerSide`` ..., one ``GeneratorOptions`` inside the command; their defaults are its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import inputs
from ..apps.generator_options import GeneratorOptions
from ..errors import UsageError
from . import options as o
from .group import command
from .options import EVERYTHING as E


@command()
def predict(
    folder: o.Folder = None,
    *,
    image: Annotated[Path, typer.Option("--image", "-i", callback=o.checked(inputs.image_file),
                                        help="Image file (any format Pillow reads).")],
    box: Annotated[list[str] | None, typer.Option(
        "--box", help="x0,y0,x1,y1 in pixels; repeat for one mask per box.")] = None,
    point: Annotated[list[str] | None, typer.Option(
        "--point", help="x,y[,label] in pixels (label 1 fg, 0 bg); repeat.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Mask PNG to write (0/255, union of the masks; --everything: labels 1..K).")] = None,
    overlay: Annotated[Path | None, typer.Option(
        "--overlay", help="Also write the image with the masks blended in, each in its own colour, the prompts and "
                          "a legend of scores.")] = None,
    multimask: Annotated[bool | None, typer.Option(
        "--multimask/--single-mask", help="SAM's three masks (keep the best) or one; default: as exported.")] = None,
    everything: Annotated[bool, typer.Option(
        "--everything", help="Segment everything (a grid of points, SamAutomaticMaskGenerator) instead of "
                             "prompts.")] = False,
    points_per_side: o.PointsPerSide = E.points_per_side, points_per_batch: o.PointsPerBatch = E.points_per_batch,
    pred_iou_thresh: o.PredIouThresh = E.pred_iou_thresh,
    stability_score_thresh: o.StabilityScoreThresh = E.stability_score_thresh,
    stability_score_offset: o.StabilityScoreOffset = E.stability_score_offset,
    box_nms_thresh: o.BoxNmsThresh = E.box_nms_thresh, crop_n_layers: o.CropNLayers = E.crop_n_layers,
    crop_nms_thresh: o.CropNmsThresh = E.crop_nms_thresh,
    crop_overlap_ratio: o.CropOverlapRatio = E.crop_overlap_ratio,
    crop_n_points_downscale_factor: o.CropNPointsDownscaleFactor = E.crop_n_points_downscale_factor,
    min_mask_region_area: o.MinMaskRegionArea = E.min_mask_region_area,
    low_res_stability: o.LowResStability = E.low_res_stability,
    backbone: o.Backbone = "vit_tiny", variant: o.Variant = "hq", checkpoint: o.Checkpoint = None,
    random_weights: o.RandomWeights = False, backend: o.Backend = "auto", precision: o.ModelPrecision = None,
    dla_core: o.DlaCore = None,
):
    """Segment an image from box and point prompts (or everything in it) and write the mask."""
    from ..apps import files
    from ..runtime.choice import ModelChoice

    model = ModelChoice(folder=folder, backend=backend, precision=precision, backbone=backbone, variant=variant,
                        checkpoint=checkpoint, random_weights=random_weights, dla_core=dla_core)
    generator = GeneratorOptions(
        points_per_side=points_per_side, points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh, stability_score_offset=stability_score_offset,
        box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh,
        crop_overlap_ratio=crop_overlap_ratio, crop_n_points_downscale_factor=crop_n_points_downscale_factor,
        min_mask_region_area=min_mask_region_area, low_res_stability=low_res_stability)
    box, point = box or [], point or []
    files.check_predict_options(box, point, out, everything, generator, overlay)
    predictor = model.open()
    if everything:
        typer.echo(files.everything_to_files(predictor, image, generator, out=out, overlay=overlay).summary())
        return
    result = files.predict_to_files(predictor, image, boxes=box, points=point, out=out, overlay=overlay,
                                    multimask_output=multimask)
    typer.echo(result.summary())


@command()
def segment(
    folder: o.Folder = None,
    *,
    images: Annotated[str, typer.Option(
        "--images", help="Glob of image files, quoted ('val2017/**/*.jpg'); paths count from the part before the "
                         "first wildcard.")],
    boxes: Annotated[Path | None, typer.Option(
        "--boxes", callback=o.checked(inputs.boxes_file),
        help="COCO annotations file, or a JSON object: file name -> list of x,y,w,h boxes (COCO pixels).")] = None,
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder: <image path>.json per image + results.json (COCO RLE results); rerun to "
                            "resume.")],
    queue_size: Annotated[int, typer.Option(
        "--queue-size", min=1, help="Images waiting between reading, the model and writing.")] = 4,
    everything: Annotated[bool, typer.Option(
        "--everything", help="Every mask in each image (SamAutomaticMaskGenerator), no --boxes.")] = False,
    on_error: Annotated[str, typer.Option(
        "--on-error", **o.choice(inputs.ON_ERROR, "--on-error value"),
        help="A bad image or box: skip (list it in OUT/errors.json, exit 3 at the end) or stop (exit at "
             "once).")] = "skip",
    detector: o.DetectorGraph = None, detector_classes: o.DetectorClasses = None,
    detector_score: o.DetectorScore = 0.25,
    points_per_side: o.PointsPerSide = E.points_per_side, points_per_batch: o.PointsPerBatch = E.points_per_batch,
    pred_iou_thresh: o.PredIouThresh = E.pred_iou_thresh,
    stability_score_thresh: o.StabilityScoreThresh = E.stability_score_thresh,
    stability_score_offset: o.StabilityScoreOffset = E.stability_score_offset,
    box_nms_thresh: o.BoxNmsThresh = E.box_nms_thresh, crop_n_layers: o.CropNLayers = E.crop_n_layers,
    crop_nms_thresh: o.CropNmsThresh = E.crop_nms_thresh,
    crop_overlap_ratio: o.CropOverlapRatio = E.crop_overlap_ratio,
    crop_n_points_downscale_factor: o.CropNPointsDownscaleFactor = E.crop_n_points_downscale_factor,
    min_mask_region_area: o.MinMaskRegionArea = E.min_mask_region_area,
    low_res_stability: o.LowResStability = E.low_res_stability,
    backbone: o.Backbone = "vit_tiny", variant: o.Variant = "hq", checkpoint: o.Checkpoint = None,
    random_weights: o.RandomWeights = False, backend: o.Backend = "auto", precision: o.ModelPrecision = None,
    shard: o.ShardOption = None, ray: o.Ray = False, ray_address: o.RayAddress = None, ray_actors: o.RayActors = None,
    ray_gpus_per_actor: o.RayGpusPerActor = None,
    dla_core: o.DlaCore = None,
):
    """Segment an image set from box prompts, a detector's boxes or everything in it into COCO RLE results,
    streamed and resumable.
    \f
    Long: the signature is the command's thirty options (one line each, as typer reads them); the body builds
    the spec and calls ``segment_images``."""
    import os

    from ..apps.detector import DetectorSpec
    from ..apps.segment import RayOptions, SegmentSpec, segment_images
    from ..apps.shards import choose_shard
    from ..errors import SKIPPED_EXIT_CODE
    from ..runtime.choice import ModelChoice

    model = ModelChoice(folder=folder, backend=backend, precision=precision, backbone=backbone, variant=variant,
                        checkpoint=checkpoint, random_weights=random_weights, dla_core=dla_core)
    generator = GeneratorOptions(
        points_per_side=points_per_side, points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh, stability_score_offset=stability_score_offset,
        box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh,
        crop_overlap_ratio=crop_overlap_ratio, crop_n_points_downscale_factor=crop_n_points_downscale_factor,
        min_mask_region_area=min_mask_region_area, low_res_stability=low_res_stability)
    ray_given = {k: v for k, v in [("address", ray_address), ("actors", ray_actors),
                                   ("gpus_per_actor", ray_gpus_per_actor)] if v is not None}
    if ray_given and not ray:
        raise UsageError("--ray-address, --ray-actors and --ray-gpus-per-actor apply to --ray: add --ray")
    spec = SegmentSpec(images=images, boxes=None if boxes is None else str(boxes), out=str(out),
                       queue_size=queue_size, model=model.describe(),
                       everything=generator if everything else None, on_error=on_error,
                       detector=None if detector is None else str(detector),
                       detector_options=DetectorSpec(min_score=detector_score, classes=detector_classes),
                       shard=choose_shard(shard, os.environ), ray=RayOptions(**ray_given) if ray else None)
    summary = segment_images(spec, model.open)
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(SKIPPED_EXIT_CODE)


@command()
def bench(
    folders: Annotated[list[Path] | None, typer.Argument(
        callback=o.checked(o.artifact_manifest), show_default=False,
        help="Artifact folders to benchmark (default: vit_tiny HQ and SAM, random weights).")] = None,
    backbone: Annotated[list[str] | None, typer.Option(
        "--backbone", "-b", **o.BACKBONE, help="Backbones when no folder is given (repeat).")] = None,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", **o.VARIANT, help="hq and/or sam (repeat; default both).")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", **o.choice(inputs.BACKENDS[1:], "backend"),
        help="torch, onnxruntime, tensorrt (repeat; default: the best here).")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", **o.PRECISION, help="fp32, fp16, int8 (repeat; default fp32).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", callback=o.checked(inputs.checkpoint_file),
        help="Use this checkpoint instead of random weights.")] = None,
    table10: Annotated[bool, typer.Option("--table10", help="All eight rows of the HQ-SAM paper's Table 10.")] = False,
    reference: Annotated[bool, typer.Option(
        "--reference", help="Also time the official segment_anything_hq SamPredictor.")] = False,
    scaling: Annotated[bool, typer.Option(
        "--scaling", help="Decoder latency vs prompts (1-64), encoder throughput vs batch (1-4).")] = False,
    iters: Annotated[int, typer.Option("--iters", min=1, help="Timed iterations per measurement.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up iterations.")] = 2,
    rounds: Annotated[int, typer.Option(
        "--rounds", min=1, help="Measure every row this many times, interleaved; keep the median (noisy "
                                "machines).")] = 1,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON.")] = None,
    markdown_out: Annotated[Path | None, typer.Option("--markdown", help="Write the markdown table.")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot (needs matplotlib).")] = None,
):
    """Params / latency / FPS / memory table, next to the HQ-SAM paper's Table 10."""
    from .. import console
    from ..benchmarks import harness, report

    targets = harness.plan_targets(folders=[str(f) for f in folders or []], backbones=backbone or [],
                                   variants=variant or [], backends=backend or [], precisions=precision or [],
                                   table10=table10, reference=reference,
                                   checkpoint=None if checkpoint is None else str(checkpoint))
    rows = harness.run_rows(targets, iters=iters, warmup=warmup, scaling=scaling, rounds=rounds)
    console.show(report.blocks(rows))
    if json_out:
        report.write_json(rows, json_out)
    if markdown_out:
        report.write_markdown(rows, markdown_out)
    if plot_out:
        report.plot(rows, plot_out)
