"""The benchmark harness behind ``hqsam-edge bench``.

One row per (model, backend, precision): parameter sizes, encoder latency,
decoder latency (1 box, 10 points, 16 boxes in one call), end-to-end latency
(image -> masks at the original size: pre-processing, encoder, decoder,
post-processing), FPS as the HQ-SAM paper counts it (one image, one box),
medians and p90 after warm-up, peak memory, device and versions
(``benchmarks.rows``: the row's typed parts and its JSON).

Each row runs in a fresh process (``spawn``), so that its peak resident
memory is its own. ``rounds`` > 1 measures the whole list that many times,
interleaved (fp32, int8, fp32, int8, ...), and keeps the median of each
timing over the rounds: on a noisy machine, drift then hits every row alike,
so their ratios hold. On CUDA, device time comes from CUDA events and host
latency from the wall clock; both are reported.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import progress
from ..errors import ArtifactError, HQSamEdgeError, UsageError
from ..timing import Timing, cuda_event_ms, time_calls
from .rows import BenchRow, Machine, Memory, Scaling, Sizes, Target, Timings

IMAGE_HW = (768, 1024)  # the benchmark image (height, width)
BOX = np.array([180.0, 120.0, 760.0, 600.0])
PROMPT_SCALING = (1, 4, 16, 64)
BATCH_SCALING = (1, 2, 4)


def _timed(fn: Callable[[], Any], iters: int, warmup: int, sync: Callable[[], None] | None = None,
           label: str | None = None) -> Timing:
    """``timing.time_calls``, reported as progress stage ``label`` (a step per call, the last time as detail)."""
    if not label:
        return time_calls(fn, iters, warmup, sync=sync)
    with progress.stage(label, total=warmup + max(1, iters), unit="run") as step:
        return time_calls(fn, iters, warmup, sync=sync,
                          each=lambda ms: step.advance(detail="" if ms is None else f"{ms:.1f} ms"))


def model_name(backbone: str, variant: str) -> str:
    from .paper import paper_row

    return paper_row(backbone, variant).model


def _peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if platform.system() != "Darwin" else peak / 2**20


def _machine(device: str) -> Machine:
    """This process's machine: ``device``, the platform record (Jetson model, JetPack, power mode, GPU, CUDA,
    TensorRT) and the versions of the libraries found."""
    from ..hardware import this_platform
    from ..runtime.environment import library_versions

    return Machine(device, this_platform(), {k: v for k, v in library_versions().items() if v})


def _row(target: Target, iters: int, timings: Timings, memory: Memory, machine: Machine, *,
         scaling: Scaling | None = None, notes: tuple[str, ...] = (), error: str | None = None) -> BenchRow:
    """The one place a row is put together: the measurements, and what every row of ``target`` says (the
    paper's model name, parameter sizes)."""
    from ..model.build import backbone_spec
    from .params import model_sizes

    params, learnable = model_sizes(backbone_spec(target.backbone), target.variant)
    model = model_name(target.backbone, target.variant) + (" (official)" if target.reference else "")
    return BenchRow(target=target, model=model, sizes=Sizes(params, learnable), timings=timings, memory=memory,
                    machine=machine, scaling=scaling, iters=iters, notes=notes, error=error)


def _prompt_feeds(predictor, p: int, points: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(p)
    h, w = predictor.original_size
    if points:
        coords = rng.uniform([0, 0], [w - 1, h - 1], (1, points, 2))
        return predictor.prompt_feeds(coords, (np.arange(points) % 4 != 3)[None].astype(int))
    boxes = np.tile(BOX, (p, 1)) + rng.uniform(-40, 40, (p, 4))
    return predictor.prompt_feeds(boxes=boxes)


def _open_predictor(target: Target, workdir: Path):
    """The target's predictor: its folder, or its model (torch), or a folder exported here for it (random weights
    or its checkpoint, unverified: speed does not depend on weights)."""
    from ..runtime.choice import ModelChoice

    if target.folder:
        return ModelChoice(target.folder, target.backend, target.precision).open()
    if target.backend == "torch":
        import torch

        torch.manual_seed(0)
        return ModelChoice(backend="torch", precision=target.precision, backbone=target.backbone,
                           variant=target.variant, checkpoint=target.checkpoint,
                           random_weights=target.checkpoint is None).open()
    if target.backend == "tensorrt":
        from ..runtime.environment import require_tensorrt

        require_tensorrt()  # before minutes of export
    from ..pipeline.export import ExportSpec, export_artifacts

    folder = workdir / f"{target.variant}_{target.backbone}"
    if not (folder / "manifest.json").exists():
        export_artifacts(ExportSpec(backbone=target.backbone, variant=target.variant, checkpoint=target.checkpoint,
                                    random_weights=target.checkpoint is None, out=str(folder), verify=False))
    return ModelChoice(folder, target.backend, target.precision).open()


REFERENCE_HINT = ("pip install segment-anything-hq==0.3 timm (the official HQ-SAM package; hqsam-edge's dev extra "
                  "has it)")


def _official_builders(variant: str):
    """``segment_anything_hq``'s builders (HQ-SAM, or its SAM baseline); ``BackendUnavailableError`` without it."""
    import importlib
    import warnings

    from ..errors import BackendUnavailableError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module("segment_anything_hq.build_sam" if variant == "hq"
                                           else "segment_anything_hq.build_sam_baseline")
        except ImportError as exc:
            raise BackendUnavailableError(f"--reference needs segment_anything_hq ({exc}): {REFERENCE_HINT}") from None


def _measure_reference(target: Target, iters: int, warmup: int) -> BenchRow:
    """The official SamPredictor (segment_anything_hq), same image and box, torch on this device; its
    end-to-end time is its encoder's plus its decoder's."""
    import torch

    machine = _machine("-")
    builders = _official_builders(target.variant)
    from segment_anything_hq import SamPredictor

    build = {"vit_b": "build_sam_vit_b", "vit_l": "build_sam_vit_l", "vit_h": "build_sam_vit_h",
             "vit_tiny": "build_sam_vit_t"}[target.backbone]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = getattr(builders, build)().to(device).eval()
    predictor = SamPredictor(model)
    from ..data.synthetic import demo_image

    image = demo_image(*IMAGE_HW)
    sync = torch.cuda.synchronize if device == "cuda" else None
    kw = {"hq_token_only": False} if target.variant == "hq" else {}
    with torch.inference_mode():
        enc = _timed(lambda: predictor.set_image(image), iters, warmup, sync)
        dec = _timed(lambda: predictor.predict(box=BOX, multimask_output=False, **kw), iters, warmup, sync)
    nan = float("nan")
    timings = Timings(encoder_ms=enc.median, encoder_p90_ms=enc.p90, decoder_ms=dec.median, decoder_p90_ms=dec.p90,
                      decoder_10pt_ms=nan, decoder_16box_ms=nan, e2e_ms=enc.median + dec.median,
                      e2e_p90_ms=enc.p90 + dec.p90)
    memory = Memory(_peak_rss_mib(), "cpu peak RSS")
    machine = replace(machine, device=torch.cuda.get_device_name() if device == "cuda" else "cpu")
    return _row(target, iters, timings, memory, machine)


def _cuda_sync(backend) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` for the torch backend on CUDA (peak memory counters reset), else None."""
    if backend.name == "torch" and backend.torch_device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.synchronize
    return None


def _peak_memory(cuda: bool) -> Memory:
    """The peak so far: GPU memory allocated by torch on CUDA, else this process's resident memory."""
    if cuda:
        import torch

        return Memory(torch.cuda.max_memory_allocated() / 2**20, "gpu peak allocated")
    return Memory(_peak_rss_mib(), "cpu peak RSS")


def _scaling(predictor, tensor: np.ndarray, iters: int, sync) -> Scaling:
    """Decoder ms by prompts per call (more than a profile's ``max_prompts`` in several calls), encoder images/s by
    batch (batches above the backend's ``max_batch`` are skipped and listed in ``skipped_batches``)."""
    backend, n = predictor.backend, max(1, iters // 2)
    decoder: dict[str, float] = {}
    for p in PROMPT_SCALING:
        feeds = _prompt_feeds(predictor, p)
        decoder[str(p)] = _timed(lambda: predictor.decode_feeds(feeds), n, 1, sync).median
    encoder: dict[str, float] = {}
    skipped: dict[str, float] = {}
    for b in BATCH_SCALING:
        if backend.max_batch is not None and b > backend.max_batch:  # outside the engine's profile: not run
            skipped[str(b)] = float(backend.max_batch)
            continue
        batch = np.repeat(tensor, b, axis=0)
        encoder[str(b)] = 1000 * b / _timed(lambda batch=batch: backend.encode(batch), n, 1, sync).median
    return Scaling(decoder, encoder, skipped)


def _time_predictor(predictor, target: Target, image: np.ndarray, tensor: np.ndarray, iters: int, warmup: int,
                    sync) -> tuple[Timings, tuple[str, ...]]:
    """Encoder, decoder (1 box, 10 points, 16 boxes in one call) and end-to-end times of ``image`` (``tensor``
    pre-processed); the notes say what was left out and why."""
    from ..export import contract as C

    backend, row = predictor.backend, f"bench {target.label}"
    enc = _timed(lambda: backend.encode(tensor), iters, warmup, sync, f"{row}: encoder")
    gpu_encoder_ms = cuda_event_ms(lambda: backend.encode(tensor), iters) if sync else None
    predictor.set_image(image)  # after the encoder runs: a TensorRT backend keeps one image's features
    one, ten, sixteen = (_prompt_feeds(predictor, 1), _prompt_feeds(predictor, 1, points=10),
                         _prompt_feeds(predictor, 16))
    dec = _timed(lambda: predictor.decode_feeds(one), iters, warmup, sync, f"{row}: decoder, 1 box")
    notes: tuple[str, ...] = ()
    if backend.max_points is not None and ten[C.POINT_COORDS.name].shape[1] > backend.max_points:
        dec10_ms = float("nan")
        notes = (f"10 points not run: the decoder's profile takes at most {backend.max_points} points",)
    else:
        dec10_ms = _timed(lambda: predictor.decode_feeds(ten), iters, warmup, sync,
                          f"{row}: decoder, 10 points").median
    dec16 = _timed(lambda: predictor.decode_feeds(sixteen), max(1, iters // 2), 1, sync, f"{row}: decoder, 16 boxes")

    def end_to_end():
        predictor.set_image(image)
        predictor.predict(box=BOX)

    e2e = _timed(end_to_end, iters, warmup, sync, f"{row}: end to end")
    timings = Timings(encoder_ms=enc.median, encoder_p90_ms=enc.p90, decoder_ms=dec.median, decoder_p90_ms=dec.p90,
                      decoder_10pt_ms=dec10_ms, decoder_16box_ms=dec16.median, e2e_ms=e2e.median,
                      e2e_p90_ms=e2e.p90, gpu_encoder_ms=gpu_encoder_ms)
    return timings, notes


def measure(target: Target, iters: int, warmup: int, scaling: bool, workdir: str) -> BenchRow:
    """One row. Runs in its own process when called through ``run_rows``."""
    from ..data import transforms as T
    from ..data.synthetic import demo_image

    if target.reference:
        return _measure_reference(target, iters, warmup)
    machine = _machine("-")  # first: the versions import their libraries, which the peak memory then includes
    image = demo_image(*IMAGE_HW)
    with _open_predictor(target, Path(workdir)) as predictor:
        sync = _cuda_sync(predictor.backend)
        tensor, _ = T.preprocess_image(image, predictor.info.image_size)
        timings, notes = _time_predictor(predictor, target, image, tensor, iters, warmup, sync)
        row_scaling = _scaling(predictor, tensor, iters, sync) if scaling else None
        memory = _peak_memory(sync is not None)
        device = predictor.backend.device
    return _row(target, iters, timings, memory, replace(machine, device=device), scaling=row_scaling, notes=notes)


def _measure_safely(target: Target, iters: int, warmup: int, scaling: bool, workdir: str,
                    report: bool = False) -> BenchRow:
    """``measure``, its errors a row that says why; ``report``: progress lines on stderr (a child process has
    no reporter of its own)."""
    reporter = progress.current() or (progress.Reporter(sys.stderr, interactive=False) if report else None)
    try:
        with progress.reporting(reporter):
            return measure(target, iters, warmup, scaling, workdir)
    except HQSamEdgeError as exc:
        return _row(target, iters, Timings.not_run(), Memory.not_run(), Machine("-"), error=str(exc))


def combine_rounds(rows: list[BenchRow]) -> BenchRow:
    """One row from the same target's rounds: the median of each timing over the rounds that have it (FPS
    follows the median end-to-end time), the highest peak memory. A round that failed makes the row fail (its
    error kept). Prompt / batch scaling, when asked for, is the first round's."""
    failed = [r for r in rows if r.error]
    if failed or len(rows) == 1:
        return replace(failed[0] if failed else rows[0], rounds=len(rows))
    merged: dict[str, float | None] = {}
    for name in Timings.names():
        values = [getattr(r.timings, name) for r in rows if getattr(r.timings, name) is not None]
        merged[name] = statistics.median(values) if values else None
    first = rows[0]
    return replace(first, timings=replace(first.timings, **merged),
                   memory=replace(first.memory, peak_mib=max(r.memory.peak_mib for r in rows)),
                   iters=sum(r.iters for r in rows), rounds=len(rows))


def run_rows(targets: list[Target], *, iters: int, warmup: int, scaling: bool = False, isolate: bool = True,
             workdir: str | None = None, rounds: int = 1) -> list[BenchRow]:
    """Measure every target, each in a fresh process (``isolate``) for honest peak memory; ``rounds`` times,
    interleaved, keeping the median of each timing (see the module docstring). Progress: a stage per row and
    its timings per iteration (``hqsam_edge.progress``)."""
    if rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {rounds}")
    measured: list[list[BenchRow]] = [[] for _ in targets]
    schedule = [(k, target) for _ in range(rounds) for k, target in enumerate(targets)]
    report = progress.current() is not None
    with tempfile.TemporaryDirectory(prefix="hqsam-bench-") as tmp, \
            progress.stage("bench: rows", total=len(schedule), unit="row") as rows_done:
        work = workdir or tmp
        for k, target in schedule:
            if isolate:
                ctx = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    row = pool.submit(_measure_safely, target, iters, warmup, scaling, work, report).result()
            else:
                row = _measure_safely(target, iters, warmup, scaling, work)
            measured[k].append(row)
            rows_done.advance(detail=target.label)
    return [combine_rounds(rows) for rows in measured]


def default_backend() -> str:
    """The best backend this machine has for a fresh run: tensorrt, else onnxruntime."""
    from ..runtime.environment import tensorrt_status

    return "tensorrt" if tensorrt_status().usable else "onnxruntime"


def _check_files(manifest, folder: str, backend: str, precision: str) -> None:
    """Refuse a folder whose files are not the ones its manifest records before any row runs (an artifact it
    lacks is that row's own error)."""
    if backend == "torch":
        return
    try:
        artifact = manifest.find(backend, precision)
    except ArtifactError:
        return
    manifest.check_files(folder, artifact.files.values())


def plan_targets(*, folders: list[str], backbones: list[str], variants: list[str], backends: list[str],
                 precisions: list[str], table10: bool, reference: bool, checkpoint: str | None = None) -> list[Target]:
    """Expand the CLI's choices into rows."""
    from ..export.manifest import read_manifest, remove_stale_temporaries
    from ..model.build import backbone_spec, check_variant
    from .paper import TABLE10

    backends = backends or [default_backend()]
    precisions = precisions or ["fp32"]
    targets: list[Target] = []
    for folder in folders:
        manifest = read_manifest(folder)
        remove_stale_temporaries(folder)  # what a killed command left
        for backend in backends:
            for precision in precisions:
                _check_files(manifest, folder, backend, precision)
                targets.append(Target(manifest.backbone, manifest.variant, backend, precision, folder=str(folder)))
    pairs: list[tuple[str, str]] = []
    if table10:
        pairs = [(r.backbone, r.variant) for r in TABLE10]
    elif not folders:
        for b in backbones or ["vit_tiny"]:
            backbone_spec(b)
            pairs += [(b, check_variant(v)) for v in (variants or ["hq", "sam"])]
    for backbone, variant in pairs:
        for backend in backends:
            for precision in precisions:
                targets.append(Target(backbone, variant, backend, precision, checkpoint=checkpoint))
        if reference:
            targets.append(Target(backbone, variant, "torch", "fp32", reference=True))
    if not targets:
        raise UsageError("nothing to benchmark: give artifact folders, --backbone, or --table10")
    if reference:
        import importlib.util

        if importlib.util.find_spec("segment_anything_hq") is None:
            raise UsageError(f"--reference times the official segment_anything_hq, which is not installed: "
                             f"{REFERENCE_HINT}")
    return targets

