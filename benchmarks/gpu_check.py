"""Check what a GPU machine can check, in under ten minutes, and write the figures as JSON and markdown.

    python benchmarks/gpu_check.py [--out DIR] [--iters N] [--budget-s S]

Runs from a plain checkout (it puts the repository on ``sys.path``; nothing is installed). Needs PyTorch with
CUDA, numpy, Pillow, OpenCV and Meta's ``segment_anything`` (the model is built from it: on a bare PyTorch
image, carry its wheel: ``pip install segment-anything opencv-python-headless``); uses, when present,
``onnx`` + ``onnxslim`` + ``onnxruntime`` / ``onnxruntime-gpu`` (the ONNX Runtime checks), ``tensorrt`` +
``pycuda`` + ``onnxconverter-common`` (engines) and ``pytest`` (the engine tests). The report is rewritten
after every check, so a run stopped at a time limit still leaves what it measured.
Every model has random weights (Light HQ-SAM, ``vit_tiny``, seed 0): speed does not depend on weights, and
the accuracy checks compare two runs of the same weights.

The checks, each recorded with its status (``ok``, ``miss``: ran and missed its bound, figures kept,
``skipped``: with the reason, ``error``: it could not run) and its seconds:

1. ``platform``: ``hardware.detect_platform`` against the real driver (GPU, driver, compute capability,
   CUDA, TensorRT).
2. ``torch precisions``: the torch backend on CUDA at fp32 with TF32 off and on, fp16 and bf16, against the
   fp32 model on the CPU through ``runtime.compare``, the check every build uses (fp32 bound for fp32,
   fp16's for fp16 and bf16).
3. ``torch latency``: encoder, decoder (one box) and end to end, by CUDA events and by wall clock, and the
   peak GPU memory, at fp32 and fp16.
4. ``amp train step``: two optimiser steps of the trainer under CUDA AMP on a synthetic HQSeg-44K.
5. ``onnxruntime providers``: the exported graphs under ONNX Runtime's CUDA and TensorRT providers (when
   ``onnxruntime-gpu`` has them) against the CPU fp32 model, and their latency.
6. ``tensorrt engines``: ``build --backend tensorrt`` at fp32 / fp16 / int8 (both graphs, with the
   pycuda runtime's check), each engine pair's figures against its bound, its latency, then the engine tests
   (``tests/engines``).

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
BUDGET_TAIL_S = 40.0  # past --budget-s, what the engine tests may still use before the report is final


@dataclass
class Check:
    name: str
    status: str = "ok"  # ok | miss | skipped | error
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Skip(Exception):
    """A check that cannot run here, and why."""


@dataclass
class Context:
    device: str
    iters: int
    workdir: Path
    deadline: float
    _folder: Path | None = None

    def model(self):
        """Light HQ-SAM with random weights (seed 0), the same every call."""
        import torch

        from hqsam_edge.model import build_model

        torch.manual_seed(0)
        return build_model("vit_tiny", "hq")

    def images(self):
        from hqsam_edge.data.synthetic import demo_image

        return [demo_image(768, 1024, seed=900 + i) for i in range(CHECK_IMAGES)]

    def folder(self) -> Path:
        """An exported Light HQ-SAM folder (random weights, seed 0), made once."""
        if self._folder is None:
            for module in ("onnx", "onnxslim"):
                if importlib.util.find_spec(module) is None:
                    raise Skip(f"exporting needs {module}: pip install {module}")
            from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

            out = self.workdir / "hq_vit_tiny"
            export_artifacts(ExportSpec(random_weights=True, out=str(out), verify=False))
            self._folder = out
        return self._folder

    def reference(self):
        from hqsam_edge.runtime.base import ModelInfo
        from hqsam_edge.runtime.torch_backend import TorchBackend

        return TorchBackend(self.model(), device="cpu", info=ModelInfo("vit_tiny", "hq"))


def _judged(figures: dict, precision: str, what: str) -> tuple[str, str, dict]:
    """(status, detail, figures) of one comparison against its precision's bound; a miss keeps the figures."""
    from hqsam_edge.errors import ParityError
    from hqsam_edge.runtime.compare import PRECISION_BOUNDS, check

    try:
        return "ok", "", check(figures, PRECISION_BOUNDS[precision], what)
    except ParityError as miss:
        return "miss", str(miss), {**figures, "bounds": PRECISION_BOUNDS[precision].to_dict()}


