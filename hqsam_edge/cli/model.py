"""Commands that get a model to work with: ``info`` (this machine), ``download`` (a checkpoint), ``export``
(the verified ONNX graphs, and with ``--precision`` a built precision too)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import inputs
from .group import command
from .options import BUILD_BACKEND, PRECISION, Backbone, Checkpoint, RandomWeights, Variant, checked, choice


@command()
def info(params: Annotated[bool, typer.Option("--params", help="Also print parameter sizes next to the paper's "
                                                                "Table 10.")] = False):
    """Platform (Jetson model, JetPack, power mode, GPU, CUDA, TensorRT), versions, usable backends, and why not."""
    from .. import console
    from ..hardware import this_platform
    from ..runtime import environment as env
    from ..tables import Table

    machine = this_platform()
    pairs = [("python", machine.python), *machine.rows(), *(("note", note) for note in machine.notes),
             *((name, version or "not installed") for name, version in env.library_versions().items())]
    blocks = [console.key_values(pairs, title="platform and versions"),
              Table(("backend", "usable", "detail"), [(s.name, "yes" if s.usable else "no", s.detail)
                                                      for s in env.backend_statuses()], title="backends")]
    if params:
        from ..benchmarks.params import param_block, param_table

        blocks.append(param_block(param_table()))
    console.show(blocks)


@command()
def download(
    backbone: Backbone = "vit_tiny",
    variant: Variant = "hq",
    dest: Annotated[Path | None, typer.Option(
        "--dest", help="Folder (default: $HQSAM_EDGE_HOME or ~/.cache/hqsam-edge).")] = None,
    url: Annotated[str | None, typer.Option("--url", help="Download from this address instead (a mirror).")] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="Expected sha256 when --url is used.")] = None,
):
    """Download an official checkpoint, with resume and a sha256 check."""
    from ..model.download import download_checkpoint

    path = download_checkpoint(backbone, variant, dest, url=url, sha256=sha256, progress=sys.stderr.isatty())
    typer.echo(str(path))


@command()
def export(
    backbone: Backbone = "vit_tiny",
    variant: Variant = "hq",
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Artifact folder (default build/<variant>_<backbone>).")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (17 or newer).")] = 17,
    hq_token_only: Annotated[bool, typer.Option(
        "--hq-token-only", help="Decoder returns the HQ token's mask alone.")] = False,
    multimask: Annotated[bool, typer.Option(
        "--multimask", help="Decoder picks SAM's best of three masks (HQ: + HQ logits).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing artifact folder.")] = False,
    with_processing: Annotated[bool, typer.Option(
        "--with-processing", help="Also preprocess.onnx (image -> encoder input) and postprocess.onnx "
                                  "(masks at the image's size).")] = False,
    precision: Annotated[str | None, typer.Option(
        "--precision", **PRECISION, show_default=False,
        help="Then build this precision into the folder (as `hqsam-edge build`): one command from a checkpoint "
             "to a deployment.")] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", **BUILD_BACKEND, show_default=False,
        help="With --precision: onnxruntime graphs (default) or tensorrt engines.")] = None,
    calib_images: Annotated[Path | None, typer.Option(
        "--calib-images", callback=checked(inputs.calibration_folder),
        help="With --precision int8: your images, for calibration (TensorRT, or --calib-method max|percentile|entropy) "
             "and for the accuracy check.")] = None,
    calib_method: Annotated[str | None, typer.Option(
        "--calib-method", **choice(inputs.CALIB_METHODS, "calibration method"), show_default=False,
        help="With --precision int8: as `build --calib-method` (default: dynamic for ONNX Runtime, max for "
             "TensorRT).")] = None,
    layer_search: Annotated[bool, typer.Option(
        "--layer-search", help="With --precision int8: keep in float the layers that harm most, until the bound "
                               "is met (as `build --layer-search`).")] = False,
):
    """Export the encoder and decoder ONNX graphs, verified against PyTorch, with a manifest (and with --precision,
    build that precision into the folder)."""
    from ..pipeline.export import ExportSpec, export_artifacts, summary

    spec = ExportSpec(backbone=backbone, variant=variant, checkpoint=None if checkpoint is None else str(checkpoint),
                      random_weights=random_weights, out=None if out is None else str(out), opset=opset,
                      hq_token_only=hq_token_only, multimask_output=multimask, overwrite=overwrite,
                      with_processing=with_processing)
    if precision is None and backend is None and calib_images is None and calib_method is None and not layer_search:
        typer.echo(summary(spec, export_artifacts(spec)))
        return
    from ..pipeline import build as pipeline

    build_spec = pipeline.BuildSpec(folder=str(spec.out_dir), backend=backend or "onnxruntime", precision=precision,
                                    calib_images=None if calib_images is None else str(calib_images),
                                    calib_method=calib_method, layer_search=layer_search)
    manifest, artifact = pipeline.export_then_build(spec, build_spec)
    typer.echo(summary(spec, manifest))
    for line in pipeline.summary(build_spec, artifact):
        typer.echo(line)
