"""The ``hqsam-edge`` command line (typer). Each command parses options and calls the library.

Errors of ours (``HQSamEdgeError``) become one line on stderr and a non-zero
exit code; heavy modules are imported inside the commands.
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from typer.core import TyperGroup

from . import inputs
from .atomic import cleanup_summary, private_tempdir, take_ledger
from .errors import HQSamEdgeError
from .interrupts import interruption, signals_raise

if TYPE_CHECKING:
    from .apps.generator_options import GeneratorOptions
    from .runtime.choice import ModelChoice



def _error_line(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


class Commands(TyperGroup):
    """The commands, run so that a usage error (an unknown option, a value not among the choices, a missing
    argument) or a path an option's check refused is one line on stderr and a non-zero exit, never the boxed
    usage text: the options are checked before anything heavy is imported, so this takes a fraction of a
    second."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except HQSamEdgeError as exc:  # a path or value refused while the options were read
            _error_line(str(exc))
            sys.exit(exc.exit_code)
        except typer.Abort:
            _error_line("aborted")
            sys.exit(1)
        except Exception as exc:
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise  # not a usage error (typer's own, or click's under typer < 0.2x)
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `hqsam-edge`: the help, as typer does
                typer.echo(exc.format_message(), err=True)
            else:
                ctx = getattr(exc, "ctx", None)
                _error_line(exc.format_message() + (f" (see `{ctx.command_path} --help`)" if ctx else ""))
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) inside a command comes back as n


def choice(values: tuple[str, ...], what: str) -> dict:
    """Option settings for one of fixed ``values`` (``inputs``): shown as ``a|b|c``, refused with the words the
    library uses (``unknown precision 'fp61'; choose one of: fp32, fp16, int8``)."""

    def parse(value: str) -> str:
        try:
            return inputs.require_choice(value, values, what)
        except HQSamEdgeError as exc:
            raise typer.BadParameter(str(exc)) from None

    return {"parser": parse, "metavar": "|".join(values)}


def checked(check):
    """An option callback: ``check`` (an ``inputs`` path check) on the value given, or on each of a list."""

    def callback(value):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None:
                check(item)
        return value

    return callback


def artifact_manifest(folder: Path) -> None:
    """An artifact folder whose manifest reads (``read_manifest``: numpy and the manifest, nothing heavy)."""
    inputs.artifact_folder(folder)
    from .export.manifest import read_manifest

    read_manifest(folder)


app = typer.Typer(
    name="hqsam-edge",
    cls=Commands,
    help="HQ-SAM from PyTorch checkpoints to verified ONNX / TensorRT deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    _error_line(message)
    raise typer.Exit(code)


def cli_errors(fn):
    """Turn our errors (and a few OS ones) into one line on stderr and an exit code.

    The command runs with SIGINT / SIGTERM raising ``Interrupted`` (so that its temporaries go as the stack
    unwinds) and with ``tempfile`` pointed at a folder of its own; interrupted, it ends with one line saying
    what it removed and what it kept, and exit code 130 (SIGINT) or 143 (SIGTERM)."""

    sig = inspect.signature(fn)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=bool)
             for name, default in (("verbose", VerboseOpt), ("quiet", QuietOpt))]

    @functools.wraps(fn)
    def wrapper(*args, verbose: bool = False, quiet: bool = False, **kwargs):
        from .progress import Reporter, reporting

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.showwarning = lambda msg, *a, **k: typer.echo(f"warning: {msg}", err=True)
            take_ledger()
            try:
                with signals_raise(), private_tempdir(), reporting(None if quiet else Reporter(verbose=verbose)):
                    return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort):
                raise
            except BaseException as exc:
                stop = interruption(exc)  # also one a library wrapped in its own error
                if stop is not None:
                    _fail(f"{stop}: {cleanup_summary()}", stop.exit_code)
                if isinstance(exc, HQSamEdgeError):
                    _fail(str(exc), exc.exit_code)
                if isinstance(exc, KeyboardInterrupt):
                    _fail(f"interrupted: {cleanup_summary()}", 130)
                if isinstance(exc, MemoryError):
                    _fail("out of memory; try a smaller backbone or fewer prompts per call", 1)
                raise

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**fn.__annotations__, "verbose": bool, "quiet": bool}
    return wrapper


VerboseOpt = typer.Option(False, "--verbose", "-v", help="Progress: also a line per step (not only per stage).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress lines or bars (errors and results only).")


