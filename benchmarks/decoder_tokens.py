"""The decoder's cost of returning every mask token, against the graph that fixed the choice at export.

Before issue 14 the decoder graph chose its masks inside (``multimask_output`` / ``hq_token_only`` fixed at
export: SAM's token 0 + HQ, M=1); now it returns every token's logits (HQ-SAM: 5 x 256 x 256 floats per prompt,
plain SAM 4) and the runtime chooses (``runtime.selection.select_masks``, numpy). This times, under ONNX Runtime
on the CPU, both graphs of the same random-weight model, the new one with the choice included:
``new + choose`` is what ``Backend.decode`` does per call. Rounds interleave the graphs (A B, B A, ...) on this
noisy machine; each figure is the median over rounds of the median of ``--iters`` calls.

    python benchmarks/decoder_tokens.py --variants hq sam --prompts 1 8 64 --rounds 5 --iters 5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from hqsam_edge.export import contract as C
from hqsam_edge.export.onnx_export import write_decoder_graph
from hqsam_edge.export.wrappers import DecoderGraph, export_copy
from hqsam_edge.runtime.selection import select_masks
from hqsam_edge.timing import time_interleaved


class FixedChoiceGraph(torch.nn.Module):
    """The decoder graph as it was: the choice of masks made inside, fixed at export."""

    def __init__(self, model: torch.nn.Module, multimask_output: bool) -> None:
        super().__init__()
        self.model, self.multimask_output = model, multimask_output
        self.eval()

    def forward(self, *inputs):
        if not self.model.is_hq:
            inputs = (inputs[0], None, *inputs[1:])
        return self.model.decode(*inputs, multimask_output=self.multimask_output, hq_token_only=False)


def export(module: torch.nn.Module, model, path: Path, outputs) -> None:
    features = tuple(torch.randn(s.shape) for s in C.decoder_inputs(model.is_hq)[: 2 if model.is_hq else 1])
    write_decoder_graph(module, features, path, outputs, is_hq=model.is_hq, opset=17)


def feeds(p: int, is_hq: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {s.name: rng.normal(size=s.shape).astype(np.float32) for s in C.decoder_inputs(is_hq)[: 2 if is_hq else 1]}
    out.update({C.POINT_COORDS.name: rng.uniform(0, 1000, (p, 2, 2)).astype(np.float32),
                C.POINT_LABELS.name: np.tile(np.array([[1, -1]], np.float32), (p, 1)),
                C.MASK_INPUT.name: np.zeros((p, 1, 256, 256), np.float32),
                C.HAS_MASK_INPUT.name: np.zeros((p,), np.float32)})
    return out


def bench_variant(variant: str, prompts: list[int], rounds: int, iters: int, workdir: Path) -> list[dict]:
    import onnxruntime as ort

    from hqsam_edge import build_model

    torch.manual_seed(0)
    model = export_copy(build_model("vit_tiny", variant))
    is_hq = model.is_hq
    old_outputs = (C.TensorSpec(C.LOW_RES_MASKS.name, np.float32, ("P", "M", C.LOW_RES_SIZE, C.LOW_RES_SIZE)),
                   C.TensorSpec(C.IOU_PREDICTIONS.name, np.float32, ("P", "M")))
    paths = {"new": workdir / f"{variant}_new.onnx"}
    export(DecoderGraph(model), model, paths["new"], C.decoder_outputs(is_hq))
    for multimask in (False, True):
        paths[f"old_mm{int(multimask)}"] = workdir / f"{variant}_old_mm{int(multimask)}.onnx"
        export(FixedChoiceGraph(model, multimask), model, paths[f"old_mm{int(multimask)}"], old_outputs)
    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    rng = np.random.default_rng(0)
    rows = []
    for p in prompts:
        f = feeds(p, is_hq, rng)
        for multimask in (False, True):
            old = sessions[f"old_mm{int(multimask)}"]

            def run_new(multimask=multimask):
                masks, iou = sessions["new"].run(None, f)
                return select_masks(masks, iou, is_hq=is_hq, multimask_output=multimask, hq_token_only=False)

            want, got = old.run(None, f), run_new()
            err = max(float(np.abs(a - b).max()) for a, b in zip(want, got))
            runs = {"old": lambda old=old: old.run(None, f), "new": run_new}
            times = time_interleaved(runs, rounds, iters, warmup=1, alternate=True)
            old_ms, new_ms = times["old"].median, times["new"].median
            rows.append(dict(variant=variant, prompts=p, multimask=multimask, old_ms=old_ms, new_ms=new_ms,
                             ratio=new_ms / old_ms, max_abs_diff=err))
            print(f"{variant:>3} P={p:<3} multimask={multimask!s:<5} fixed-choice graph {old_ms:8.1f} ms "
                  f"({old_ms / p:6.2f}/prompt)  every-token graph + choice {new_ms:8.1f} ms ({new_ms / p:6.2f}/prompt)"
                  f"  x{new_ms / old_ms:.3f}  (max |diff| {err:.1e})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["hq", "sam"])
    parser.add_argument("--prompts", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            bench_variant(variant, args.prompts, args.rounds, args.iters, Path(tmp))


if __name__ == "__main__":
    main()
