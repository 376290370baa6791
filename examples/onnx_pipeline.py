"""Segment an image with the four ONNX graphs of an artifact folder and ONNX Runtime alone (no hqsam-edge).

    python examples/onnx_pipeline.py build/hq_vit_tiny --image scene.jpg --box 50,40,300,250 --out mask.png

What a C++ or DeepStream app does with the same graphs: ``preprocess.onnx`` (the RGB image, any size ->
the encoder's input and the sizes), ``encoder.onnx``, ``decoder.onnx`` (the box as two corner points,
labels 2 and 3, scaled into the resized frame), ``postprocess.onnx`` (logits -> masks at the original size).
Make the folder with ``hqsam-edge export --backbone vit_tiny --random-weights --with-processing``. Needs
numpy, Pillow (to read and write files) and onnxruntime.
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


def segment(folder: Path, image: np.ndarray, box: list[float]) -> np.ndarray:
    """``HxWx3`` uint8 RGB and a box x0,y0,x1,y1 in its pixels -> the mask ``HxW`` bool."""
    graphs = json.loads((folder / "manifest.json").read_text())["graphs"]
    pre, enc, dec, post = (session(folder, graphs[g]["file"]) for g in ("preprocess", "encoder", "decoder",
                                                                         "postprocess"))
    tensor, original_size, input_size = pre.run(None, {"image_rgb": image})
    features = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"image": tensor})))
    scale = np.array([input_size[1] / original_size[1], input_size[0] / original_size[0]], np.float32)
    corners = (np.array(box, np.float32).reshape(1, 2, 2) * scale).astype(np.float32)
    feeds = {"point_coords": corners, "point_labels": np.array([[2, 3]], np.float32),
             "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    decoder_inputs = {i.name for i in dec.get_inputs()}
    tokens, _ = dec.run(None, {k: v for k, v in {**features, **feeds}.items() if k in decoder_inputs})
    # every mask token's logits [P,T,256,256]: SAM's 4, then HQ-SAM's HQ token (T = 5). One mask per prompt as
    # SamPredictor.predict(multimask_output=False): SAM's token 0, plus the HQ token's logits for HQ-SAM.
    low_res = tokens[:, 0:1] + (tokens[:, 4:5] if tokens.shape[1] == 5 else 0)
    (masks,) = post.run(None, {"low_res_masks": low_res, "input_size": input_size, "original_size": original_size})
    return masks[0, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--box", required=True, help="x0,y0,x1,y1 in pixels")
    ap.add_argument("--out", type=Path, required=True, help="mask PNG (0/255)")
    args = ap.parse_args()
    image = np.asarray(Image.open(args.image).convert("RGB"))
    mask = segment(args.folder, image, [float(v) for v in args.box.split(",")])
    Image.fromarray((mask * 255).astype(np.uint8)).save(args.out)
    print(f"wrote {args.out}: {int(mask.sum())} pixels of {mask.size}")


if __name__ == "__main__":
    main()
