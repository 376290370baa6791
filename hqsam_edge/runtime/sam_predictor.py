"""``SamPredictor``: ``segment_anything_hq.SamPredictor``'s names, signatures, defaults and return types, over
``Predictor``.

Code written for the official package runs with one import line changed::

    from hqsam_edge import sam_model_registry, SamPredictor     # was: from segment_anything_hq import ...
    predictor = SamPredictor(sam_model_registry["vit_tiny"](checkpoint="sam_hq_vit_tiny.pth"))
    predictor = SamPredictor.from_artifacts("build/hq_vit_tiny", backend="onnxruntime")   # exported graphs
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(point_coords=..., point_labels=..., multimask_output=True)

``SamPredictor(model)`` takes our model (``build_model``, ``sam_model_registry``),
an official ``segment_anything_hq`` / ``segment_anything`` model object (its
weights are loaded into ours: ``model.official.model_from_official``), or a
``Predictor``. Every call goes to that ``Predictor`` (``self.predictor``): the
pre- and post-processing are its own, on every backend. As the official:
``predict`` defaults to ``multimask_output=True`` (HQ-SAM: SAM's best of three
plus the HQ logits, one mask; plain SAM: three masks), label -1 points are
padding and points outside the image are taken as they are.

Differences: ``model`` over an artifact folder is a ``DeployedModel`` (the
attributes official code reads of a ``Sam``, no weights); ``device`` is the
CPU there (results come back to the host); ``interm_features`` (the official
encoder's outputs after each global-attention block, ``[1,64,64,C]``; TinyViT:
after its second stage) is ``None`` on exported graphs, which keep only HQ-SAM's
fused features. Errors are ``hqsam_edge.errors`` types (one clear line), where
the official asserts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import transforms as T
from ..errors import UsageError
from ..export import contract as C
from .predictor import Predictor


@dataclass(frozen=True)
class ImageEncoderInfo:
    img_size: int


@dataclass(frozen=True)
class DeployedModel:
    """``SamPredictor.model`` over exported graphs: what official code reads of a ``Sam`` model."""

    backbone: str
    variant: str
    image_encoder: ImageEncoderInfo
    mask_threshold: float = 0.0
    image_format: str = "RGB"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class _IntermFeatures:
    """Forward hooks that keep what the official image encoders return as ``interm_embeddings``."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.features: list[torch.Tensor] = []
        if hasattr(encoder, "blocks"):  # ViT: after every global-attention block, [B,64,64,C]
            modules, shape = [b for b in encoder.blocks if b.window_size == 0], None
        else:  # TinyViT: after the stage HQ-SAM fuses, viewed as [B,S/16,S/16,C]
            side = encoder.img_size // 16
            modules, shape = [encoder.layers[encoder.early_stage]], (side, side)

        def keep(_module, _inputs, output: torch.Tensor) -> None:
            self.features.append(output if shape is None else output.view(output.shape[0], *shape, -1))

        self.handles = [m.register_forward_hook(keep) for m in modules]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _numpy(value: Any) -> np.ndarray | None:
    """A tensor (any device) or array-like -> float numpy, or None."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).numpy()
    return np.asarray(value, dtype=np.float32)


class SamPredictor:
    """``segment_anything_hq.SamPredictor`` over any backend (see the module doc)."""

    def __init__(self, sam_model: Any, *, keep_interm_features: bool = True) -> None:
        """``keep_interm_features=False``: no ``interm_features`` (the torch backend then keeps no extra copies of
        the encoder's early outputs)."""
        from .torch_backend import TorchBackend

        if isinstance(sam_model, Predictor):
            predictor = sam_model
        else:
            from ..model.official import model_from_official

            model = model_from_official(sam_model)
            predictor = Predictor.from_model(model, device=str(model.device))
        self.predictor = predictor
        info = predictor.info
        backend = predictor.backend
        self._interm: _IntermFeatures | None = None
        if isinstance(backend, TorchBackend):
            self.model: Any = backend.model
            if keep_interm_features:
                self._interm = _IntermFeatures(backend.model.image_encoder)
        else:
            self.model = DeployedModel(info.backbone, info.variant, ImageEncoderInfo(info.image_size))
        from segment_anything.utils.transforms import ResizeLongestSide

        self.transform = ResizeLongestSide(info.image_size)

    @classmethod
    def from_artifacts(cls, folder: str | Path, backend: str = "auto", precision: str | None = None,
                       providers: list[str] | None = None, dla_core: int | None = None) -> SamPredictor:
        """Over an artifact folder of ``hqsam-edge export`` / ``build`` (``backend``: auto, torch, onnxruntime,
        tensorrt; ``providers``, ``dla_core``: as ``Predictor.from_artifacts``)."""
        return cls(Predictor.from_artifacts(folder, backend=backend, precision=precision, providers=providers,
                                            dla_core=dla_core))

    def close(self) -> None:
        """Free the backend (sessions, engines, device memory)."""
        if self._interm is not None:
            self._interm.remove()
        self.predictor.close()

    def __enter__(self) -> SamPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_image_set(self) -> bool:
        return self.predictor.is_image_set

    @property
    def original_size(self) -> tuple[int, int] | None:
        return self.predictor.original_size

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.predictor.input_size

    @property
    def features(self) -> torch.Tensor | None:
        """The image embedding ``[1,256,64,64]`` on ``device`` (None before ``set_image``)."""
        if not self.is_image_set:
            return None
        features = self.predictor.backend_features
        if isinstance(features, tuple) and isinstance(features[0], torch.Tensor):  # the torch backend's own
            return features[0]
        embedding = self.predictor.get_image_features()[C.IMAGE_EMBEDDINGS.name]
        return torch.from_numpy(np.ascontiguousarray(embedding)).to(self.device)

    @property
    def interm_features(self) -> list[torch.Tensor] | None:
        """The official encoder's intermediate features of the image (torch backend; None on exported graphs)."""
        if self._interm is None or not self.is_image_set:
            return None
        return list(self._interm.features)

    def reset_image(self) -> None:
        """Resets the currently set image."""
        self.predictor.reset_image()
        if self._interm is not None:
            self._interm.features.clear()

    # -- images -----------------------------------------------------------------
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an ``HxWx3`` uint8 image (RGB, or BGR with ``image_format="BGR"``)."""
        self.reset_image()
        self.predictor.set_image(image, image_format)

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Encode an image already resized with ``self.transform`` (``1x3xHxW``, longest side ``img_size``, values
        0..255) of an original ``(H, W)``."""
        size = self.model.image_encoder.img_size
        shape = tuple(getattr(transformed_image, "shape", ()))
        if len(shape) != 4 or shape[:2] != (1, 3) or max(shape[2:]) != size:
            raise UsageError(f"set_torch_image input must be 1x3xHxW with long side {size}; got shape {list(shape)}")
        if len(original_image_size) != 2 or min(original_image_size) < 1:
            raise UsageError(f"original_image_size must be the image's (H, W); got {tuple(original_image_size)}")
        self.reset_image()
        tensor = T.normalize_and_pad(_numpy(transformed_image)[0], size)
        self.predictor.set_image_tensor(tensor, tuple(original_image_size), shape[2:])  # type: ignore[arg-type]

    def get_image_embedding(self) -> torch.Tensor:
        """The image embedding ``[1,256,64,64]`` of the current image."""
        self.predictor._require_image()
        return self.features  # type: ignore[return-value]

    # -- prompts ----------------------------------------------------------------
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One prompt in pixels of the original image -> masks ``CxHxW`` (bool, or logits with ``return_logits``),
        scores ``C`` and low-res logits ``Cx256x256``, as numpy."""
        return self.predictor.predict(point_coords, point_labels, box, mask_input, multimask_output, return_logits,
                                   hq_token_only)

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """B prompts already in the model's frame (``self.transform.apply_coords_torch`` / ``apply_boxes_torch``):
        ``point_coords`` ``BxNx2`` with ``point_labels`` ``BxN``, ``boxes`` ``Bx4``, ``mask_input`` ``Bx1x256x256``
        -> masks ``BxCxHxW``, scores ``BxC`` and low-res logits ``BxCx256x256`` as tensors on ``device``."""
        out = self.predictor.predict_batch(_numpy(point_coords), _numpy(point_labels), _numpy(boxes),
                                           _numpy(mask_input), multimask_output, hq_token_only, return_logits,
                                           resized=True)
        return tuple(torch.from_numpy(np.ascontiguousarray(x)).to(self.device) for x in out)  # type: ignore[return-value]
