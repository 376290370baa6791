"""``Predictor``: SamPredictor's interface over any backend.

Coordinates are pixels (x, y) of the original image, as in
``segment_anything.SamPredictor``; returned masks are boolean at the original
resolution. Pre- and post-processing (``hqsam_edge.data.transforms``) are the
same for every backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import transforms as T
from ..errors import ImageNotSetError, UsageError
from ..export import contract as C
from .base import Backend


def best_masks(masks: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One mask per prompt: of ``masks`` ``[P,M,...]`` with ``scores`` ``[P,M]``, each prompt's best-scored
    one -> ``[P,...]`` and ``[P]`` (the only one when M is 1)."""
    best = np.argmax(scores, axis=1)
    rows = np.arange(len(masks))
    return masks[rows, best], scores[rows, best]


class Predictor:
    """Set an image once, then ask for masks from points, boxes or a mask.

    Build with ``Predictor.from_model(model)`` (PyTorch) or
    ``Predictor.from_artifacts(folder, backend="auto")`` (exported graphs).
    ``close()`` (or a ``with`` block) frees the backend's sessions, engines and
    device memory.
    """

    mask_threshold = 0.0

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.backend.activate()
        self.reset_image()

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any, *, device: str | None = None, precision: str = "fp32",
                   random_weights: bool = False) -> Predictor:
        """Wrap a ``hqsam_edge`` model (``build_model(...)``) in the torch backend (``random_weights``: it has no
        checkpoint, ``info.random_weights``, which overlays warn of)."""
        from .base import ModelInfo
        from .torch_backend import TorchBackend

        info = ModelInfo.from_model(model, random_weights=random_weights)
        return cls(TorchBackend(model, device=device, precision=precision, info=info))

    @classmethod
    def from_artifacts(cls, folder: str | Path, backend: str = "auto", precision: str | None = None,
                       providers: list[str] | None = None, dla_core: int | None = None) -> Predictor:
        """Open an artifact folder written by ``hqsam-edge export`` / ``build`` (``providers``: ONNX Runtime's
        execution providers, e.g. ``["cuda"]``; None: the best this onnxruntime has; ``dla_core``: the TensorRT
        engines built for that DLA core, else the GPU's)."""
        from .open import open_backend

        return cls(open_backend(folder, backend=backend, precision=precision, providers=providers, dla_core=dla_core))

    def close(self) -> None:
        """Free the backend (sessions, engines, device memory); the predictor cannot be used afterwards."""
        self.reset_image()
        self.backend.deactivate()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- image ----------------------------------------------------------------
    @property
    def info(self):
        return self.backend.info

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    def reset_image(self) -> None:
        self._features: Any = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an ``HxWx3`` uint8 image (RGB, or BGR with ``image_format="BGR"``)."""
        if image_format not in ("RGB", "BGR"):
            raise UsageError(f"image_format must be 'RGB' or 'BGR', not {image_format!r}")
        image = T.check_rgb(image)
        if image_format == "BGR":
            image = image[..., ::-1]
        tensor, input_size = T.preprocess_image(image, self.info.image_size)
        self.set_image_tensor(tensor, (int(image.shape[0]), int(image.shape[1])), input_size)

    def set_image_tensor(self, tensor: np.ndarray, original_size: tuple[int, int],
                         input_size: tuple[int, int]) -> None:
        """Encode an image already pre-processed by ``transforms.preprocess_image`` (float32 ``[1,3,S,S]``),
        e.g. in another thread, so that pre-processing overlaps the encoder. ``original_size`` is the
        picture's (H, W), ``input_size`` its resized (H, W) inside the ``S x S`` frame."""
        self.reset_image()
        self._set_encoded(self.backend.encode(tensor), original_size, input_size)

    def _set_encoded(self, features: Any, original_size: tuple[int, int], input_size: tuple[int, int]) -> None:
        """The state ``set_image`` leaves: the backend's features of an image of ``original_size``."""
        self._features = features
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = (int(input_size[0]), int(input_size[1]))

    @property
    def backend_features(self) -> Any:
        """The backend's own handle of the current image's encoder outputs, what ``backend.decode`` takes:
        tensors on the torch backend's device, arrays under ONNX Runtime, a token for the TensorRT backend's
        device buffers (stale once that backend encodes another image). ``ImageNotSetError`` before an image
        is set; ``get_image_features`` gives the arrays of any backend."""
        self._require_image()
        return self._features

    def get_image_features(self) -> dict[str, np.ndarray]:
        """The encoder outputs for the current image (``image_embeddings``, ``hq_features``)."""
        self._require_image()
        return self.backend.features_to_numpy(self._features)

    def _require_image(self) -> None:
        if self._features is None:
            raise ImageNotSetError("An image must be set with .set_image(...) before mask prediction.")

    # -- prompts --------------------------------------------------------------
    @staticmethod
    def _check_finite(values: np.ndarray, what: str) -> None:
        if not np.all(np.isfinite(values)):
            raise UsageError(f"{what} coordinates must be finite numbers (no NaN or infinity)")

    def _check_boxes(self, boxes: np.ndarray, frame: tuple[int, int]) -> None:
        """Boxes must be boxes (x1 > x0, y1 > y0) that reach into the ``frame`` (h, w) they are given in."""
        h, w = frame
        self._check_finite(boxes, "box")
        for x0, y0, x1, y1 in boxes:
            if x1 <= x0 or y1 <= y0:
                raise UsageError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) is empty: x1 must exceed x0 and y1 exceed y0")
            if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
                raise UsageError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) lies entirely outside the {w}x{h} image")

    def _to_model_frame(self, coords: np.ndarray, resized: bool) -> np.ndarray:
        """Pixel coordinates of the original image (or, ``resized``, already of the model's frame) -> float32
        coordinates in the model's frame."""
        if resized:
            return np.asarray(coords, dtype=np.float32)
        return T.apply_coords(coords, self.original_size, self.info.image_size)  # type: ignore[arg-type]

    def _point_feeds(self, point_coords, point_labels, resized: bool) -> tuple[np.ndarray, np.ndarray]:
        """Points ``[P,N,2]`` and labels ``[P,N]`` -> the model's frame, checked. As in SamPredictor, points may
        lie outside the image, and label -1 marks a padding point (it gets SAM's not-a-point embedding)."""
        if point_labels is None:
            raise UsageError("point_labels must be given with point_coords (1 foreground, 0 background)")
        coords = np.asarray(point_coords, dtype=np.float64)
        labels = np.asarray(point_labels, dtype=np.float32)
        if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
            raise UsageError(f"point_coords must be [P,N,2] and point_labels [P,N]; got {coords.shape}, {labels.shape}")
        if not np.isin(labels, (C.LABEL_PAD, C.LABEL_NEGATIVE, C.LABEL_POSITIVE)).all():
            raise UsageError("point labels must be 1 (foreground), 0 (background) or -1 (padding, ignored)")
        self._check_finite(coords, "point")
        return self._to_model_frame(coords, resized), labels

    def _box_feeds(self, boxes, p: int | None, resized: bool) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``[P,4]`` (x0,y0,x1,y1) -> two corner points each (labels 2, 3) in the model's frame."""
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise UsageError(f"boxes must be [K,4] (x0,y0,x1,y1); got shape {boxes.shape}")
        self._check_boxes(boxes, self.input_size if resized else self.original_size)  # type: ignore[arg-type]
        if p is not None and p != boxes.shape[0]:
            raise UsageError(f"{p} point prompts but {boxes.shape[0]} boxes: give one box per point prompt")
        corners = self._to_model_frame(boxes.reshape(-1, 2, 2), resized)
        labels = np.tile(np.array([[C.LABEL_BOX_TOP_LEFT, C.LABEL_BOX_BOTTOM_RIGHT]], np.float32), (len(boxes), 1))
        return corners, labels

    @staticmethod
    def _mask_feeds(mask_input, p: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        """``mask_input`` ``[P,1,256,256]`` (or one ``[1,256,256]`` for every prompt) or None -> the decoder's
        ``mask_input`` and ``has_mask_input`` for P prompts, and P."""
        if mask_input is None:
            if p is None:
                raise UsageError("give at least one prompt: points, a box or a mask input")
            return np.zeros(C.MASK_INPUT.concrete(P=p), np.float32), np.zeros((p,), np.float32), p
        mask_input = np.asarray(mask_input, dtype=np.float32)
        if mask_input.ndim == 3:
            mask_input = mask_input[None]
        if mask_input.shape != C.MASK_INPUT.concrete(P=mask_input.shape[0]):
            raise UsageError(f"mask_input must be [P,1,256,256] low-res logits; got {mask_input.shape}")
        if p is not None and mask_input.shape[0] not in (1, p):
            raise UsageError(f"{mask_input.shape[0]} masks for {p} prompts")
        p = mask_input.shape[0] if p is None else p
        return np.array(np.broadcast_to(mask_input, C.MASK_INPUT.concrete(P=p))), np.ones((p,), np.float32), p

    def prompt_feeds(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        *,
        resized: bool = False,
    ) -> dict[str, np.ndarray]:
        """Prompts in original-image pixels (``resized``: in the model's resized frame already, as
        ``SamPredictor.predict_torch`` takes them) -> decoder feeds for P prompts.

        ``point_coords`` ``[P,N,2]`` with ``point_labels`` ``[P,N]``, and/or
        ``boxes`` ``[P,4]`` (x0,y0,x1,y1); ``mask_input`` ``[P,1,256,256]``
        logits from an earlier call. As in SAM, points come first and the box
        corners after them (labels 2, 3); without a box a padding point
        (label -1) is appended, which is what ``SamPredictor`` does.
        """
        self._require_image()
        coords: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        p = None
        if point_coords is not None:
            for part, value in zip((coords, labels), self._point_feeds(point_coords, point_labels, resized)):
                part.append(value)
            p = coords[0].shape[0]
        if boxes is not None:
            for part, value in zip((coords, labels), self._box_feeds(boxes, p, resized)):
                part.append(value)
            p = coords[-1].shape[0]
        masks, has_mask, p = self._mask_feeds(mask_input, p)
        if boxes is None:
            coords.append(np.zeros((p, 1, 2), np.float32))
            labels.append(np.full((p, 1), C.LABEL_PAD, np.float32))
        return {
            C.POINT_COORDS.name: np.concatenate(coords, axis=1).astype(np.float32),
            C.POINT_LABELS.name: np.concatenate(labels, axis=1).astype(np.float32),
            C.MASK_INPUT.name: masks,
            C.HAS_MASK_INPUT.name: has_mask,
        }

    # -- prediction -----------------------------------------------------------
    def decode_prompts(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool | None = None,
        hq_token_only: bool | None = None,
        *,
        resized: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """P prompts (as ``prompt_feeds``) -> low-res logits ``[P,M,256,256]`` and scores ``[P,M]``, not yet
        upscaled (``upscale_masks``). ``multimask_output`` / ``hq_token_only`` default to the model's or
        artifact folder's defaults; every backend takes either per call."""
        feeds = self.prompt_feeds(point_coords, point_labels, boxes, mask_input, resized=resized)
        out = self.decode_feeds(feeds, multimask_output, hq_token_only)
        return out[C.LOW_RES_MASKS.name], out[C.IOU_PREDICTIONS.name]

    def decode_feeds(self, feeds: dict[str, np.ndarray], multimask_output: bool | None = None,
                     hq_token_only: bool | None = None) -> dict[str, np.ndarray]:
        """Decoder feeds for P prompts (``prompt_feeds``) -> the decoder's outputs for the current image,
        masks chosen: ``low_res_masks`` ``[P,M,256,256]`` and ``iou_predictions`` ``[P,M]``.
        ``multimask_output`` / ``hq_token_only`` default to the model's or artifact folder's. One backend
        call and nothing else (no prompt checks, no upscaling): what a benchmark of the decoder times."""
        self._require_image()
        hq_token_only = self.info.hq_token_only if hq_token_only is None else hq_token_only
        multimask_output = self.info.multimask_output if multimask_output is None else multimask_output
        return self.backend.decode(self._features, feeds, multimask_output=multimask_output,
                                   hq_token_only=hq_token_only)

    def upscale_masks(self, low_res: np.ndarray) -> np.ndarray:
        """Low-res logits ``[P,M,256,256]`` -> logits ``[P,M,H,W]`` at the original size of the current image."""
        self._require_image()
        return T.postprocess_masks(low_res, self.input_size, self.original_size, self.info.image_size)  # type: ignore[arg-type]

    def predict_batch(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool | None = None,
        hq_token_only: bool | None = None,
        return_logits: bool = False,
        *,
        resized: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P prompts in one decoder call -> masks ``[P,M,H,W]``, scores ``[P,M]``, low-res ``[P,M,256,256]``.

        ``multimask_output`` / ``hq_token_only`` default to what the model or
        artifact folder was made with; any backend takes either per call.
        """
        low_res, scores = self.decode_prompts(point_coords, point_labels, boxes, mask_input, multimask_output,
                                              hq_token_only, resized=resized)
        masks = self.upscale_masks(low_res)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, scores, low_res

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool | None = None,
        return_logits: bool = False,
        hq_token_only: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One prompt, as ``SamPredictor.predict``.

        ``point_coords`` ``[N,2]`` pixels with ``point_labels`` ``[N]``; ``box``
        ``[4]`` (x0,y0,x1,y1); ``mask_input`` ``[1,256,256]`` logits from a
        previous call. Returns masks ``[M,H,W]`` (bool), scores ``[M]`` and
        low-res logits ``[M,256,256]``.
        """
        coords = None if point_coords is None else np.asarray(point_coords)[None]
        labels = None if point_labels is None else np.asarray(point_labels)[None]
        boxes = None if box is None else np.asarray(box, dtype=np.float64).reshape(1, 4)
        masks = (None if mask_input is None
                 else np.asarray(mask_input, np.float32).reshape(1, 1, *np.shape(mask_input)[-2:]))
        m, s, lr = self.predict_batch(coords, labels, boxes, masks, multimask_output, hq_token_only, return_logits)
        return m[0], s[0], lr[0]

    def predict_boxes(
        self,
        boxes_xyxy: np.ndarray,
        multimask_output: bool | None = None,
        hq_token_only: bool | None = None,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """K boxes ``[K,4]`` in one decoder call -> masks ``[K,M,H,W]``, scores ``[K,M]``, low-res logits."""
        return self.predict_batch(boxes=np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4),
                                  multimask_output=multimask_output, hq_token_only=hq_token_only,
                                  return_logits=return_logits)