def model_options(fn):
    """Add the options that name a model (an artifact folder with ``--backend`` / ``--precision``, or
    ``--checkpoint`` / ``--random-weights`` of ``--backbone`` / ``--variant``) to a command, and hand it
    one ``model: ModelChoice``."""
    extra = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)
             for name, default, annotation in (
                 ("folder", FolderArg, Optional[Path]), ("backbone", BackboneOpt, str), ("variant", VariantOpt, str),
                 ("checkpoint", CheckpointOpt, Optional[Path]), ("random_weights", RandomWeightsOpt, bool),
                 ("backend", BackendOpt, str), ("precision", PrecisionOpt, Optional[str]))]
    names = [p.name for p in extra]
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "model"]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .runtime.choice import ModelChoice

        named = ModelChoice(**{name: kwargs.pop(name) for name in names})
        return fn(*args, model=named, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*extra[:1], *params, *extra[1:]])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in fn.__annotations__.items() if k != "model"},
                               **{p.name: p.annotation for p in extra}}
    return wrapper


def generator_options(fn):
    """Add the everything mode's options (``--points-per-side`` ...: ``apps.generator_options.GeneratorOptions``,
    its defaults and help) to a command, and hand it one ``generator: GeneratorOptions``."""
    from dataclasses import fields

    from .apps.generator_options import GeneratorOptions

    cli_fields = [f for f in fields(GeneratorOptions) if f.name not in ("point_grids", "output_mode")]
    extra = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=type(f.default),  # as typed
                               default=typer.Option(f.default, "--" + f.name.replace("_", "-"),
                                                    help=f"--everything: {f.metadata['help']}"))
             for f in cli_fields]
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "generator"]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        options = GeneratorOptions(**{f.name: kwargs.pop(f.name) for f in cli_fields})
        return fn(*args, generator=options, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in fn.__annotations__.items() if k != "generator"},
                               **{p.name: p.annotation for p in extra}}
    return wrapper


BACKBONE = choice(inputs.BACKBONES, "backbone")
VARIANT = choice(inputs.VARIANTS, "variant")
PRECISION = choice(inputs.PRECISIONS, "precision")
BUILD_BACKEND = choice(inputs.BUILD_BACKENDS, "backend")
BackboneOpt = typer.Option("vit_tiny", "--backbone", "-b", **BACKBONE, help="vit_tiny (Light HQ-SAM / MobileSAM), vit_b, vit_l, vit_h.")
VariantOpt = typer.Option("hq", "--variant", **VARIANT, help="hq (HQ-SAM) or sam (plain SAM / MobileSAM).")
FolderArg = typer.Argument(None, callback=checked(artifact_manifest), show_default=False,
                           help="Artifact folder from `hqsam-edge export` (else use --checkpoint / --random-weights).")
CheckpointOpt = typer.Option(None, "--checkpoint", "-c", callback=checked(inputs.checkpoint_file),
                             help="Official .pth checkpoint (or one from `hqsam-edge train`).")
RandomWeightsOpt = typer.Option(False, "--random-weights", help="No checkpoint: random weights (seeded; for speed and smoke runs).")
BackendOpt = typer.Option("auto", "--backend", **choice(inputs.BACKENDS, "backend"),
                          help="auto (TensorRT > ONNX Runtime > torch, as the folder has), torch, onnxruntime or tensorrt.")
PrecisionOpt = typer.Option(None, "--precision", **choice(inputs.MODEL_PRECISIONS, "precision"),
                            help="fp32, fp16 or int8 of a folder (default: its best here); bf16 with torch.")


