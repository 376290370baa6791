"""Check what a GPU machine can check, in about ten minutes, and write the figures as JSON and markdown.

    python benchmarks/gpu_check.py [--out DIR] [--iters N] [--budget-s S] [--checkpoint PTH | --stress]

Runs from a plain checkout (it puts the repository on ``sys.path``; nothing is installed). Needs PyTorch with
CUDA, numpy, Pillow, OpenCV and Meta's ``segment_anything``; uses, when present, ``onnx`` + ``onnxslim`` +
``onnxruntime-gpu`` (the ONNX Runtime checks), ``tensorrt`` + ``pycuda`` + ``onnxconverter-common`` (engines),
``typer`` + ``pytest`` (the engine tests). The report is rewritten after every check, so a run stopped at a time
limit still leaves what it measured. The model is Light HQ-SAM (``vit_tiny``): random weights (seed 0) by
default, ``--checkpoint`` for real weights (INT8 then judged by the real bound), ``--stress`` for the stress
checkpoint (``model.stress``: activations where FP16 overflows without its FP32 islands).

Every row says what ran: each check has its own time budget (``CHECKS``; one that does not fit in the time
left is skipped, and says so), its status (``ok``, ``miss``: ran and missed its bound, figures kept,
``skipped``: with the reason, ``error``: it could not run), its seconds. In order, what only a GPU answers
first:

1. ``platform``: ``hardware.detect_platform`` against the real driver.
2. ``tensorrt fp32`` / ``fp16`` / ``int8``: ``build --backend tensorrt`` (one profile: 16 prompts, 8 points),
   each pair judged against its bound (INT8 on random weights by ``RANDOM_WEIGHT_INT8``, the real bound's
   verdict kept as information), its latency.
3. ``tensorrt int8 vs fp16``: encoder and decoder speed of the two pairs of the same profile.
4. ``tensorrt threads``: one backend with two slots, two threads predicting at once and a decode on another
   thread than its encode; device memory (``torch.cuda.mem_get_info``) flat after the threads end.
5. ``tensorrt batch and prompts``: encoder batches of 2 and 4 (a pair built with ``--max-batch 4``) against
   single images; 40 boxes through a 16-prompt profile (split into calls) against the torch model.
6. ``tensorrt reopen``: close and reopen the engines in one process with torch CUDA active.
7. ``engine tests``: ``tests/engines`` (its real-engine builds included).
8. ``onnxruntime providers``: CUDA fp32 (TF32 off), TensorRT fp16 and int8, each with the providers that ran
   (``OnnxRuntimeBackend.providers``).
9. ``torch precisions``: fp32 with TF32 off / on, fp16, bf16 (skipped where the GPU has none).
10. ``torch latency``, 11. ``amp train step``.
12. ``fp16 stress``: the stress checkpoint's FP16 graph with and without its FP32 islands on the CPU
    (``calib.fp16_stress``) and, with TensorRT, its fp16 engines against the fp16 bound.
13. ``tracking``: Light HQ-SAM frames per second following 1 and 8 objects (``hqsam_edge.video.track``, a
    synthetic scene), on the fastest backend here.

Exit 0 when every check ran (misses are findings, recorded), 1 when one could not run, 2 (one line on
stderr) where there is no CUDA GPU or a required package is missing. ``--allow-cpu`` runs the checks that
need no GPU on the CPU (to test this script itself).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"torch": "torch (a CUDA build)", "numpy": "numpy", "PIL": "pillow", "cv2": "opencv-python-headless",
            "segment_anything": "segment-anything"}
CHECK_IMAGES = 2  # held-out pictures of the accuracy checks (data.synthetic.demo_image, seeds 900...)
RANDOM_WEIGHT_INT8 = {"min_sqnr_db": 3.0, "min_mean_mask_iou": 0.5}  # INT8 on random weights (tests/engines)
PROFILE = {"max_prompts": 16, "max_points": 8}  # every engine pair of the run: one profile, comparable speeds
MEMORY_SLACK_MIB = 16.0  # device memory may move this much across the threads check (allocator rounding)


@dataclass
class Check:
    name: str
    status: str = "ok"  # ok | miss | skipped | error
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    budget_s: float = 0.0


class Skip(Exception):
    """A check that cannot run here, and why."""


@dataclass
class Context:
    device: str
    iters: int
    workdir: Path
    deadline: float
    checkpoint: Path | None = None  # real weights (or the stress checkpoint); None: random weights, seed 0
    stress: bool = False
    check_deadline: float = float("inf")  # the running check's own budget ends here
    engines: dict[str, Any] = field(default_factory=dict)  # precision -> the artifact the run built
    _folder: Path | None = None

    def left(self) -> float:
        return min(self.deadline, self.check_deadline) - time.monotonic()

    def need(self, seconds: float, what: str) -> None:
        """``Skip`` unless ``seconds`` are left in this check's budget."""
        if self.left() < seconds:
            raise Skip(f"{what}: its budget is spent ({max(self.left(), 0):.0f} s left)")

    @property
    def weights(self) -> str:
        return "stress checkpoint" if self.stress else (str(self.checkpoint) if self.checkpoint else "random")

    def model(self):
        """Light HQ-SAM: the checkpoint's, or random weights (seed 0), the same every call."""
        import torch

        from hqsam_edge.model import build_model

        torch.manual_seed(0)
        return build_model("vit_tiny", "hq", self.checkpoint)

    def images(self):
        from hqsam_edge.data.synthetic import demo_image

        return [demo_image(768, 1024, seed=900 + i) for i in range(CHECK_IMAGES)]

    def folder(self) -> Path:
        """An exported Light HQ-SAM folder of the run's weights, made once."""
        if self._folder is None:
            self._folder = export_folder(self.workdir / "hq_vit_tiny", self.checkpoint)
        return self._folder

    def reference(self):
        from hqsam_edge.runtime.base import ModelInfo
        from hqsam_edge.runtime.torch_backend import TorchBackend

        return TorchBackend(self.model(), device="cpu", info=ModelInfo("vit_tiny", "hq"))


