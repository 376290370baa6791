"""The ``hqsam-edge`` command line (typer). Each command parses options and calls the library.

Errors of ours (``HQSamEdgeError``) become one line on stderr and a non-zero
exit code; heavy modules are imported inside the commands.
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from .errors import HQSamEdgeError

app = typer.Typer(
    name="hqsam-edge",
    help="HQ-SAM from PyTorch checkpoints to verified ONNX / TensorRT deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def cli_errors(fn):
    """Turn our errors (and a few OS ones) into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.showwarning = lambda msg, *a, **k: typer.echo(f"warning: {msg}", err=True)
            try:
                return fn(*args, **kwargs)
            except HQSamEdgeError as exc:
                _fail(str(exc), exc.exit_code)
            except KeyboardInterrupt:
                _fail("interrupted", 130)
            except MemoryError:
                _fail("out of memory; try a smaller backbone or fewer prompts per call", 1)

    return wrapper


BackboneOpt = typer.Option("vit_tiny", "--backbone", "-b", help="vit_tiny (Light HQ-SAM / MobileSAM), vit_b, vit_l, vit_h")
VariantOpt = typer.Option("hq", "--variant", help="hq (HQ-SAM) or sam (plain SAM / MobileSAM)")


@app.command()
@cli_errors
def info(params: bool = typer.Option(False, "--params", help="Also print parameter sizes next to the paper's Table 10.")):
    """Versions, usable backends and devices (and why a backend is not usable)."""
    from .runtime import environment as env

    for key, value in env.platform_summary().items():
        typer.echo(f"{key:<18}{value}")
    for name, version in env.library_versions().items():
        typer.echo(f"{name:<18}{version or 'not installed'}")
    typer.echo("backends:")
    for status in env.backend_statuses():
        typer.echo(f"  {status.name:<12}{'yes' if status.usable else 'no '}  {status.detail}")
    if params:
        from .benchmarks.params import format_param_table, param_table

        typer.echo("\nParameters (MiB of fp32) vs HQ-SAM paper Table 10:")
        typer.echo(format_param_table(param_table()))