@app.command()
@cli_errors
def info(params: bool = typer.Option(False, "--params", help="Also print parameter sizes next to the paper's Table 10.")):
    """Platform (Jetson model, JetPack, power mode, GPU, CUDA, TensorRT), versions, usable backends, and why not."""
    from . import console
    from .hardware import this_platform
    from .runtime import environment as env
    from .tables import Table

    machine = this_platform()
    pairs = [("python", machine.python), *machine.rows(), *(("note", note) for note in machine.notes),
             *((name, version or "not installed") for name, version in env.library_versions().items())]
    blocks = [console.key_values(pairs, title="platform and versions"),
              Table(("backend", "usable", "detail"), [(s.name, "yes" if s.usable else "no", s.detail)
                                                      for s in env.backend_statuses()], title="backends")]
    if params:
        from .benchmarks.params import param_block, param_table

        blocks.append(param_block(param_table()))
    console.show(blocks)


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
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: bool = RandomWeightsOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Artifact folder (default build/<variant>_<backbone>)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)."),
    hq_token_only: bool = typer.Option(False, "--hq-token-only", help="Decoder returns the HQ token's mask alone."),
    multimask: bool = typer.Option(False, "--multimask", help="Decoder picks SAM's best of three masks (HQ: + HQ logits)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing artifact folder."),
    with_processing: bool = typer.Option(False, "--with-processing", help="Also preprocess.onnx (image -> encoder input) and postprocess.onnx (masks at the image's size)."),
    precision: Optional[str] = typer.Option(None, "--precision", **PRECISION, show_default=False,
                                            help="Then build this precision into the folder (as `hqsam-edge build`): one command from a checkpoint to a deployment."),
    backend: Optional[str] = typer.Option(None, "--backend", **BUILD_BACKEND, show_default=False,
                                          help="With --precision: onnxruntime graphs (default) or tensorrt engines."),
    calib_images: Optional[Path] = typer.Option(None, "--calib-images", callback=checked(inputs.calibration_folder), help="With --precision int8: your images for calibration."),
    layer_search: bool = typer.Option(False, "--layer-search", help="With --precision int8: keep in float the layers that harm most, until the bound is met (as `build --layer-search`)."),
):
    """Export the encoder and decoder ONNX graphs, verified against PyTorch, with a manifest (and with --precision,
    build that precision into the folder)."""
    from .pipeline.export import ExportSpec, export_artifacts, summary

    spec = ExportSpec(backbone=backbone, variant=variant, checkpoint=None if checkpoint is None else str(checkpoint),
                      random_weights=random_weights, out=None if out is None else str(out), opset=opset,
                      hq_token_only=hq_token_only, multimask_output=multimask, overwrite=overwrite,
                      with_processing=with_processing)
    if precision is None and backend is None and calib_images is None and not layer_search:
        typer.echo(summary(spec, export_artifacts(spec)))
        return
    from .pipeline import build as pipeline

    build_spec = pipeline.BuildSpec(folder=str(spec.out_dir), backend=backend or "onnxruntime", precision=precision,
                                    calib_images=None if calib_images is None else str(calib_images),
                                    layer_search=layer_search)
    manifest, artifact = pipeline.export_then_build(spec, build_spec)
    typer.echo(summary(spec, manifest))
    for line in pipeline.summary(build_spec, artifact):
        typer.echo(line)


@app.command()
@cli_errors
def build(
    folder: Path = typer.Argument(..., callback=checked(artifact_manifest), help="Artifact folder from `hqsam-edge export`."),
    backend: str = typer.Option("onnxruntime", "--backend", **BUILD_BACKEND, help="onnxruntime (CPU/GPU graphs) or tensorrt (engines)."),
    precision: Optional[str] = typer.Option(None, "--precision", **PRECISION, show_default=False,
                                            help="fp32, fp16 or int8 (default: the fastest accurate one for the backend: "
                                            "fp32 for ONNX Runtime on a CPU, fp16 on a GPU and for TensorRT)."),
    calib_images: Optional[Path] = typer.Option(None, "--calib-images", callback=checked(inputs.calibration_folder), help="Folder of your images for INT8 calibration (any size)."),
    calib_limit: int = typer.Option(16, "--calib-limit", min=1, help="Calibration images to use."),
    calib_method: str = typer.Option("max", "--calib-method", **choice(inputs.CALIB_METHODS, "calibration method"), help="max, percentile or entropy."),
    max_prompts: int = typer.Option(64, "--max-prompts", min=1, help="Decoder profile: prompts per call."),
    max_points: int = typer.Option(16, "--max-points", min=2, help="Decoder profile: points per prompt (a box is 2)."),
    max_batch: int = typer.Option(1, "--max-batch", min=1, help="Encoder profile: images per call (Triton's dynamic batching)."),
    workspace_gb: float = typer.Option(4.0, "--workspace-gb", help="TensorRT workspace limit."),
    dla_core: Optional[int] = typer.Option(None, "--dla-core", help="Jetson DLA core for the encoder (GPU fallback on; fp16 / int8)."),
    version_compatible: bool = typer.Option(False, "--version-compatible", help="TensorRT version-compatible engines."),
    print_trtexec: Optional[str] = typer.Option(None, "--print-trtexec", **choice(inputs.TRTEXEC_GENERATIONS, "TensorRT generation"), help="Only print the trtexec lines for TensorRT 8, 10 or 11."),
    min_sqnr_db: Optional[float] = typer.Option(None, "--min-sqnr-db", help="Override the variant's embedding SQNR bound (dB)."),
    min_mask_iou: Optional[float] = typer.Option(None, "--min-mask-iou", help="Override the variant's mean mask IoU bound."),
    flavour: Optional[str] = typer.Option(None, "--flavour", **BUILD_BACKEND, help="Lay the graphs out for onnxruntime or tensorrt (default: the backend's); "
                                          "`--backend onnxruntime --flavour tensorrt` prepares INT8 graphs on a workstation for a Jetson's build."),
    layer_search: bool = typer.Option(False, "--layer-search", help="INT8 missing its bound: keep in float the layers with the most "
                                      "harm per ms they would save (each measured end to end; minutes) until it is met."),
):
    """FP16 / INT8 graphs (checked against PyTorch on the CPU) and TensorRT engines."""
    from .pipeline import build as pipeline

    spec = pipeline.BuildSpec(folder=str(folder), backend=backend, precision=precision,
                              calib_images=None if calib_images is None else str(calib_images),
                              calib_limit=calib_limit, calib_method=calib_method, max_prompts=max_prompts,
                              max_points=max_points, max_batch=max_batch, workspace_gb=workspace_gb, dla_core=dla_core,
                              version_compatible=version_compatible, min_sqnr_db=min_sqnr_db,
                              min_mask_iou=min_mask_iou, flavour=flavour, layer_search=layer_search)
    if print_trtexec is not None:
        typer.echo("\n".join(pipeline.trtexec_lines(spec, print_trtexec)))
        if dla_core is not None:
            typer.echo(pipeline.DLA_NOTE, err=True)
        return
    for line in pipeline.summary(spec, pipeline.build(spec)):
        typer.echo(line)


