"""Segment an image with the four ONNX graphs of an artifact folder and ONNX Runtime alone (no hqsam-edge).

    python examples/onnx_graphs.py build/hq_vit_tiny --image scene.jpg --box 50,40,300,250 --out mask.png

What a C++ or DeepStream app does with the same graphs, each one's outputs fed to the next as they come:
``preprocess.onnx`` (the RGB image, any size -> the encoder's input and the sizes), ``encoder.onnx``,
``decoder.onnx`` (the box as two corner points, labels 2 and 3, scaled into the resized frame; every mask
token's logits and IoU out), ``postprocess.onnx`` (those, the sizes and the choice, ``multimask_output`` and,
for HQ-SAM, ``hq_token_only`` -> the chosen masks at the original size and their scores). Make the folder with
``hqsam-edge export --backbone vit_tiny --random-weights --with-processing``. Needs numpy, Pillow (to read and
write files) and onnxruntime.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def session(folder: Path, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])


def segment(folder: Path, image: np.ndarray, box: list[float], *, multimask_output: bool = False,
            hq_token_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``HxWx3`` uint8 RGB and a box x0,y0,x1,y1 in its pixels -> the masks ``MxHxW`` bool and their scores
    ``M`` (M: 1 for HQ-SAM, 3 for plain SAM with ``multimask_output``)."""
    graphs = json.loads((folder / "manifest.json").read_text())["graphs"]
    pre, enc, dec, post = (session(folder, graphs[g]["file"]) for g in ("preprocess", "encoder", "decoder",
                                                                         "postprocess"))
    tensor, original_size, input_size = pre.run(None, {"image_rgb": image})
    features = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"image": tensor})))
    scale = np.array([input_size[1] / original_size[1], input_size[0] / original_size[0]], np.float32)
    corners = (np.array(box, np.float32).reshape(1, 2, 2) * scale).astype(np.float32)
    feeds = {"point_coords": corners, "point_labels": np.array([[2, 3]], np.float32),
             "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    tokens = dict(zip([o.name for o in dec.get_outputs()], dec.run(None, select(dec, {**features, **feeds}))))
    choice = {"multimask_output": np.array(multimask_output), "hq_token_only": np.array(hq_token_only)}
    sizes = {"input_size": input_size, "original_size": original_size}
    masks, scores = post.run(None, select(post, {**tokens, **sizes, **choice}))
    return masks[0], scores[0]


def select(graph: ort.InferenceSession, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds ``graph`` takes (a plain SAM model has no ``hq_features`` nor ``hq_token_only``)."""
    unknown = [i.name for i in graph.get_inputs() if i.name not in values]
    if unknown:
        raise SystemExit(f"a graph takes {', '.join(unknown)}, which this example does not make: it comes from an "
                         "older hqsam-edge; export the folder again with --with-processing")
    return {i.name: values[i.name] for i in graph.get_inputs()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--box", required=True, help="x0,y0,x1,y1 in pixels")
    ap.add_argument("--out", type=Path, required=True, help="mask PNG (0/255): the best-scored mask")
    ap.add_argument("--multimask", action="store_true", help="multimask_output: three masks from plain SAM, "
                    "the best of tokens 1..3 (plus the HQ token) from HQ-SAM")
    ap.add_argument("--hq-token-only", action="store_true", help="HQ-SAM: the HQ token's mask alone")
    args = ap.parse_args()
    image = np.asarray(Image.open(args.image).convert("RGB"))
    masks, scores = segment(args.folder, image, [float(v) for v in args.box.split(",")],
                            multimask_output=args.multimask, hq_token_only=args.hq_token_only)
    mask = masks[int(np.argmax(scores))]
    Image.fromarray((mask * 255).astype(np.uint8)).save(args.out)
    print(f"wrote {args.out}: {int(mask.sum())} pixels of {mask.size}")


if __name__ == "__main__":
    main()
