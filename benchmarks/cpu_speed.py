"""Ours against every other way to run HQ-SAM on this CPU, in one interleaved run.

Encoder, for each backbone (same weights everywhere: the official model, its floating-point tensors perturbed
from the official initialisation, saved as an official checkpoint and loaded by our export):

    official eager      ``segment_anything_hq``'s ``image_encoder`` in PyTorch (inference mode)
    plain export        ``torch.onnx.export`` of that encoder (opset 17, constant folding, nothing else) under
                        ONNX Runtime with its default session options: what a user would do first
    ours                ``encoder.onnx`` of ``hqsam-edge export`` as our ONNX Runtime backend opens it
    ours int8           ``--int8``: the INT8 graph ``hqsam-edge build --precision int8 --layer-search`` makes for
                        ONNX Runtime (GEMMs with activations ranged per call), checked against its bounds; its
                        parity line adds the check's embedding SQNR and mask IoU against fp32 PyTorch
    --encoder NAME=F    any other encoder graph (same input), under ONNX Runtime's defaults: an A/B of one change

Rounds interleave them (the order reversed every other round) so that a machine's drift hits each alike; each
figure is the median of every timed call. The parity line gives each graph's image embedding (and HQ feature)
against the official eager code's: max |difference| / max |official|.

Decoder: the official exported decoder (``SamOnnxModel`` as sam-hq's ``scripts/export_onnx_model.py`` builds it:
one prompt a call, every ViT feature fed and fused per call, upscaling to the original size inside) against our
``decoder.onnx`` with P prompts in one call (``--prompts``), per prompt, graph alone and with our upscaling of the
chosen mask to the original size (the like-for-like figure: the official graph upscales inside);
``--decoder NAME=FILE`` times another decoder graph beside ours, graph alone (an A/B of one change: speed only,
its weights need not be these). ``--skip-encoder`` leaves the encoder's figures out.

FMA peak: the encoder's FLOPs counted once (``torch.utils.flop_counter`` over our PyTorch model: matmuls and
convolutions, 2 per multiply-add), against this CPU's peak = cores x FP32 FLOPs per cycle x clock. FLOPs per cycle
come from the vector width in the CPU flags (AVX-512: 16 lanes, AVX2: 8) x 2 (a fused multiply-add) x 2 FMA pipes,
with AMD family 19h (Zen 3 / Zen 4) counted at 256-bit pipes (Zen 4 runs AVX-512 as two halves); the clock is
measured here by a chain of dependent integer adds (one a cycle) compiled with ``cc``. Both are printed;
``--flops-per-cycle`` / ``--clock-ghz`` override them. A large SGEMM in PyTorch gives the attainable ceiling.

    python benchmarks/cpu_speed.py --backbones vit_tiny vit_b --rounds 3 --iters 2
    python benchmarks/cpu_speed.py --backbones vit_tiny --skip-decoder --encoder before=old/encoder.onnx
    python benchmarks/cpu_speed.py --skip-encoder --decoder before=old/decoder.onnx
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from hqsam_edge.data import transforms as T
from hqsam_edge.export import contract as C
from hqsam_edge.hardware import cpu_flags
from hqsam_edge.model.random_weights import perturb_
from hqsam_edge.pipeline.export import ExportSpec, export_artifacts
from hqsam_edge.runtime.open import open_backend
from hqsam_edge.timing import time_calls

ORIGINAL = (1500, 2250)  # the picture the decoders upscale to
INPUT = (683, 1024)  # its size after the resize to 1024 on the long side
SETTLE_S = 0.5  # idle time before each timed variant: the previous one's spinning threads go to sleep


@dataclass
class BackboneResult:
    backbone: str
    encoder_ms: dict[str, float] = field(default_factory=dict)
    encoder_parity: dict[str, float] = field(default_factory=dict)
    int8_check: dict[str, float] = field(default_factory=dict)  # the build's own check of ours int8
    encoder_gflop: float = 0.0
    decoder_official_ms: float = 0.0  # one prompt, one call
    decoder_ms: dict[int, float] = field(default_factory=dict)  # P -> one call of P prompts
    decoder_upscaled_ms: dict[int, float] = field(default_factory=dict)  # same + upscaling the chosen masks
    decoder_other_ms: dict[str, dict[int, float]] = field(default_factory=dict)  # --decoder NAME -> P -> ms


# --- the official model and the peer graphs ----------------------------------------------------------------------

def official_model(backbone: str, seed: int = 5) -> torch.nn.Module:
    """The official HQ-SAM, official initialisation (seeded), every floating-point tensor perturbed so that every
    part matters (as the tests' checkpoints are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq import sam_model_registry
    torch.manual_seed(seed)
    model = perturb_(sam_model_registry[backbone]())
    return model.train().eval()  # TinyViT caches its attention biases when put in eval mode: cache the new ones


def plain_encoder_onnx(model: torch.nn.Module, path: Path) -> None:
    """``torch.onnx.export`` of the official image encoder as a user would write it."""
    image = torch.zeros(C.IMAGE.concrete(B=1))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.image_encoder, (image,), str(path), input_names=[C.IMAGE.name], opset_version=17,
                          do_constant_folding=True, dynamo=False)