@app.command()
@cli_errors
def verify(
    folder: Path = typer.Argument(..., callback=checked(artifact_manifest), help="Artifact folder from `hqsam-edge export` / `build`."),
    update: bool = typer.Option(False, "--update", help="First record the files that have no size and sha256 yet (a folder of an older hqsam-edge), as they are now."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (for scripts) instead of the table."),
):
    """Check every file of an artifact folder against its manifest: a table of file, size, sha256 and status."""
    from . import console
    from .pipeline.verify import verify_folder

    report = verify_folder(folder, update=update)
    if json_out:
        typer.echo(report.to_json())
    else:
        console.show([report.table()])
    report.raise_for_problems()


@app.command()
@cli_errors
@model_options
@generator_options
def predict(
    model: ModelChoice,
    generator: GeneratorOptions,
    image: Path = typer.Option(..., "--image", "-i", callback=checked(inputs.image_file), help="Image file (any format Pillow reads)."),
    box: list[str] = typer.Option([], "--box", help="x0,y0,x1,y1 in pixels; repeat for one mask per box."),
    point: list[str] = typer.Option([], "--point", help="x,y[,label] in pixels (label 1 fg, 0 bg); repeat."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Mask PNG to write (0/255, union of the masks; --everything: labels 1..K)."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write the image with the masks blended in, each in its own colour, the prompts and a legend of scores."),
    multimask: Optional[bool] = typer.Option(None, "--multimask/--single-mask", help="SAM's three masks (keep the best) or one; default: as exported."),
    everything: bool = typer.Option(False, "--everything", help="Segment everything (a grid of points, SamAutomaticMaskGenerator) instead of prompts."),
):
    """Segment an image from box and point prompts (or everything in it) and write the mask."""
    from .apps import files

    files.check_predict_options(box, point, out, everything, generator, overlay)
    predictor = model.open()
    if everything:
        typer.echo(files.everything_to_files(predictor, image, generator, out=out, overlay=overlay).summary())
        return
    result = files.predict_to_files(predictor, image, boxes=box, points=point, out=out, overlay=overlay,
                                    multimask_output=multimask)
    typer.echo(result.summary())


@app.command()
@cli_errors
def bench(
    folders: list[Path] = typer.Argument(None, callback=checked(artifact_manifest), show_default=False,
                                         help="Artifact folders to benchmark (default: vit_tiny HQ and SAM, random weights)."),
    backbone: list[str] = typer.Option([], "--backbone", "-b", **BACKBONE, help="Backbones when no folder is given (repeat)."),
    variant: list[str] = typer.Option([], "--variant", **VARIANT, help="hq and/or sam (repeat; default both)."),
    backend: list[str] = typer.Option([], "--backend", **choice(inputs.BACKENDS[1:], "backend"), help="torch, onnxruntime, tensorrt (repeat; default: the best here)."),
    precision: list[str] = typer.Option([], "--precision", **PRECISION, help="fp32, fp16, int8 (repeat; default fp32)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", callback=checked(inputs.checkpoint_file), help="Use this checkpoint instead of random weights."),
    table10: bool = typer.Option(False, "--table10", help="All eight rows of the HQ-SAM paper's Table 10."),
    reference: bool = typer.Option(False, "--reference", help="Also time the official segment_anything_hq SamPredictor."),
    scaling: bool = typer.Option(False, "--scaling", help="Decoder latency vs prompts (1-64), encoder throughput vs batch (1-4)."),
    iters: int = typer.Option(10, "--iters", min=1, help="Timed iterations per measurement."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed warm-up iterations."),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Measure every row this many times, interleaved; keep the median (noisy machines)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the rows as JSON."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Write the markdown table."),
    plot_out: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot (needs matplotlib)."),
):
    """Params / latency / FPS / memory table, next to the HQ-SAM paper's Table 10."""
    from . import console
    from .benchmarks import harness, report

    targets = harness.plan_targets(folders=[str(f) for f in folders or []], backbones=backbone, variants=variant,
                                   backends=backend, precisions=precision, table10=table10, reference=reference,
                                   checkpoint=None if checkpoint is None else str(checkpoint))
    rows = harness.run_rows(targets, iters=iters, warmup=warmup, scaling=scaling, rounds=rounds)
    console.show(report.blocks(rows))
    if json_out:
        report.write_json(rows, json_out)
    if markdown_out:
        report.write_markdown(rows, markdown_out)
    if plot_out:
        report.plot(rows, plot_out)


@app.command()
@cli_errors
def train(
    backbone: str = BackboneOpt,
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", callback=checked(inputs.checkpoint_file), help="SAM / MobileSAM checkpoint (HQ parts start untrained) or an HQ-SAM one (fine-tune)."),
    data: Path = typer.Option(..., "--data", callback=checked(inputs.data_root), help="HQSeg-44K root in the official layout (see hqsam_edge.data.hqseg)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for epoch_{k}.pth, train_log.jsonl and sam_hq_<backbone>_trained.pth."),
    epochs: int = typer.Option(12, "--epochs", min=1, help="Epochs (the paper: 12; lr x0.1 after --lr-drop-epoch)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps in all (smoke runs)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per process (the paper: 4 per GPU on 8 GPUs)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    lr_drop_epoch: int = typer.Option(10, "--lr-drop-epoch", min=1, help="Multiply the lr by 0.1 every this many epochs."),
    datasets: list[str] = typer.Option([], "--datasets", help="Training sets to use (repeat; default all seven)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest OUT/epoch_{k}.pth."),
    cache_features: Optional[Path] = typer.Option(None, "--cache-features", help="Cache frozen encoder outputs here (fixes each image's augmentation)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Flip + large-scale jitter, or only resize + pad."),
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading worker processes per training process."),
    seed: int = typer.Option(42, "--seed", help="Seed of every random draw (initialisation, data order, prompts)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if present)."),
):
    """Train the HQ parts on HQSeg-44K (one process, or under torchrun for many GPUs / nodes)."""
    from .data.augment import AugmentSpec
    from .train.spec import TrainSpec
    from .train.trainer import train as run_training

    spec = TrainSpec(backbone=backbone, checkpoint=str(checkpoint), data=str(data), out=str(out), epochs=epochs,
                     max_steps=max_steps, batch_size=batch_size, lr=lr, lr_drop_epoch=lr_drop_epoch,
                     datasets=tuple(datasets), resume=resume, seed=seed, workers=workers, device=device,
                     cache_features=None if cache_features is None else str(cache_features),
                     augment=AugmentSpec(enabled=augment))
    result = run_training(spec)
    if result.merged_checkpoint is not None:
        typer.echo(result.summary())


@app.command("eval")
@cli_errors
@model_options
def evaluate(
    model: ModelChoice,
    data: Path = typer.Option(..., "--data", callback=checked(inputs.data_root), help="HQSeg-44K root in the official layout (validation sets)."),
    datasets: list[str] = typer.Option([], "--datasets", help="DIS5K-VD, COIFT, HRSOD, ThinObject5k-TE (repeat; default all four)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N images of each set."),
    reference: bool = typer.Option(True, "--reference/--no-reference", help="With a folder, also score its fp32 PyTorch model, side by side."),
    protocol: str = typer.Option("official", "--protocol", **choice(inputs.EVAL_PROTOCOLS, "protocol"), help="official (HQ-SAM's: 1024x1024 resize) or predictor (SAM's resize)."),
    hq_token_only: Optional[bool] = typer.Option(None, "--hq-token-only/--sam-plus-hq", help="Score the HQ token alone or SAM + HQ logits (default: as exported)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write per-set and per-image scores as JSON."),
):
    """mIoU and boundary mIoU on the HQSeg-44K validation sets, with ground-truth box prompts."""
    from . import console
    from .eval.runner import EvalSpec, evaluate_deployment, score_table, write_json

    spec = EvalSpec(data=str(data), datasets=tuple(datasets), limit=limit, protocol=protocol,
                    hq_token_only=hq_token_only)
    reports = evaluate_deployment(spec, model, reference=reference)
    if reports:
        console.show([score_table(reports)])
    if json_out:
        write_json(reports, json_out)


@app.command()
@cli_errors
def triton(
    folder: Path = typer.Argument(..., callback=checked(artifact_manifest), help="Artifact folder from `hqsam-edge export` / `build`."),
    out: Path = typer.Option(..., "--out", "-o", help="Triton model repository to write."),
    backend: str = typer.Option("onnxruntime", "--backend", **BUILD_BACKEND, help="onnxruntime (model.onnx) or tensorrt (engines from `build --backend tensorrt`)."),
    precision: Optional[str] = typer.Option(None, "--precision", **PRECISION, help="fp32, fp16 or int8 of the folder (default: the first it has for the backend)."),
    max_prompts: Optional[int] = typer.Option(None, "--max-prompts", min=1, help="Prompts per decoder call (default: the engines' profile, or 64)."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", min=1, help="Encoder images per batched call (default: the engines' profile, or 4)."),
    instances: int = typer.Option(1, "--instances", min=1, help="Instances of each model."),
    kind: str = typer.Option("gpu", "--kind", **choice(inputs.TRITON_KINDS, "instance kind"), help="gpu or cpu: where the encoder and decoder instances run."),
    max_queue_delay_us: int = typer.Option(0, "--max-queue-delay-us", min=0, help="Encoder dynamic batching: wait this long for more images."),
    preferred_batch_size: list[int] = typer.Option([], "--preferred-batch-size", help="Encoder dynamic batching: preferred batch (repeat)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name (default <variant>_<backbone>; also <name>_encoder, <name>_decoder)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing repository."),
):
    """A Triton Inference Server model repository: encoder, decoder, and a Python model (image + prompts -> masks)."""
    from .serve.triton import TritonSpec, write_repository

    spec = TritonSpec(folder=str(folder), out=str(out), backend=backend, precision=precision, name=name,
                      max_prompts=max_prompts, max_batch=max_batch, instances=instances, kind=kind,
                      max_queue_delay_us=max_queue_delay_us, preferred_batch_sizes=tuple(preferred_batch_size),
                      overwrite=overwrite)
    typer.echo(write_repository(spec).summary())


@app.command()
@cli_errors
@model_options
@generator_options
def segment(
    model: ModelChoice,
    generator: GeneratorOptions,
    images: str = typer.Option(..., "--images", help="Glob of image files, quoted ('val2017/**/*.jpg'); paths count from the part before the first wildcard."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", callback=checked(inputs.boxes_file), help="COCO annotations file, or a JSON object: file name -> list of x,y,w,h boxes (COCO pixels)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder: <image path>.json per image + results.json (COCO RLE results); rerun to resume."),
    queue_size: int = typer.Option(4, "--queue-size", min=1, help="Images waiting between reading, the model and writing."),
    everything: bool = typer.Option(False, "--everything", help="Every mask in each image (SamAutomaticMaskGenerator), no --boxes."),
    on_error: str = typer.Option("skip", "--on-error", **choice(inputs.ON_ERROR, "--on-error value"), help="A bad image or box: skip (list it in OUT/errors.json, exit 3 at the end) or stop (exit at once)."),
):
    """Segment an image set from box prompts (or everything in it) into COCO RLE results, streamed and resumable."""
    from .apps.segment import SegmentSpec, segment_images
    from .errors import SKIPPED_EXIT_CODE

    spec = SegmentSpec(images=images, boxes=None if boxes is None else str(boxes), out=str(out),
                       queue_size=queue_size, model=model.describe(),
                       everything=generator if everything else None, on_error=on_error)
    summary = segment_images(spec, model.open)
    typer.echo(summary.line())
    if summary.failed:
        raise typer.Exit(SKIPPED_EXIT_CODE)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":
    main()