def _summary(figures: dict) -> dict:
    """The headline figures of a comparison."""
    from hqsam_edge.runtime.compare import encoder_sqnr

    return {"sqnr_db": {k: round(v, 1) if v != float("inf") else "inf (identical)"
                        for k, v in encoder_sqnr(figures).items()},
            "mean_mask_iou": round(figures["mean_mask_iou"], 5), "min_mask_iou": round(figures["min_mask_iou"], 5)}


def _recipes(artifact) -> dict:
    """The engines' recipes by graph, as the manifest records them."""
    return {} if artifact.engine is None else {g: asdict(r) for g, r in artifact.engine.recipes.items()}


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
    from hqsam_edge.runtime.base import ModelInfo
    from hqsam_edge.runtime.compare import compare
    from hqsam_edge.runtime.torch_backend import TorchBackend

    variants = [("fp32, TF32 off", "fp32", False), ("fp32, TF32 on", "fp32", True), ("fp16", "fp16", False),
                ("bf16", "bf16", False)]
    if ctx.device == "cpu":
        variants = variants[:1]
    reference, images, model = ctx.reference(), ctx.images(), ctx.model()
    results, statuses = {}, []
    for label, precision, tf32 in variants:
        _set_tf32(tf32)
        candidate = TorchBackend(copy.deepcopy(model), device=ctx.device, precision=precision,
                                 info=ModelInfo("vit_tiny", "hq"))
        status, detail, figures = _judged(compare(reference, candidate, images),
                                          "fp32" if precision == "fp32" else "fp16", f"torch {label}")
        results[label] = {"status": status, **_summary(figures), **({"miss": detail} if detail else {})}
        statuses.append(status)
    _set_tf32(False)
    return ("miss" if "miss" in statuses else "ok"), ", ".join(f"{k}: {v['status']}" for k, v in results.items()), results


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


def check_onnxruntime_providers(ctx: Context) -> tuple[str, str, dict]:
    if importlib.util.find_spec("onnxruntime") is None:
        raise Skip("onnxruntime is not installed")
    import onnxruntime as ort

    from hqsam_edge.runtime.compare import compare
    from hqsam_edge.runtime.open import open_backend
    from hqsam_edge.runtime.predictor import Predictor

    providers = [p for p, name in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"))
                 if name in ort.get_available_providers()]
    if ctx.device == "cpu":
        providers = ["cpu"]
    if not providers:
        raise Skip(f"onnxruntime {ort.__version__} has no GPU provider here "
                   f"({', '.join(ort.get_available_providers())}): onnxruntime-gpu brings CUDA and TensorRT")
    folder, results, statuses = ctx.folder(), {}, []
    for provider in providers:
        status, detail, figures = _judged(compare(ctx.reference(), open_backend(folder, backend="onnxruntime",
                                                                                providers=[provider]), ctx.images()),
                                          "fp32", f"onnxruntime {provider}")
        with Predictor(open_backend(folder, backend="onnxruntime", providers=[provider])) as predictor:
            latency = _latency(predictor, ctx.iters, "cpu")
        results[provider] = {"status": status, **_summary(figures), **latency, **({"miss": detail} if detail else {})}
        statuses.append(status)
    return ("miss" if "miss" in statuses else "ok"), ", ".join(f"{k}: {v['status']}" for k, v in results.items()), results


def _engine_pair(ctx: Context, folder: Path, precision: str) -> dict:
    """Build one precision's engines (open bounds, so that the figures are recorded), judge the figures against
    the real bound (INT8 on random weights misses the default INT8 bound by construction: the CPU INT8 tests
    show it), and time them."""
    from hqsam_edge.pipeline.build import BuildSpec, build
    from hqsam_edge.runtime.predictor import Predictor

    artifact = build(BuildSpec(str(folder), backend="tensorrt", precision=precision, calib_limit=4, heldout=2,
                               max_prompts=16, max_points=8, min_sqnr_db=0.0, min_mask_iou=0.0))
    verdict, detail, figures = _judged(artifact.parity, precision, f"TensorRT {precision}")
    with Predictor.from_artifacts(folder, backend="tensorrt", precision=precision) as predictor:
        latency = _latency(predictor, ctx.iters, "cuda")
    return {"status": verdict, **_summary(figures), **latency, "recipes": _recipes(artifact),
            **({"miss": detail} if detail else {})}


def _engine_tests(ctx: Context) -> dict:
    """``tests/engines`` on this machine (its real-engine builds left out: this check built them), in the time
    left."""
    left = ctx.deadline + BUDGET_TAIL_S - time.monotonic()
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "reason": "pytest is not installed"}
    if left < 30:
        return {"status": "skipped", "reason": "time budget spent"}
    try:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/engines", "-k",
                                "not test_build_and_run_engines"], cwd=ROOT, capture_output=True, text=True,
                               timeout=left)
    except subprocess.TimeoutExpired:
        return {"status": "skipped", "reason": f"did not finish in the {left:.0f} s left"}
    return {"status": "ok" if tests.returncode == 0 else "miss", "tail": tests.stdout.strip().splitlines()[-3:]}