def export_folder(out: Path, checkpoint: Path | None) -> Path:
    for module in ("onnx", "onnxslim"):
        if importlib.util.find_spec(module) is None:
            raise Skip(f"exporting needs {module}: pip install {module}")
    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

    export_artifacts(ExportSpec(checkpoint=None if checkpoint is None else str(checkpoint),
                                random_weights=checkpoint is None, out=str(out), verify=False))
    return out


def _judged(figures: dict, precision: str, what: str, bounds=None) -> tuple[str, str, dict]:
    """(status, detail, figures) of one comparison against ``bounds`` (default: its precision's); a miss keeps
    the figures."""
    from hqsam_edge.errors import ParityError
    from hqsam_edge.runtime.compare import PRECISION_BOUNDS, check

    bounds = bounds or PRECISION_BOUNDS[precision]
    try:
        return "ok", "", check(figures, bounds, what)
    except ParityError as miss:
        return "miss", str(miss), {**figures, "bounds": bounds.to_dict()}


def _summary(figures: dict) -> dict:
    """The headline figures of a comparison."""
    from hqsam_edge.runtime.compare import encoder_sqnr

    return {"sqnr_db": {k: round(v, 1) if v != float("inf") else "inf (identical)"
                        for k, v in encoder_sqnr(figures).items()},
            "mean_mask_iou": round(figures["mean_mask_iou"], 5), "min_mask_iou": round(figures["min_mask_iou"], 5)}


def _recipes(artifact) -> dict:
    """The engines' recipes by graph, as the manifest records them."""
    return {} if artifact.engine is None else {g: asdict(r) for g, r in artifact.engine.recipes.items()}


def _verdict(results: dict) -> str:
    statuses = [r["status"] for r in results.values() if isinstance(r, dict) and "status" in r]
    return "error" if "error" in statuses else "miss" if "miss" in statuses else "ok"


def _detail(results: dict) -> str:
    return ", ".join(f"{k}: {v['status']}" for k, v in results.items() if isinstance(v, dict) and "status" in v)


def check_platform(ctx: Context) -> tuple[str, str, dict]:
    from hqsam_edge.hardware import detect_platform

    p = detect_platform()
    status = "ok" if p.gpu and p.compute_capability else ("skipped" if ctx.device == "cpu" else "miss")
    return status, p.summary(), p.to_dict()


