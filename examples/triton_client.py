"""Send an image and box / point prompts to an hqsam-edge model on a Triton server; write the masks as PNG.

    hqsam-edge triton build/hq_vit_tiny --out model_repository
    tritonserver --model-repository model_repository        # where `pip install hqsam-edge` has been run
    python examples/triton_client.py --image scene.jpg --box 50,40,300,250 --box 10,10,100,100 --out mask.png
    python examples/triton_client.py --protocol grpc --url localhost:8001 --image scene.jpg --point 200,150 --out m.png

Boxes and points are pixels (x, y) of the original image; the server returns
one mask per prompt at the original size (``masks`` BOOL ``[K,M,H,W]``). The
PNG is the union of each prompt's best mask (0/255). ``--encode-once`` first
asks for the image's encoding, then sends the prompts with that encoding
instead of the image (what an interactive client does for many prompts).

Needs ``pip install "hqsam-edge[triton]"`` (tritonclient; hqsam-edge for the
served tensor names and the prompt parsing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from hqsam_edge.serve import triton_model as S

DEFAULT_URLS = {"http": "localhost:8000", "grpc": "localhost:8001"}


def build_request(
    client: Any,
    *,
    image: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    features: dict[str, np.ndarray] | None = None,
    original_size: Sequence[int] | None = None,
    outputs: Sequence[str] = (S.MASKS.name, S.SCORES.name),
) -> tuple[list, list]:
    """``InferInput`` / ``InferRequestedOutput`` lists of ``client`` (``tritonclient.http`` or ``.grpc``).

    ``image`` ``HxWx3`` uint8 RGB, or ``features`` (``image_embeddings`` ...)
    with ``original_size`` (H, W) from an earlier encode request; ``boxes``
    ``[K,4]`` x0,y0,x1,y1 and/or ``point_coords`` ``[K,N,2]`` with
    ``point_labels`` ``[K,N]`` (1 foreground, 0 background), in pixels.
    """
    from tritonclient.utils import np_to_triton_dtype

    inputs = []

    def add(spec, value) -> None:
        array = np.ascontiguousarray(value, dtype=spec.dtype)
        tensor = client.InferInput(spec.name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)

    if image is not None:
        add(S.IMAGE_RGB, image)
    for spec in S.feature_specs(is_hq=True):
        if features and spec.name in features:
            add(spec, features[spec.name])
    if original_size is not None:
        add(S.ORIGINAL_SIZE, np.asarray(original_size).reshape(2))
    for spec, value in ((S.BOXES, boxes), (S.POINT_COORDS, point_coords), (S.POINT_LABELS, point_labels)):
        if value is not None:
            add(spec, value)
    return inputs, [client.InferRequestedOutput(name) for name in outputs]


def prompts_from_args(boxes: Sequence[str], points: Sequence[str]) -> dict[str, np.ndarray]:
    """``--box`` / ``--point`` strings -> ``boxes`` / ``point_coords`` / ``point_labels`` arrays (as
    ``hqsam-edge predict``: several boxes, or points with at most one box)."""
    from hqsam_edge.apps.files import parse_prompts

    box_list, point_list = parse_prompts(boxes, points)
    prompts = {}
    if box_list:
        prompts["boxes"] = np.array(box_list, np.float32)
    if point_list:
        prompts["point_coords"] = np.array([[(x, y) for x, y, _ in point_list]], np.float32)
        prompts["point_labels"] = np.array([[label for _, _, label in point_list]], np.int32)
    return prompts


def best_masks(masks: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[K,M,H,W]`` masks with ``[K,M]`` scores -> each prompt's best mask ``[K,H,W]`` and its score ``[K]``."""
    best = scores.argmax(axis=1)
    rows = np.arange(len(masks))
    return masks[rows, best], scores[rows, best]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="image file (any format Pillow reads)")
    parser.add_argument("--box", action="append", default=[], help="x0,y0,x1,y1 in pixels; repeat for one mask per box")
    parser.add_argument("--point", action="append", default=[], help="x,y[,label] in pixels (label 1 fg, 0 bg); repeat")
    parser.add_argument("--out", required=True, help="mask PNG to write (0/255, union of the masks)")
    parser.add_argument("--model", default="hq_vit_tiny", help="the Python model's name in the repository")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--url", default=None, help="server address (default localhost:8000 http, localhost:8001 grpc)")
    parser.add_argument("--encode-once", action="store_true",
                        help="encode first, then send the prompts with the encoding instead of the image")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from PIL import Image

    from hqsam_edge.data.transforms import load_image
    from hqsam_edge.errors import HQSamEdgeError

    try:
        if args.protocol == "http":
            import tritonclient.http as client
        else:
            import tritonclient.grpc as client
        from tritonclient.utils import InferenceServerException
    except ImportError:
        print('error: tritonclient is not installed: pip install "hqsam-edge[triton]"', file=sys.stderr)
        return 1
    try:
        image = load_image(args.image)
        prompts = prompts_from_args(args.box, args.point)
        server = client.InferenceServerClient(url=args.url or DEFAULT_URLS[args.protocol])
        if args.encode_once:
            names = [s.name for s in S.feature_specs(is_hq=True)]
            kwargs = {"as_json": True} if args.protocol == "grpc" else {}
            metadata = server.get_model_metadata(args.model, **kwargs)
            names = [n for n in names if n in {o["name"] for o in metadata["outputs"]}]  # hq_features: HQ only
            inputs, outputs = build_request(client, image=image, outputs=names)
            encoded = server.infer(args.model, inputs, outputs=outputs)
            features = {n: encoded.as_numpy(n) for n in names}
            inputs, outputs = build_request(client, features=features, original_size=image.shape[:2],
                                            boxes=prompts.get("boxes"), point_coords=prompts.get("point_coords"),
                                            point_labels=prompts.get("point_labels"))
        else:
            inputs, outputs = build_request(client, image=image, boxes=prompts.get("boxes"),
                                            point_coords=prompts.get("point_coords"),
                                            point_labels=prompts.get("point_labels"))
        result = server.infer(args.model, inputs, outputs=outputs)
        masks, scores = best_masks(result.as_numpy(S.MASKS.name), result.as_numpy(S.SCORES.name))
        Image.fromarray((masks.any(axis=0) * 255).astype(np.uint8)).save(args.out)
    except (HQSamEdgeError, InferenceServerException, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    areas = ", ".join(f"{int(m.sum())} px (score {s:.3f})" for m, s in zip(masks, scores))
    print(f"wrote {args.out}: {len(masks)} mask(s): {areas}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