def check_tensorrt_engines(ctx: Context) -> tuple[str, str, dict]:
    from hqsam_edge.runtime.environment import tensorrt_status

    status = tensorrt_status()
    if not status.usable:
        raise Skip(status.detail)
    for module in ("onnxruntime", "onnxconverter_common"):  # the CPU checks of the precision graphs
        if importlib.util.find_spec(module) is None:
            raise Skip(f"TensorRT builds check their graphs with {module} first: pip install {module}")
    folder, results = ctx.folder(), {}
    for precision in ("fp32", "fp16", "int8"):
        if time.monotonic() > ctx.deadline:
            results[precision] = {"status": "skipped", "reason": "time budget spent"}
            continue
        try:
            results[precision] = _engine_pair(ctx, folder, precision)
        except Exception as exc:  # noqa: BLE001 - one precision's failure keeps the others' figures
            results[precision] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    results["engine tests"] = _engine_tests(ctx)
    statuses = [r["status"] for r in results.values()]
    verdict = "error" if "error" in statuses else "miss" if "miss" in statuses else "ok"
    return verdict, ", ".join(f"{k}: {v['status']}" for k, v in results.items()), results


CHECKS: list[tuple[str, Callable[[Context], tuple[str, str, dict]]]] = [
    ("platform", check_platform),
    ("torch precisions", check_torch_precisions),
    ("torch latency", check_torch_latency),
    ("amp train step", check_amp_train_step),
    ("onnxruntime providers", check_onnxruntime_providers),
    ("tensorrt engines", check_tensorrt_engines),
]


def run(ctx: Context, only: list[str] | None = None, after_each: Callable[[list[Check]], None] = lambda r: None
        ) -> list[Check]:
    """Every check (or those in ``only``), in order; ``after_each(results so far)`` after each one (the report
    is written then, so that a run stopped at its time limit still returns what it measured)."""
    results = []
    for name, fn in CHECKS:
        if only and name not in only:
            continue
        check = Check(name)
        start = time.monotonic()
        if start > ctx.deadline:
            check.status, check.detail = "skipped", "time budget spent"
        else:
            try:
                check.status, check.detail, check.figures = fn(ctx)
            except Skip as why:
                check.status, check.detail = "skipped", str(why)
            except Exception as exc:  # noqa: BLE001 - recorded, the other checks still run
                check.status = "error"
                check.detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                check.figures = {"traceback": traceback.format_exc().splitlines()[-12:]}
        check.seconds = round(time.monotonic() - start, 1)
        print(f"[{check.seconds:6.1f} s] {name}: {check.status} {check.detail}", file=sys.stderr, flush=True)
        results.append(check)
        after_each(results)
    return results


def markdown(checks: list[Check], machine: str) -> str:
    lines = [f"GPU check on: {machine}", "", "| check | status | seconds | detail |", "|---|---|---:|---|"]
    lines += [f"| {c.name} | {c.status} | {c.seconds} | {c.detail.replace('|', '/')} |" for c in checks]
    for c in checks:
        if c.figures and c.name != "platform" and c.status != "error":
            lines += ["", f"### {c.name}", "", "```json", json.dumps(c.figures, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def _preflight(allow_cpu: bool) -> str | None:
    """Why this machine cannot run the checks (one line), or None; the device to use otherwise."""
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
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check_out", help="folder for the JSON and markdown")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations per latency figure")
    ap.add_argument("--budget-s", type=float, default=540.0, help="checks not started by then are skipped")
    ap.add_argument("--only", action="append", default=None, help="run only this check (repeat)")
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

    def write(checks: list[Check]) -> None:
        report = {"machine": machine, "device": device, "torch": torch.__version__,
                  "checks": [asdict(c) for c in checks], "seconds": round(sum(c.seconds for c in checks), 1)}
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        (args.out / "gpu_check.md").write_text(markdown(checks, machine))

    with tempfile.TemporaryDirectory(prefix="hqsam-gpu-check-") as tmp:
        ctx = Context(device, max(1, args.iters), Path(tmp), time.monotonic() + args.budget_s)
        checks = run(ctx, args.only, after_each=write)
    print(f"wrote {args.out / 'gpu_check.json'} and gpu_check.md: " +
          ", ".join(f"{c.name} {c.status}" for c in checks), file=sys.stderr)
    return 1 if any(c.status == "error" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
