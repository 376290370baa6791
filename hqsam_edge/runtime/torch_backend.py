"""PyTorch backend: the ``Sam`` model itself, on the CPU or a CUDA device."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..export import contract as C
from ..inputs import require_choice
from .base import Backend, ModelInfo

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend(Backend):
    """Runs ``model.encode`` / ``model.decode_tokens`` under ``torch.inference_mode``.

    ``precision`` "fp16"/"bf16" casts the model (CUDA only); inputs are cast
    to match and outputs come back as float32.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, *, device: str | None = None, precision: str = "fp32",
                 info: ModelInfo | None = None) -> None:
        info = info or ModelInfo.from_model(model)
        super().__init__(dataclasses.replace(info, decoder_tokens=True))  # the model returns every token
        require_choice(precision, _DTYPES, "torch backend precision")
        self.torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision != "fp32" and self.torch_device.type != "cuda":
            raise UsageError(f"--precision {precision} with the torch backend needs a CUDA device; use fp32 on the CPU")
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.model = model

    @property
    def device(self) -> str:
        if self.torch_device.type == "cuda":
            return torch.cuda.get_device_name(self.torch_device)
        return "cpu"

    def _activate(self) -> None:
        self.model = self.model.eval().to(self.torch_device, self.dtype)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(array, requirements=["C", "W"])).to(self.torch_device, self.dtype)

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.encode(self._tensor(image))

    @torch.inference_mode()
    def _decode(self, features: Any, prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image_embeddings, hq_features = features
        masks, iou = self.model.decode_tokens(
            image_embeddings,
            hq_features,
            self._tensor(prompts[C.POINT_COORDS.name]),
            self._tensor(prompts[C.POINT_LABELS.name]),
            self._tensor(prompts[C.MASK_INPUT.name]),
            self._tensor(prompts[C.HAS_MASK_INPUT.name]),
        )
        return {
            C.LOW_RES_MASKS.name: masks.float().cpu().numpy(),
            C.IOU_PREDICTIONS.name: iou.float().cpu().numpy(),
        }

    def features_to_numpy(self, features: Any) -> dict[str, np.ndarray]:
        specs = C.encoder_outputs(self.info.is_hq)
        return {spec.name: t.float().cpu().numpy() for spec, t in zip(specs, features)}