@app.command()
@cli_errors
def download(
    backbone: str = BackboneOpt,
    variant: str = VariantOpt,
    dest: Optional[Path] = typer.Option(None, "--dest", help="Folder (default: $HQSAM_EDGE_HOME or ~/.cache/hqsam-edge)."),
    url: Optional[str] = typer.Option(None, "--url", help="Download from this address instead (a mirror)."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected sha256 when --url is used."),
):
    """Download an official checkpoint, with resume and a sha256 check."""
    from .model.download import download_checkpoint

    path = download_checkpoint(backbone, variant, dest, url=url, sha256=sha256, progress=sys.stderr.isatty())
    typer.echo(str(path))


@app.command()
@cli_errors
def export(
    backbone: str = BackboneOpt,
    variant: str = VariantOpt,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Official .pth checkpoint."),
    random_weights: bool = typer.Option(False, "--random-weights", help="No checkpoint: random weights (seeded)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Artifact folder (default build/<variant>_<backbone>)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)."),
    hq_token_only: bool = typer.Option(False, "--hq-token-only", help="Decoder returns the HQ token's mask alone."),
    multimask: bool = typer.Option(False, "--multimask", help="Decoder picks SAM's best of three masks (HQ: + HQ logits)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing artifact folder."),
):
    """Export the encoder and decoder ONNX graphs, verified against PyTorch, with a manifest."""
    from .export.onnx_export import ExportSpec, export_artifacts

    spec = ExportSpec(backbone=backbone, variant=variant, checkpoint=None if checkpoint is None else str(checkpoint),
                      random_weights=random_weights, out=None if out is None else str(out), opset=opset,
                      hq_token_only=hq_token_only, multimask_output=multimask, overwrite=overwrite)
    manifest = export_artifacts(spec)
    worst = max(v for graph in ("box", "8_boxes") for k, v in manifest.parity["decoder"][graph].items() if "rel" in k)
    typer.echo(f"wrote {spec.out_dir}: encoder.onnx, decoder.onnx, manifest.json "
               f"(ONNX Runtime vs PyTorch: max relative logit error {worst:.1e})")


@app.command()
@cli_errors
def predict(
    folder: Optional[Path] = typer.Argument(None, help="Artifact folder from `hqsam-edge export` (else use --checkpoint / --random-weights)."),
    image: Path = typer.Option(..., "--image", "-i", help="Image file (any format Pillow reads)."),
    box: list[str] = typer.Option([], "--box", help="x0,y0,x1,y1 in pixels; repeat for one mask per box."),
    point: list[str] = typer.Option([], "--point", help="x,y[,label] in pixels (label 1 fg, 0 bg); repeat."),
    out: Path = typer.Option(..., "--out", "-o", help="Mask PNG to write (0/255, union of the masks)."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write the image with the masks blended in."),
    backbone: str = BackboneOpt,
    variant: str = VariantOpt,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Official .pth checkpoint."),
    random_weights: bool = typer.Option(False, "--random-weights", help="No checkpoint: random weights (for speed tests)."),
    backend: str = typer.Option("auto", "--backend", help="auto, torch, onnxruntime or tensorrt."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, fp16 or int8 (artifact variants)."),
    multimask: Optional[bool] = typer.Option(None, "--multimask/--single-mask", help="SAM's three masks (keep the best) or one; default: as exported."),
):
    """Segment an image from box and point prompts and write the mask."""
    from .runtime.files import predict_to_files
    from .runtime.open import open_predictor

    predictor = open_predictor(folder, backend=backend, precision=precision, backbone=backbone, variant=variant,
                               checkpoint=checkpoint, random_weights=random_weights)
    result = predict_to_files(predictor, image, boxes=box, points=point, out=out, overlay=overlay,
                              multimask_output=multimask)
    typer.echo(result.summary())


@app.command()
@cli_errors
def bench(
    folders: list[Path] = typer.Argument(None, help="Artifact folders to benchmark (default: vit_tiny HQ and SAM, random weights)."),
    backbone: list[str] = typer.Option([], "--backbone", "-b", help="Backbones when no folder is given (repeat)."),
    variant: list[str] = typer.Option([], "--variant", help="hq and/or sam (repeat; default both)."),
    backend: list[str] = typer.Option([], "--backend", help="torch, onnxruntime, tensorrt (repeat; default: the best here)."),
    precision: list[str] = typer.Option([], "--precision", help="fp32, fp16, int8 (repeat; default fp32)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Use this checkpoint instead of random weights."),
    table10: bool = typer.Option(False, "--table10", help="All eight rows of the HQ-SAM paper's Table 10."),
    reference: bool = typer.Option(False, "--reference", help="Also time the official segment_anything_hq SamPredictor."),
    scaling: bool = typer.Option(False, "--scaling", help="Decoder latency vs prompts (1-64), encoder throughput vs batch (1-4)."),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed iterations per measurement."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed warm-up iterations."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the rows as JSON."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write the markdown table."),
    plot_out: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot (needs matplotlib)."),
):
    """Params / latency / FPS / memory table, next to the HQ-SAM paper's Table 10."""
    from .benchmarks import harness, report

    targets = harness.plan_targets(folders=[str(f) for f in folders or []], backbones=backbone, variants=variant,
                                   backends=backend, precisions=precision, table10=table10, reference=reference,
                                   checkpoint=None if checkpoint is None else str(checkpoint))
    rows = harness.run_rows(targets, iters=iters, warmup=warmup, scaling=scaling, progress=sys.stderr.isatty())
    typer.echo(report.markdown(rows))
    if json_out:
        report.write_json(rows, json_out)
    if markdown_out:
        report.write_markdown(rows, markdown_out)
    if plot_out:
        report.plot(rows, plot_out)


def main() -> None:  # pragma: no cover - console entry
    app()
