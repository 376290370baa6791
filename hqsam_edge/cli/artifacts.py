"""Commands over an artifact folder: ``build`` (precision graphs, TensorRT engines), ``verify`` (every file
against the manifest), ``triton`` (a Triton model repository)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import inputs
from .group import command
from .options import BUILD_BACKEND, PRECISION, ArtifactFolder, artifact_manifest, checked, choice


@command()
def build(
    folder: Annotated[Path, typer.Argument(callback=checked(artifact_manifest),
                                           help="Artifact folder from `hqsam-edge export`.")],
    backend: Annotated[str, typer.Option(
        "--backend", **BUILD_BACKEND, help="onnxruntime (CPU/GPU graphs) or tensorrt (engines).")] = "onnxruntime",
    precision: Annotated[str | None, typer.Option(
        "--precision", **PRECISION, show_default=False,
        help="fp32, fp16 or int8 (default: the fastest accurate one for the backend: fp32 for ONNX Runtime on a CPU, "
             "fp16 on a GPU and for TensorRT).")] = None,
    calib_images: Annotated[Path | None, typer.Option(
        "--calib-images", callback=checked(inputs.calibration_folder),
        help="Folder of your images (any size) for INT8: calibration (TensorRT, or --calib-method max|percentile|"
             "entropy), the accuracy check and the layer search.")] = None,
    calib_limit: Annotated[int, typer.Option(
        "--calib-limit", min=1, help="Calibration images to use (static ranges).")] = 16,
    calib_method: Annotated[str | None, typer.Option(
        "--calib-method", **choice(inputs.CALIB_METHODS, "calibration method"), show_default=False,
        help="INT8 activation ranges: max, percentile or entropy (from calibration images), or dynamic (ranged per "
             "call, ONNX Runtime only). Default: dynamic for ONNX Runtime graphs, max for TensorRT's.")] = None,
    max_prompts: Annotated[int, typer.Option("--max-prompts", min=1, help="Decoder profile: prompts per call.")] = 64,
    max_points: Annotated[int, typer.Option(
        "--max-points", min=2, help="Decoder profile: points per prompt (a box is 2).")] = 16,
    max_batch: Annotated[int, typer.Option(
        "--max-batch", min=1, help="Encoder profile: images per call (Triton's dynamic batching).")] = 1,
    workspace_gb: Annotated[float, typer.Option("--workspace-gb", help="TensorRT workspace limit.")] = 4.0,
    dla_core: Annotated[int | None, typer.Option(
        "--dla-core", help="Jetson DLA core for the encoder (GPU fallback on; fp16 / int8).")] = None,
    version_compatible: Annotated[bool, typer.Option(
        "--version-compatible", help="TensorRT version-compatible engines.")] = False,
    print_trtexec: Annotated[str | None, typer.Option(
        "--print-trtexec", **choice(inputs.TRTEXEC_GENERATIONS, "TensorRT generation"),
        help="Only print the trtexec lines for TensorRT 8, 10 or 11.")] = None,
    min_sqnr_db: Annotated[float | None, typer.Option(
        "--min-sqnr-db", help="Override the variant's embedding SQNR bound (dB).")] = None,
    min_mask_iou: Annotated[float | None, typer.Option(
        "--min-mask-iou", help="Override the variant's mean mask IoU bound.")] = None,
    graph_backend: Annotated[str | None, typer.Option(
        "--graphs-for", **BUILD_BACKEND,
        help="Lay the graphs out for onnxruntime or tensorrt (default: the backend's); `--backend onnxruntime "
             "--graphs-for tensorrt` prepares INT8 graphs on a workstation for a Jetson's build.")] = None,
    layer_search: Annotated[bool, typer.Option(
        "--layer-search", help="INT8 missing its bound: keep in float the layers with the most harm per ms they "
                               "would save (each measured end to end; minutes) until it is met.")] = False,
):
    """FP16 / INT8 graphs (checked against PyTorch on the CPU) and TensorRT engines."""
    from ..pipeline import build as pipeline

    spec = pipeline.BuildSpec(folder=str(folder), backend=backend, precision=precision,
                              calib_images=None if calib_images is None else str(calib_images),
                              calib_limit=calib_limit, calib_method=calib_method, max_prompts=max_prompts,
                              max_points=max_points, max_batch=max_batch, workspace_gb=workspace_gb,
                              dla_core=dla_core, version_compatible=version_compatible, min_sqnr_db=min_sqnr_db,
                              min_mask_iou=min_mask_iou, graph_backend=graph_backend, layer_search=layer_search)
    if print_trtexec is not None:
        typer.echo("\n".join(pipeline.trtexec_lines(spec, print_trtexec)))
        if dla_core is not None:
            typer.echo(pipeline.DLA_NOTE, err=True)
        return
    for line in pipeline.summary(spec, pipeline.build(spec)):
        typer.echo(line)


@command()
def verify(
    folder: ArtifactFolder,
    update: Annotated[bool, typer.Option(
        "--update", help="First record the files that have no size and sha256 yet (a folder of an older "
                         "hqsam-edge), as they are now.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the result as JSON on stdout (for scripts) instead of the table.")] = False,
):
    """Check every file of an artifact folder against its manifest: a table of file, size, sha256 and status."""
    from .. import console
    from ..pipeline.verify import verify_folder

    report = verify_folder(folder, update=update)
    if json_out:
        typer.echo(report.to_json())
    else:
        console.show([report.table()])
    report.raise_for_problems()


@command()
def triton(
    folder: ArtifactFolder,
    out: Annotated[Path, typer.Option("--out", "-o", help="Triton model repository to write.")],
    backend: Annotated[str, typer.Option(
        "--backend", **BUILD_BACKEND,
        help="onnxruntime (model.onnx) or tensorrt (engines from `build --backend tensorrt`).")] = "onnxruntime",
    precision: Annotated[str | None, typer.Option(
        "--precision", **PRECISION,
        help="fp32, fp16 or int8 of the folder (default: the first it has for the backend).")] = None,
    max_prompts: Annotated[int | None, typer.Option(
        "--max-prompts", min=1, help="Prompts per decoder call (default: the engines' profile, or 64).")] = None,
    max_batch: Annotated[int | None, typer.Option(
        "--max-batch", min=1, help="Encoder images per batched call (default: the engines' profile, or 4).")] = None,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Instances of each model.")] = 1,
    kind: Annotated[str, typer.Option(
        "--kind", **choice(inputs.TRITON_KINDS, "instance kind"),
        help="gpu or cpu: where the encoder and decoder instances run.")] = "gpu",
    max_queue_delay_us: Annotated[int, typer.Option(
        "--max-queue-delay-us", min=0, help="Encoder dynamic batching: wait this long for more images.")] = 0,
    preferred_batch_size: Annotated[list[int] | None, typer.Option(
        "--preferred-batch-size", help="Encoder dynamic batching: preferred batch (repeat).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Model name (default <variant>_<backbone>; also <name>_encoder, <name>_decoder).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing repository.")] = False,
    runtime: Annotated[str, typer.Option(
        "--runtime", **choice(inputs.TRITON_RUNTIMES, "Triton runtime"),
        help="native (Triton's onnxruntime / tensorrt backends) or python (the ONNX graphs run by ONNX Runtime in "
             "Triton's Python backend, for servers without those backends).")] = "native",
    python_instances: Annotated[int | None, typer.Option(
        "--python-instances", min=1, show_default=False,
        help="Instances of the image + prompts model: requests in flight, so the encoder batch Triton can merge "
             "(default: --max-batch, or --instances if more).")] = None,
    max_request_prompts: Annotated[int | None, typer.Option(
        "--max-request-prompts", min=1, show_default=False,
        help="Prompts one request may hold (default 64, or --max-prompts if larger); bounds /dev/shm.")] = None,
    max_image_pixels: Annotated[int, typer.Option(
        "--max-image-pixels", min=1,
        help="Largest image a request may send, in pixels; bounds /dev/shm.")] = 4096 * 4096,
):
    """A Triton Inference Server model repository: encoder, decoder, and a Python model (image + prompts -> masks)."""
    from ..serve.triton import TritonSpec, write_repository

    spec = TritonSpec(folder=str(folder), out=str(out), backend=backend, precision=precision, name=name,
                      max_prompts=max_prompts, max_batch=max_batch, instances=instances, kind=kind,
                      max_queue_delay_us=max_queue_delay_us, preferred_batch_sizes=tuple(preferred_batch_size or ()),
                      overwrite=overwrite, runtime=runtime, python_instances=python_instances,
                      max_request_prompts=max_request_prompts, max_image_pixels=max_image_pixels)
    typer.echo(write_repository(spec).summary())