def official_decoder_onnx(model: torch.nn.Module, backbone: str, path: Path) -> dict[str, np.ndarray]:
    """The official decoder export (sam-hq's scripts/export_onnx_model.py), with the early-feature width of each
    backbone (the official script assumes a ViT); returns feeds for one box."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq.utils.onnx import SamOnnxModel
    onnx_model = SamOnnxModel(model, hq_token_only=False, multimask_output=False).eval()
    if backbone == "vit_tiny":
        interm = torch.randn(1, 1, 64, 64, 160)
    else:
        interm = torch.randn(4, 1, 64, 64, model.image_encoder.patch_embed.proj.out_channels)
    dummy = {
        "image_embeddings": torch.randn(1, 256, 64, 64),
        "interm_embeddings": interm,
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor(ORIGINAL, dtype=torch.float),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(onnx_model, tuple(dummy.values()), str(path), input_names=list(dummy),
                          output_names=["masks", "iou_predictions", "low_res_masks"],
                          dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                          opset_version=17, do_constant_folding=True, dynamo=False)
    feeds = {k: v.numpy() for k, v in dummy.items()}
    feeds.update(point_coords=np.float32([[[100.0, 120.0], [700.0, 650.0]]]), point_labels=np.float32([[2, 3]]),
                 has_mask_input=np.float32([0]))
    return feeds


def default_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --- the CPU's peak -----------------------------------------------------------------------------------------------

CLOCK_C = r"""
#include <stdint.h>
uint64_t chain(uint64_t n) {
    uint64_t x = 0;
    for (uint64_t i = 0; i < n; i++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    return x;
}
"""


def measured_clock_ghz() -> float | None:
    """GHz from 8 dependent integer adds an iteration (one cycle each on every x86 core since the Pentium 4's
    successors); None where there is no ``cc`` or the machine is not x86-64."""
    if platform.machine() not in ("x86_64", "AMD64") or not shutil.which("cc"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = Path(tmp) / "chain.c", Path(tmp) / "chain.so"
        src.write_text(CLOCK_C)
        subprocess.run(["cc", "-O1", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
        chain = ctypes.CDLL(str(lib)).chain
        chain.argtypes, chain.restype = [ctypes.c_uint64], ctypes.c_uint64
        chain(10_000_000)
        best = min(_timed(lambda: chain(200_000_000)) for _ in range(5))
    return 8 * 200_000_000 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_cycle() -> tuple[int, str]:
    """FP32 FLOPs per cycle per core from the CPU's flags, and how that was decided."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = cpu_flags()
    family = next((int(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu family")), 0)
    amd = "AuthenticAMD" in info
    if "avx512f" in flags:
        lanes, why = 16, "AVX-512"
        if amd and family == 0x19:
            lanes, why = 8, "AVX-512 on 256-bit pipes (AMD family 19h)"
    elif "avx2" in flags and "fma" in flags:
        lanes, why = 8, "AVX2 + FMA"
    else:
        lanes, why = 4, "128-bit vectors"
    return lanes * 2 * 2, f"{why}: {lanes} FP32 lanes x 2 (FMA) x 2 pipes"


def sgemm_gflops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(5))
    return 2 * n**3 / best / 1e9


def encoder_gflop(ours_model: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ours_model.encode(torch.zeros(C.IMAGE.concrete(B=1)))
    return counter.get_total_flops() / 1e9


# --- timing -------------------------------------------------------------------------------------------------------

def interleaved(calls: dict[str, Callable[[], object]], rounds: int, iters: int) -> dict[str, float]:
    """Median ms of each call over ``rounds`` interleaved rounds of ``iters`` timed calls (a warm-up call each in
    the first round); the order reversed every other round. A pause before each: the previous call's thread pool
    (ONNX Runtime's workers, PyTorch's OpenMP threads) spins for a while after its work and would take the cores
    from the next one."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            time.sleep(SETTLE_S)
            times[name].extend(time_calls(calls[name], iters, warmup=1 if r == 0 else 0).times_ms)
            print(f"  round {r + 1}/{rounds} {name}: {statistics.median(times[name]):.1f} ms", flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-12))


def official_encoder_outputs(model: torch.nn.Module, image: torch.Tensor) -> list[np.ndarray]:
    """The official encoder's image embedding, and for HQ-SAM the feature our encoder fuses from it
    (``embedding_encoder(embeddings) + compress_vit_feat(early)``, as the official decoder does per call)."""
    with torch.inference_mode():
        embeddings, interm = model.image_encoder(image)
        decoder = model.mask_decoder
        early = interm[0].permute(0, 3, 1, 2)
        hq = decoder.embedding_encoder(embeddings) + decoder.compress_vit_feat(early)
    return [embeddings.numpy(), hq.numpy()]


def bench_backbone(backbone: str, args: argparse.Namespace, workdir: Path) -> BackboneResult:
    result = BackboneResult(backbone)
    print(f"\n## {backbone}: preparing (official model, plain export, our export)", flush=True)
    official = official_model(backbone)
    checkpoint = workdir / f"official_{backbone}.pth"
    torch.save(official.state_dict(), checkpoint)
    ours_folder = workdir / f"hq_{backbone}"
    export_artifacts(ExportSpec(backbone=backbone, checkpoint=str(checkpoint), out=str(ours_folder)))
    backend = open_backend(ours_folder, backend="onnxruntime", providers=["cpu"])
    backend.activate()
    image = np.random.default_rng(0).normal(size=C.IMAGE.concrete(B=1)).astype(np.float32)
    if not args.skip_encoder:
        bench_encoder(result, official, checkpoint, ours_folder, backend, image, args, workdir)
    if not args.skip_decoder:
        bench_decoder(result, official, backend, image, args, workdir)
    backend.deactivate()
    return result


def bench_encoder(result: BackboneResult, official: torch.nn.Module, checkpoint: Path, ours_folder: Path, backend,
                  image: np.ndarray, args: argparse.Namespace, workdir: Path) -> None:
    from hqsam_edge.model.build import build_model

    plain = workdir / f"plain_{result.backbone}.onnx"
    plain_encoder_onnx(official, plain)
    result.encoder_gflop = encoder_gflop(build_model(result.backbone, "hq", checkpoint))
    int8 = ours_int8(ours_folder, result) if args.int8 else None
    x = torch.from_numpy(image)
    sessions = {"plain export": default_session(plain, args.threads)}
    for spec in args.encoder:
        name, path = spec.split("=", 1)
        sessions[name] = default_session(Path(path), args.threads)

    def eager():
        with torch.inference_mode():
            official.image_encoder(x)

    calls: dict[str, Callable[[], object]] = {} if args.skip_eager else {"official eager": eager}
    calls.update({name: (lambda s=s: s.run(None, {C.IMAGE.name: image})) for name, s in sessions.items()})
    calls["ours"] = lambda: backend.encode(image)
    if int8 is not None:
        calls["ours int8"] = lambda: int8.encode(image)
    print(f"## {result.backbone}: encoder", flush=True)
    result.encoder_ms = interleaved(calls, args.rounds, args.iters)

    reference = official_encoder_outputs(official, x)
    features = backend.features_to_numpy(backend.encode(image))
    ours_out = [features[C.IMAGE_EMBEDDINGS.name], features[C.HQ_FEATURES.name]]
    result.encoder_parity["ours"] = max(relative_error(o, r) for o, r in zip(ours_out, reference))
    if int8 is not None:
        features = int8.features_to_numpy(int8.encode(image))
        result.encoder_parity["ours int8"] = max(relative_error(features[o.name], r) for o, r in
                                                 zip((C.IMAGE_EMBEDDINGS, C.HQ_FEATURES), reference))
        int8.deactivate()
    for name, s in sessions.items():
        result.encoder_parity[name] = relative_error(s.run(None, {C.IMAGE.name: image})[0], reference[0])


def ours_int8(folder: Path, result: BackboneResult):
    """Build ``folder``'s INT8 graphs for ONNX Runtime as ``hqsam-edge build --precision int8 --layer-search`` does,
    note the build's check in ``result``, and open them."""
    from hqsam_edge.calib.precision_graphs import PrecisionSpec, make_precision_graphs
    from hqsam_edge.runtime.compare import encoder_sqnr

    print(f"## {result.backbone}: building the int8 graphs (checked against the bounds)", flush=True)
    artifact = make_precision_graphs(PrecisionSpec(str(folder), precision="int8", layer_search=True))
    calibration = artifact.calibration
    result.int8_check = {**{f"{k} SQNR dB": round(v, 1) for k, v in encoder_sqnr(artifact.parity).items()},
                         "mean mask IoU": round(artifact.parity["mean_mask_iou"], 4),
                         "layers": f"{calibration.quantized_layers} of {calibration.candidate_layers}",
                         "method": calibration.method, "weight bits": calibration.weight_bits}
    backend = open_backend(folder, backend="onnxruntime", precision="int8", providers=["cpu"])
    backend.activate()
    return backend


def bench_decoder(result: BackboneResult, official: torch.nn.Module, backend, image: np.ndarray,
                  args: argparse.Namespace, workdir: Path) -> None:
    print(f"## {result.backbone}: decoder", flush=True)
    features = backend.encode(image)
    off_feeds = official_decoder_onnx(official, result.backbone, workdir / f"official_decoder_{result.backbone}.onnx")
    off = default_session(workdir / f"official_decoder_{result.backbone}.onnx", args.threads)

    def prompts(p: int) -> dict[str, np.ndarray]:
        coords = np.tile(np.float32([[[100.0, 120.0], [700.0, 650.0]]]), (p, 1, 1))
        return {C.POINT_COORDS.name: coords, C.POINT_LABELS.name: np.tile(np.float32([[2, 3]]), (p, 1)),
                C.MASK_INPUT.name: np.zeros(C.MASK_INPUT.concrete(P=p), np.float32),
                C.HAS_MASK_INPUT.name: np.zeros((p,), np.float32)}

    def tokens(p: int):
        feeds = prompts(p)
        return lambda: backend.decode_tokens(features, feeds)

    def upscaled(p: int):
        feeds = prompts(p)

        def call():
            out = backend.decode(features, feeds, multimask_output=False, hq_token_only=False)
            T.postprocess_masks(out["low_res_masks"], INPUT, ORIGINAL)
        return call

    numpy_features = backend.features_to_numpy(features)
    others = {name: default_session(Path(path), args.threads) for name, path in
              (spec.split("=", 1) for spec in args.decoder)}

    def other(session, p: int):
        feeds = {**numpy_features, **prompts(p)}
        return lambda: session.run(None, feeds)

    calls: dict[str, Callable[[], object]] = {"official, 1 prompt": lambda: off.run(None, off_feeds)}
    for p in args.prompts:
        calls[f"ours P={p}"] = tokens(p)
        calls[f"ours P={p} + upscaling"] = upscaled(p)
        calls.update({f"{name} P={p}": other(session, p) for name, session in others.items()})
    ms = interleaved(calls, args.rounds, args.iters)
    result.decoder_official_ms = ms["official, 1 prompt"]
    result.decoder_ms = {p: ms[f"ours P={p}"] for p in args.prompts}
    result.decoder_upscaled_ms = {p: ms[f"ours P={p} + upscaling"] for p in args.prompts}
    result.decoder_other_ms = {name: {p: ms[f"{name} P={p}"] for p in args.prompts} for name in others}


# --- report -------------------------------------------------------------------------------------------------------

def report(result: BackboneResult, peak_gflops: float | None) -> None:
    if result.encoder_ms:
        report_encoder(result, peak_gflops)
    if result.decoder_ms:
        report_decoder(result)


def report_encoder(result: BackboneResult, peak_gflops: float | None) -> None:
    enc = result.encoder_ms
    print(f"\n### {result.backbone}: encoder, ms (median)   [parity: max |diff| / max |official|]")
    for name, ms in enc.items():
        parity = result.encoder_parity.get(name)
        print(f"{name:<28}{ms:10.1f}" + (f"   [{parity:.1e}]" if parity is not None else ""))
    for mine in ("ours", "ours int8"):
        for name, ms in enc.items():
            if mine in enc and not name.startswith("ours"):
                print(f"{mine} vs {name:<20}{ms / enc[mine]:9.2f}x")
    if result.int8_check:
        print("ours int8, the build's check vs fp32 PyTorch: "
              + ", ".join(f"{k} {v}" for k, v in result.int8_check.items()))
    ours = enc["ours"]
    achieved = result.encoder_gflop / (ours / 1000)
    line = f"encoder {result.encoder_gflop:.1f} GFLOP -> {achieved:.1f} GFLOP/s"
    if peak_gflops:
        line += f" = {100 * achieved / peak_gflops:.0f}% of the FMA peak ({peak_gflops:.0f} GFLOP/s)"
    print(line)


def report_decoder(result: BackboneResult) -> None:
    off = result.decoder_official_ms
    one = result.decoder_ms[min(result.decoder_ms)]
    print(f"\n### {result.backbone}: decoder, ms per prompt (official: one prompt a call, {off:.1f} ms)")
    print(f"{'P':>4}{'ours/prompt':>14}{'+upscaling':>13}{'official/ours':>15}{'(+upscaling)':>14}{'P x one':>10}")
    for p, ms in result.decoder_ms.items():
        up = result.decoder_upscaled_ms[p]
        print(f"{p:>4}{ms / p:14.1f}{up / p:13.1f}{off / (ms / p):14.2f}x{off / (up / p):13.2f}x{ms / one:9.2f}x")
    for name, times in result.decoder_other_ms.items():
        print(f"{name}, graph alone, ms per prompt (and ours x faster): "
              + ", ".join(f"P={p} {ms / p:.1f} ({ms / result.decoder_ms[p]:.2f}x)" for p, ms in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["vit_tiny", "vit_b"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=2, help="timed calls of each per round")
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: its default)")
    parser.add_argument("--encoder", action="append", default=[], metavar="NAME=FILE",
                        help="another encoder graph to time beside ours (repeat)")
    parser.add_argument("--skip-eager", action="store_true", help="leave out the official eager encoder")
    parser.add_argument("--skip-encoder", action="store_true",
                        help="time the decoders only (the encoder runs once, for their input)")
    parser.add_argument("--skip-decoder", action="store_true")
    parser.add_argument("--decoder", action="append", default=[], metavar="NAME=FILE",
                        help="another decoder graph (same inputs as ours) to time beside ours at each P (repeat)")
    parser.add_argument("--int8", action="store_true",
                        help="also build and time our INT8 graph for ONNX Runtime (with the layer search: minutes)")
    parser.add_argument("--clock-ghz", type=float, default=None, help="default: measured")
    parser.add_argument("--flops-per-cycle", type=int, default=None, help="default: from the CPU's flags")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    for flag, specs in (("--encoder", args.encoder), ("--decoder", args.decoder)):
        for spec in specs:
            if "=" not in spec or not Path(spec.split("=", 1)[1]).is_file():
                parser.error(f"{flag} {spec}: give NAME=FILE with an existing ONNX file")
    if args.skip_encoder and (args.encoder or args.int8 or args.skip_decoder):
        parser.error("--skip-encoder leaves nothing to time for --encoder, --int8 or --skip-decoder: drop one")

    import onnxruntime

    cores = os.cpu_count() or 1
    clock = args.clock_ghz or measured_clock_ghz()
    fpc, why = (args.flops_per_cycle, "given") if args.flops_per_cycle else flops_per_cycle()
    peak = cores * fpc * clock if clock else None
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}")
    print(f"FMA peak: {cores} cores x {fpc} FLOP/cycle ({why}) x "
          + (f"{clock:.2f} GHz ({'given' if args.clock_ghz else 'measured'}) = {peak:.0f} GFLOP/s" if clock
             else "unknown clock (pass --clock-ghz)"))
    print(f"SGEMM 2048 in PyTorch: {sgemm_gflops():.0f} GFLOP/s (the attainable ceiling)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            results.append(bench_backbone(backbone, args, Path(tmp)))
            report(results[-1], peak)
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "clock_ghz": clock, "flops_per_cycle": fpc,
                                         "results": [asdict(r) for r in results]}, indent=1))


if __name__ == "__main__":
    main()
