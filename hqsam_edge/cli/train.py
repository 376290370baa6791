"""Commands that learn and score: ``train`` (the HQ parts on HQSeg-44K) and ``eval`` (mIoU and boundary mIoU on
its validation sets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import inputs
from . import options as o
from .group import command


@command()
def train(
    *,
    backbone: o.Backbone = "vit_tiny",
    checkpoint: Annotated[Path, typer.Option(
        "--checkpoint", "-c", callback=o.checked(inputs.checkpoint_file),
        help="SAM / MobileSAM checkpoint (HQ parts start untrained) or an HQ-SAM one (fine-tune).")],
    data: Annotated[Path, typer.Option(
        "--data", callback=o.checked(inputs.data_root),
        help="HQSeg-44K root in the official layout (see hqsam_edge.data.hqseg).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for epoch_{k}.pth, train_log.jsonl and sam_hq_<backbone>_trained.pth.")],
    epochs: Annotated[int, typer.Option(
        "--epochs", min=1, help="Epochs (the paper: 12; lr x0.1 after --lr-drop-epoch).")] = 12,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", min=1, help="Stop after this many steps in all (smoke runs).")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Images per process (the paper: 4 per GPU on 8 GPUs).")] = 4,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-3,
    lr_drop_epoch: Annotated[int, typer.Option(
        "--lr-drop-epoch", min=1, help="Multiply the lr by 0.1 every this many epochs.")] = 10,
    datasets: Annotated[list[str] | None, typer.Option(
        "--datasets", help="Training sets to use (repeat; default all seven).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest OUT/epoch_{k}.pth.")] = False,
    cache_features: Annotated[Path | None, typer.Option(
        "--cache-features", help="Cache frozen encoder outputs here (fixes each image's augmentation).")] = None,
    augment: Annotated[bool, typer.Option(
        "--augment/--no-augment", help="Flip + large-scale jitter, or only resize + pad.")] = True,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="Data-loading worker processes per training process.")] = 2,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of every random draw (initialisation, data order, prompts).")] = 42,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if present).")] = None,
):
    """Train the HQ parts on HQSeg-44K (one process, or under torchrun for many GPUs / nodes)."""
    from ..data.augment import AugmentSpec
    from ..train.spec import TrainSpec
    from ..train.trainer import train as run_training

    spec = TrainSpec(backbone=backbone, checkpoint=str(checkpoint), data=str(data), out=str(out), epochs=epochs,
                     max_steps=max_steps, batch_size=batch_size, lr=lr, lr_drop_epoch=lr_drop_epoch,
                     datasets=tuple(datasets or ()), resume=resume, seed=seed, workers=workers, device=device,
                     cache_features=None if cache_features is None else str(cache_features),
                     augment=AugmentSpec(enabled=augment))
    result = run_training(spec)
    if result.merged_checkpoint is not None:
        typer.echo(result.summary())


@command("eval")
def evaluate(
    folder: o.Folder = None,
    *,
    data: Annotated[Path, typer.Option(
        "--data", callback=o.checked(inputs.data_root),
        help="HQSeg-44K root in the official layout (validation sets).")],
    datasets: Annotated[list[str] | None, typer.Option(
        "--datasets", help="DIS5K-VD, COIFT, HRSOD, ThinObject5k-TE (repeat; default all four).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Score only the first N images of each set.")] = None,
    reference: Annotated[bool, typer.Option(
        "--reference/--no-reference", help="With a folder, also score its fp32 PyTorch model, side by side.")] = True,
    protocol: Annotated[str, typer.Option(
        "--protocol", **o.choice(inputs.EVAL_PROTOCOLS, "protocol"),
        help="official (HQ-SAM's: 1024x1024 resize) or predictor (SAM's resize).")] = "official",
    hq_token_only: Annotated[bool | None, typer.Option(
        "--hq-token-only/--sam-plus-hq",
        help="Score the HQ token alone or SAM + HQ logits (default: as exported).")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write per-set and per-image scores as JSON.")] = None,
    backbone: o.Backbone = "vit_tiny", variant: o.Variant = "hq", checkpoint: o.Checkpoint = None,
    random_weights: o.RandomWeights = False, backend: o.Backend = "auto", precision: o.ModelPrecision = None,
    dla_core: o.DlaCore = None,
):
    """mIoU and boundary mIoU on the HQSeg-44K validation sets, with ground-truth box prompts."""
    from .. import console
    from ..eval.runner import EvalSpec, evaluate_deployment, score_table, write_json
    from ..runtime.choice import ModelChoice

    model = ModelChoice(folder=folder, backend=backend, precision=precision, backbone=backbone, variant=variant,
                        checkpoint=checkpoint, random_weights=random_weights, dla_core=dla_core)
    spec = EvalSpec(data=str(data), datasets=tuple(datasets or ()), limit=limit, protocol=protocol,
                    hq_token_only=hq_token_only)
    reports = evaluate_deployment(spec, model, reference=reference)
    if reports:
        console.show([score_table(reports)])
    if json_out:
        write_json(reports, json_out)