def _set_tf32(enabled: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def check_torch_precisions(ctx: Context) -> tuple[str, str, dict]:
    import torch

    from hqsam_edge.runtime.base import ModelInfo
    from hqsam_edge.runtime.compare import compare
    from hqsam_edge.runtime.torch_backend import TorchBackend

    variants = [("fp32, TF32 off", "fp32", False), ("fp32, TF32 on", "fp32", True), ("fp16", "fp16", False),
                ("bf16", "bf16", False)]
    if ctx.device == "cpu":
        variants = variants[:1]
    reference, images, model = ctx.reference(), ctx.images(), ctx.model()
    results: dict[str, dict] = {}
    for label, precision, tf32 in variants:
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            results[label] = {"status": "skipped", "reason": f"{torch.cuda.get_device_name()} has no bf16"}
            continue
        _set_tf32(tf32)
        candidate = TorchBackend(copy.deepcopy(model), device=ctx.device, precision=precision,
                                 info=ModelInfo("vit_tiny", "hq"))
        status, detail, figures = _judged(compare(reference, candidate, images),
                                          "fp32" if precision == "fp32" else "fp16", f"torch {label}")
        results[label] = {"status": status, **_summary(figures), **({"miss": detail} if detail else {})}
    _set_tf32(False)
    return _verdict(results), _detail(results), results


def _latency(predictor, iters: int, device: str) -> dict:
    """Encoder / decoder / end-to-end ms by wall clock (median, p90) and, on CUDA, by CUDA events."""
    import torch

    from hqsam_edge.benchmarks.harness import BOX, IMAGE_HW
    from hqsam_edge.data import transforms as T
    from hqsam_edge.data.synthetic import demo_image
    from hqsam_edge.timing import cuda_event_ms, time_calls

    def timed(fn, iters: int, warmup: int, sync) -> tuple[float, float]:
        t = time_calls(fn, iters, warmup, sync=sync)
        return t.median, t.p90

    backend, image = predictor.backend, demo_image(*IMAGE_HW)
    sync = torch.cuda.synchronize if device == "cuda" else None
    tensor, _ = T.preprocess_image(image)
    predictor.set_image(image)
    feeds = predictor.prompt_feeds(boxes=BOX[None])
    opts = dict(multimask_output=False, hq_token_only=False)
    out = {"encoder_wall_ms": timed(lambda: backend.encode(tensor), iters, 2, sync)}
    predictor.set_image(image)  # a TensorRT backend keeps one image's features
    out["decoder_wall_ms"] = timed(lambda: predictor.decode_feeds(feeds, **opts), iters, 2, sync)
    out["e2e_wall_ms"] = timed(lambda: (predictor.set_image(image), predictor.predict(box=BOX)), iters, 1, sync)
    if device == "cuda" and backend.name == "torch":
        out["encoder_cuda_ms"] = cuda_event_ms(lambda: backend.encode(tensor), iters, warmup=1)
        predictor.set_image(image)
        out["decoder_cuda_ms"] = cuda_event_ms(lambda: predictor.decode_feeds(feeds, **opts), iters, warmup=1)
    return {k: ([round(x, 2) for x in v] if isinstance(v, tuple) else round(v, 3)) for k, v in out.items()}


def check_torch_latency(ctx: Context) -> tuple[str, str, dict]:
    import torch

    from hqsam_edge.runtime.predictor import Predictor

    results = {}
    for precision in ("fp32", "fp16") if ctx.device == "cuda" else ("fp32",):
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with Predictor.from_model(ctx.model(), device=ctx.device, precision=precision) as predictor:
            figures = _latency(predictor, ctx.iters, ctx.device)
        if ctx.device == "cuda":
            figures["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        results[precision] = figures
    detail = ", ".join(f"{p}: e2e {v['e2e_wall_ms'][0]} ms" for p, v in results.items())
    return "ok", detail, results


def check_amp_train_step(ctx: Context) -> tuple[str, str, dict]:
    import math

    import torch

    from hqsam_edge.data.synthetic import write_synthetic_hqseg
    from hqsam_edge.model import build_model
    from hqsam_edge.train.spec import TrainSpec
    from hqsam_edge.train.trainer import train

    if ctx.device != "cuda":
        raise Skip("AMP needs CUDA")
    data = write_synthetic_hqseg(ctx.workdir / "hqseg", n_train=1, n_val=0, size=(240, 320))
    torch.manual_seed(0)
    checkpoint = ctx.workdir / "mobile_sam.pt"
    torch.save(build_model("vit_tiny", "sam").state_dict(), checkpoint)
    result = train(TrainSpec(backbone="vit_tiny", checkpoint=str(checkpoint), data=str(data), out=str(ctx.workdir /
                             "train"), epochs=1, max_steps=2, batch_size=2, workers=0, device="cuda", progress=False))
    finite = all(math.isfinite(v) for v in result.losses)
    status = "ok" if finite and len(result.losses) == 2 and result.merged_checkpoint else "miss"
    return status, f"losses {[round(v, 4) for v in result.losses]}", {"losses": list(result.losses)}


# -- TensorRT engines (first: what only a GPU answers) ----------------------------------------------------------


def _require_tensorrt() -> None:
    from hqsam_edge.runtime.environment import tensorrt_status

    status = tensorrt_status()
    if not status.usable:
        raise Skip(status.detail)
    for module in ("onnxruntime", "onnxconverter_common"):  # the CPU checks of the precision graphs
        if importlib.util.find_spec(module) is None:
            raise Skip(f"TensorRT builds check their graphs with {module} first: pip install {module}")


def _int8_bounds(ctx: Context):
    """INT8's bounds here: the random-weight ones (tests/engines) unless the run has real weights."""
    from dataclasses import replace

    from hqsam_edge.runtime.compare import PRECISION_BOUNDS

    real = PRECISION_BOUNDS["int8"]
    return real if ctx.checkpoint is not None and not ctx.stress else replace(real, **RANDOM_WEIGHT_INT8)


def _engine_pair(ctx: Context, precision: str) -> tuple[str, str, dict]:
    """Build one precision's engines (open bounds, so that the figures are recorded), judge them (INT8 on random
    weights by the random-weight bounds, the real bound's verdict kept as information), and time them."""
    from hqsam_edge.pipeline.build import BuildSpec, build
    from hqsam_edge.runtime.compare import PRECISION_BOUNDS
    from hqsam_edge.runtime.predictor import Predictor

    _require_tensorrt()
    folder = ctx.folder()
    artifact = build(BuildSpec(str(folder), backend="tensorrt", precision=precision, calib_limit=4, heldout=2,
                               min_sqnr_db=0.0, min_mask_iou=0.0, **PROFILE))
    ctx.engines[precision] = artifact
    bounds = _int8_bounds(ctx) if precision == "int8" else PRECISION_BOUNDS[precision]
    verdict, detail, figures = _judged(artifact.parity, precision, f"TensorRT {precision}", bounds)
    result = {**_summary(figures), "weights": ctx.weights, "bounds": bounds.to_dict(), "recipes": _recipes(artifact)}
    if precision == "int8" and bounds != PRECISION_BOUNDS["int8"]:
        real = _judged(artifact.parity, precision, "TensorRT int8 (real bound)")
        result["real_bound"] = {"status": real[0], **({"miss": real[1]} if real[1] else {})}  # information only
    with Predictor.from_artifacts(folder, backend="tensorrt", precision=precision) as predictor:
        result.update(_latency(predictor, ctx.iters, "cuda"))
    return verdict, detail or f"e2e {result['e2e_wall_ms'][0]} ms", result


def check_tensorrt_fp32(ctx: Context) -> tuple[str, str, dict]:
    return _engine_pair(ctx, "fp32")


def check_tensorrt_fp16(ctx: Context) -> tuple[str, str, dict]:
    return _engine_pair(ctx, "fp16")


def check_tensorrt_int8(ctx: Context) -> tuple[str, str, dict]:
    return _engine_pair(ctx, "int8")


def check_int8_vs_fp16(ctx: Context) -> tuple[str, str, dict]:
    """INT8 against FP16 on the same engine profile (both built by this run)."""
    from hqsam_edge.runtime.predictor import Predictor

    missing = [p for p in ("fp16", "int8") if p not in ctx.engines]
    if missing:
        raise Skip(f"needs the {' and '.join(missing)} engines of this run")
    figures = {}
    for precision in ("fp16", "int8"):
        with Predictor.from_artifacts(ctx.folder(), backend="tensorrt", precision=precision) as predictor:
            figures[precision] = _latency(predictor, ctx.iters, "cuda")
    ratio = figures["fp16"]["encoder_wall_ms"][0] / max(figures["int8"]["encoder_wall_ms"][0], 1e-9)
    figures["encoder_speedup_int8_over_fp16"] = round(ratio, 3)
    figures["sources"] = {p: _recipes(ctx.engines[p]).get("encoder", {}).get("source") for p in ("fp16", "int8")}
    return ("ok" if ratio >= 1.0 else "miss"), f"INT8 encoder {ratio:.2f}x FP16's", figures


def _open_engines(ctx: Context, precision: str, slots: int = 1):
    from hqsam_edge.export.manifest import read_manifest
    from hqsam_edge.runtime.base import ModelInfo
    from hqsam_edge.runtime.tensorrt_backend import TensorRTBackend

    folder = ctx.folder()
    manifest = read_manifest(folder)
    artifact = manifest.find("tensorrt", precision)
    return TensorRTBackend(ModelInfo.from_manifest(manifest), folder / artifact.files["encoder"],
                           folder / artifact.files["decoder"], precision=precision, slots=slots)


def check_tensorrt_threads(ctx: Context) -> tuple[str, str, dict]:
    """Two threads predicting at once on one backend of two slots, a decode on another thread than its encode;
    the device's free memory after the threads end as before them."""
    import threading

    import numpy as np
    import torch

    from hqsam_edge.runtime.predictor import Predictor

    if "fp16" not in ctx.engines:
        raise Skip("needs the fp16 engines of this run")
    backend = _open_engines(ctx, "fp16", slots=2)
    images, box = ctx.images(), np.array([100, 80, 500, 400])
    warm = Predictor(backend)
    warm.set_image(images[0])
    expected = warm.predict(box=box)[0]
    torch.cuda.synchronize()
    free_before = torch.cuda.mem_get_info()[0]
    errors: list[str] = []
    masks: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        try:
            predictor = Predictor(backend)
            for _ in range(3):
                predictor.set_image(images[0])
                masks[k] = predictor.predict(box=box)[0]
        except Exception as exc:  # noqa: BLE001 - recorded
            errors.append(f"thread {k}: {type(exc).__name__}: {exc}"[:200])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    crossed = Predictor(backend)
    crossed.set_image(images[1])  # encoded here ...
    other = threading.Thread(target=lambda: masks.__setitem__(9, crossed.predict(box=box)[0]))
    other.start()  # ... decoded on another thread
    other.join()
    torch.cuda.synchronize()
    grown_mib = (free_before - torch.cuda.mem_get_info()[0]) / 2**20
    backend.deactivate()
    same = all(np.array_equal(masks.get(k, ~expected), expected) for k in (0, 1))
    figures = {"errors": errors, "same_masks": same, "cross_thread_decode": 9 in masks,
               "device_memory_grown_mib": round(grown_mib, 1)}
    ok = not errors and same and 9 in masks and grown_mib <= MEMORY_SLACK_MIB
    return ("ok" if ok else "miss"), f"memory grown {grown_mib:.1f} MiB, errors {len(errors)}", figures


def check_tensorrt_batch_and_prompts(ctx: Context) -> tuple[str, str, dict]:
    """Encoder batches of 2 and 4 (a pair built with --max-batch 4, in a copy of the folder) against one image at
    a time; 40 boxes through the 16-prompt profile (three calls) against the torch model's masks."""
    import shutil

    import numpy as np

    from hqsam_edge.data import transforms as T
    from hqsam_edge.pipeline.build import BuildSpec, build
    from hqsam_edge.runtime.compare import sqnr_db
    from hqsam_edge.runtime.predictor import Predictor

    if "fp16" not in ctx.engines:
        raise Skip("needs the fp16 engines of this run")
    figures: dict[str, Any] = {}
    with Predictor.from_artifacts(ctx.folder(), backend="tensorrt", precision="fp16") as engines, \
            Predictor.from_model(ctx.model(), device="cuda") as reference:
        image = ctx.images()[0]
        rng = np.random.default_rng(0)
        x0 = rng.uniform(0, 700, 40)
        y0 = rng.uniform(0, 500, 40)
        boxes = np.stack([x0, y0, x0 + rng.uniform(40, 300, 40), y0 + rng.uniform(40, 260, 40)], axis=1)
        engines.set_image(image)
        reference.set_image(image)
        got, want = engines.predict_boxes(boxes)[0], reference.predict_boxes(boxes)[0]
        ious = [(a & b).sum() / max((a | b).sum(), 1) for a, b in zip(got, want)]
        figures["prompts_40_through_16"] = {"masks": len(got), "mean_iou_vs_torch": round(float(np.mean(ious)), 4)}
    ctx.need(90, "the --max-batch 4 build")
    batched = ctx.workdir / "batched"
    shutil.copytree(ctx.folder(), batched)
    build(BuildSpec(str(batched), backend="tensorrt", precision="fp16", max_batch=4, heldout=1, **PROFILE))
    with Predictor.from_artifacts(batched, backend="tensorrt", precision="fp16") as engines:
        tensors = [T.preprocess_image(img)[0] for img in (ctx.images() * 2)]
        single = [np.asarray(engines.backend.features_to_numpy(engines.backend.encode(t))["image_embeddings"])
                  for t in tensors]
        for b in (2, 4):
            out = engines.backend.features_to_numpy(engines.backend.encode(np.concatenate(tensors[:b])))
            figures[f"batch_{b}_sqnr_db_vs_single"] = round(min(
                float(sqnr_db(np.asarray(out["image_embeddings"])[k], single[k][0])) for k in range(b)), 1)
    ok = (figures["prompts_40_through_16"]["masks"] == 40
          and figures["prompts_40_through_16"]["mean_iou_vs_torch"] >= 0.97
          and all(figures[f"batch_{b}_sqnr_db_vs_single"] >= 40 for b in (2, 4)))
    return ("ok" if ok else "miss"), json.dumps(figures, default=str)[:200], figures


def check_tensorrt_reopen(ctx: Context) -> tuple[str, str, dict]:
    """Close and reopen the engines in one process while torch holds CUDA: the same masks, nothing refused."""
    import numpy as np
    import torch

    from hqsam_edge.runtime.predictor import Predictor

    if "fp16" not in ctx.engines:
        raise Skip("needs the fp16 engines of this run")
    held = torch.ones(1024, device="cuda")  # torch's CUDA context active throughout
    masks = []
    for _ in range(2):
        with Predictor.from_artifacts(ctx.folder(), backend="tensorrt", precision="fp16") as predictor:
            predictor.set_image(ctx.images()[0])
            masks.append(predictor.predict(box=np.array([100, 80, 500, 400]))[0])
    same = bool(np.array_equal(masks[0], masks[1])) and float(held.sum()) == 1024.0
    return ("ok" if same else "miss"), "same masks after reopening" if same else "masks differ", {"same": same}


def check_engine_tests(ctx: Context) -> tuple[str, str, dict]:
    """``tests/engines`` on this machine, in the check's budget."""
    missing = [m for m in ("pytest", "typer") if importlib.util.find_spec(m) is None]
    if missing:
        raise Skip(f"the engine tests need {', '.join(missing)}: pip install {' '.join(missing)}")
    _require_tensorrt()
    ctx.need(30, "the engine tests")
    try:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/engines"],
                               cwd=ROOT, capture_output=True, text=True, timeout=ctx.left())
    except subprocess.TimeoutExpired:
        raise Skip(f"did not finish in the {ctx.left():.0f} s left") from None
    tail = tests.stdout.strip().splitlines()[-3:]
    return ("ok" if tests.returncode == 0 else "miss"), (tail[-1] if tail else ""), {"tail": tail}


def check_onnxruntime_providers(ctx: Context) -> tuple[str, str, dict]:
    """CUDA fp32 and TensorRT fp16 / int8 under ONNX Runtime, each with the providers that ran."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise Skip("onnxruntime is not installed")
    import onnxruntime as ort

    from hqsam_edge.runtime.compare import compare
    from hqsam_edge.runtime.open import open_backend
    from hqsam_edge.runtime.predictor import Predictor

    available = ort.get_available_providers()
    rows = [("cpu", "fp32")] if ctx.device == "cpu" else [("cuda", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8")]
    folder, results = ctx.folder(), {}
    for provider, precision in rows:
        label = f"{provider} {precision}"
        name = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}.get(provider)
        if name and name not in available:
            results[label] = {"status": "skipped", "reason": f"onnxruntime {ort.__version__} has no {name}"}
            continue
        try:
            ctx.need(20, label)
            backend = open_backend(folder, backend="onnxruntime", precision=precision, providers=[provider])
            bounds = _int8_bounds(ctx) if precision == "int8" else None
            status, detail, figures = _judged(compare(ctx.reference(), backend, ctx.images()), precision,
                                              f"onnxruntime {label}", bounds)
            with Predictor(open_backend(folder, backend="onnxruntime", precision=precision,
                                        providers=[provider])) as predictor:
                latency = _latency(predictor, ctx.iters, "cpu")
                ran = predictor.backend.providers
            results[label] = {"status": status, "providers_ran": ran, **_summary(figures), **latency,
                              **({"miss": detail} if detail else {})}
        except Skip as why:
            results[label] = {"status": "skipped", "reason": str(why)}
        except Exception as exc:  # noqa: BLE001 - one provider's failure keeps the others' rows
            results[label] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return _verdict(results), _detail(results), results


def check_fp16_stress(ctx: Context) -> tuple[str, str, dict]:
    """The stress checkpoint in FP16: with and without the FP32 islands on the CPU, and as fp16 engines."""
    from hqsam_edge.calib.fp16_stress import fp16_stress
    from hqsam_edge.model.stress import save_stress_checkpoint
    from hqsam_edge.pipeline.build import BuildSpec, build
    from hqsam_edge.runtime.compare import PRECISION_BOUNDS

    bound = PRECISION_BOUNDS["fp16"].min_sqnr_db
    checkpoint, peaks = save_stress_checkpoint(ctx.workdir / "stress" / "stress.pth")
    folder = export_folder(ctx.workdir / "stress" / "hq_vit_tiny", checkpoint)
    result = fp16_stress(folder / "encoder.onnx", ctx.workdir / "stress" / "graphs")
    figures: dict[str, Any] = {"peaks": asdict(peaks), **{k: {"finite": v.finite, "worst_sqnr_db": round(v.worst_db, 1)}
                                                          for k, v in asdict_figures(result).items()}}
    ok = result.built.finite and result.built.worst_db >= bound and (
        not result.no_islands.finite or result.no_islands.worst_db < bound)
    try:
        _require_tensorrt()
        ctx.need(60, "the stress checkpoint's fp16 engines")
        artifact = build(BuildSpec(str(folder), backend="tensorrt", precision="fp16", heldout=1, min_sqnr_db=0.0,
                                   min_mask_iou=0.0, **PROFILE))
        status, detail, parity = _judged(artifact.parity, "fp16", "TensorRT fp16 on the stress checkpoint")
        figures["tensorrt_fp16"] = {"status": status, **_summary(parity), **({"miss": detail} if detail else {})}
        ok = ok and status == "ok"
    except Skip as why:
        figures["tensorrt_fp16"] = {"status": "skipped", "reason": str(why)}
    detail = f"islands {result.built.worst_db:.1f} dB, none {result.no_islands.worst_db:.1f} dB"
    return ("ok" if ok else "miss"), detail, figures


def asdict_figures(result) -> dict:
    return {"as_built": result.built, "fp16_storage_islands": result.islands,
            "fp16_storage_no_islands": result.no_islands}


def check_tracking(ctx: Context) -> tuple[str, str, dict]:
    """Frames per second following 1 and 8 objects of a synthetic scene, on the fastest backend here."""
    from hqsam_edge.runtime.predictor import Predictor
    from hqsam_edge.video import FirstFramePrompts, TrackSpec, track
    from hqsam_edge.video.synthetic import crossing_scene
    from hqsam_edge.video.tracker import mask_box

    scene = crossing_scene(frames=30)
    boxes = [tuple(float(v) for v in mask_box(m)) for m in scene.render(0)[1].values() if m.any()]
    if "fp16" in ctx.engines:
        predictor = Predictor.from_artifacts(ctx.folder(), backend="tensorrt", precision="fp16")
        backend = "tensorrt fp16"
    else:
        predictor = Predictor.from_model(ctx.model(), device=ctx.device,
                                         precision="fp16" if ctx.device == "cuda" else "fp32")
        backend = f"torch {ctx.device}"
    figures: dict[str, Any] = {"backend": backend}
    with predictor:
        for objects in (1, 8):
            prompts = FirstFramePrompts(boxes=tuple((boxes * 8)[:objects]))
            summary = track(predictor, scene.iter_frames(), prompts, None, TrackSpec(max_frames=30))
            figures[f"{objects}_objects_fps"] = round(summary.frames / max(summary.seconds, 1e-9), 1)
    return "ok", f"{figures['1_objects_fps']} / {figures['8_objects_fps']} FPS (1 / 8 objects, {backend})", figures


# (name, check, its budget in seconds): native engines first, then what ONNX Runtime and torch add
CHECKS: list[tuple[str, Callable[[Context], tuple[str, str, dict]], float]] = [
    ("platform", check_platform, 15),
    ("tensorrt fp32", check_tensorrt_fp32, 75),
    ("tensorrt fp16", check_tensorrt_fp16, 75),
    ("tensorrt int8", check_tensorrt_int8, 100),
    ("tensorrt int8 vs fp16", check_int8_vs_fp16, 20),
    ("tensorrt threads", check_tensorrt_threads, 20),
    ("tensorrt batch and prompts", check_tensorrt_batch_and_prompts, 90),
    ("tensorrt reopen", check_tensorrt_reopen, 20),
    ("engine tests", check_engine_tests, 90),
    ("onnxruntime providers", check_onnxruntime_providers, 90),
    ("torch precisions", check_torch_precisions, 45),
    ("torch latency", check_torch_latency, 30),
    ("amp train step", check_amp_train_step, 30),
    ("fp16 stress", check_fp16_stress, 90),
    ("tracking", check_tracking, 30),
]


def run(ctx: Context, only: list[str] | None = None, after_each: Callable[[list[Check]], None] = lambda r: None,
        checks=None) -> list[Check]:
    """Every check (or those in ``only``), in order, each within its budget: one whose budget does not fit in the
    time left is skipped; ``after_each(results so far)`` after each one (the report is written then, so that a
    run stopped at its time limit still returns what it measured)."""
    results = []
    for name, fn, budget in (CHECKS if checks is None else checks):
        if only and name not in only:
            continue
        check = Check(name, budget_s=budget)
        start = time.monotonic()
        left = ctx.deadline - start
        if left < budget:
            check.status = "skipped"
            check.detail = f"time budget spent ({max(left, 0):.0f} s left, it needs {budget:.0f})"
        else:
            ctx.check_deadline = start + budget
            try:
                check.status, check.detail, check.figures = fn(ctx)
            except Skip as why:
                check.status, check.detail = "skipped", str(why)
            except Exception as exc:  # noqa: BLE001 - recorded, the other checks still run
                check.status = "error"
                check.detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                check.figures = {"traceback": traceback.format_exc().splitlines()[-12:]}
            finally:
                ctx.check_deadline = float("inf")
        check.seconds = round(time.monotonic() - start, 1)
        if check.seconds > budget and check.status != "skipped":
            check.detail += f" (took {check.seconds:.0f} s of its {budget:.0f} s budget)"
        print(f"[{check.seconds:6.1f} s] {name}: {check.status} {check.detail}", file=sys.stderr, flush=True)
        results.append(check)
        after_each(results)
    return results


def markdown(checks: list[Check], machine: str, weights: str = "random") -> str:
    lines = [f"GPU check on: {machine}", f"Weights: {weights}", "",
             "| check | status | seconds | budget | detail |", "|---|---|---:|---:|---|"]
    lines += [f"| {c.name} | {c.status} | {c.seconds} | {c.budget_s:.0f} | {c.detail.replace('|', '/')} |"
              for c in checks]
    for c in checks:
        if c.figures and c.name != "platform" and c.status != "error":
            lines += ["", f"### {c.name}", "", "```json", json.dumps(c.figures, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def _preflight(allow_cpu: bool) -> str | None:
    """Why this machine cannot run the checks (one line), or None."""
    missing = [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]
    if missing:
        return f"error: gpu_check needs {', '.join(missing)} (pip install {' '.join(missing)})"
    import torch

    if not torch.cuda.is_available() and not allow_cpu:
        why = "a CPU-only build of torch" if not torch.version.cuda else "no CUDA device visible to torch"
        return f"error: no CUDA GPU here ({why}, torch {torch.__version__}); run this on a machine with an NVIDIA GPU"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check_out",
                    help="folder for the JSON and markdown")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations per latency figure")
    ap.add_argument("--budget-s", type=float, default=600.0, help="checks that do not fit in it are skipped")
    ap.add_argument("--only", action="append", default=None, help="run only this check (repeat)")
    weights = ap.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=Path, default=None, help="Light HQ-SAM checkpoint (real weights)")
    weights.add_argument("--stress", action="store_true", help="the stress checkpoint (model.stress) throughout")
    ap.add_argument("--allow-cpu", action="store_true", help="run what needs no GPU on the CPU (tests this script)")
    args = ap.parse_args(argv)
    problem = _preflight(args.allow_cpu)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import torch

    from hqsam_edge.hardware import this_platform

    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = this_platform().summary()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="hqsam-gpu-check-") as tmp:
        checkpoint = args.checkpoint
        if args.stress:
            from hqsam_edge.model.stress import save_stress_checkpoint

            checkpoint = save_stress_checkpoint(Path(tmp) / "stress.pth")[0]
        ctx = Context(device, max(1, args.iters), Path(tmp), time.monotonic() + args.budget_s, checkpoint=checkpoint,
                      stress=args.stress)

        def write(checks: list[Check]) -> None:
            report = {"machine": machine, "device": device, "torch": torch.__version__, "weights": ctx.weights,
                      "checks": [asdict(c) for c in checks], "seconds": round(sum(c.seconds for c in checks), 1)}
            (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
            (args.out / "gpu_check.md").write_text(markdown(checks, machine, ctx.weights))

        checks = run(ctx, args.only, after_each=write)
    print(f"wrote {args.out / 'gpu_check.json'} and gpu_check.md: " +
          ", ".join(f"{c.name} {c.status}" for c in checks), file=sys.stderr)
    return 1 if any(c.status == "error" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
