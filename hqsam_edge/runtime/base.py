"""The lifecycle every runtime backend follows (after Polygraphy's runners).

``activate()`` loads what is heavy (sessions, engines, device memory),
``encode(image)`` runs the encoder graph and keeps its outputs in the
backend's own memory (host arrays, torch tensors, device buffers),
``decode(features, prompts)`` runs the decoder graph for P prompts against
those features, ``deactivate()`` frees everything. Feeds and fetches are
named by ``hqsam_edge.export.contract``. ``Predictor`` sits on top.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime must know of the graphs: read from the manifest or the model."""

    backbone: str
    variant: str
    image_size: int = 1024
    multimask_output: bool = False
    hq_token_only: bool = False

    @property
    def is_hq(self) -> bool:
        return self.variant == "hq"


class Backend(abc.ABC):
    """One way to run the two graphs. Subclasses set ``name`` and ``precision``."""

    name: str = "?"
    precision: str = "fp32"

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.is_active = False

    def activate(self) -> None:
        if not self.is_active:
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @property
    def device(self) -> str:
        """Human-readable device name (for reports)."""
        return "cpu"

    @abc.abstractmethod
    def _activate(self) -> None: ...

    def _deactivate(self) -> None:
        return None

    @abc.abstractmethod
    def encode(self, image: np.ndarray) -> Any:
        """``[1,3,S,S]`` float32 encoder input -> opaque image features."""

    @abc.abstractmethod
    def decode(self, features: Any, prompts: dict[str, np.ndarray], *, multimask_output: bool,
               hq_token_only: bool) -> dict[str, np.ndarray]:
        """Decoder feeds (``point_coords``, ``point_labels``, ``mask_input``,
        ``has_mask_input``) -> ``{"low_res_masks", "iou_predictions"}`` as numpy."""

    @abc.abstractmethod
    def features_to_numpy(self, features: Any) -> dict[str, np.ndarray]:
        """Encoder outputs by contract name, as host arrays (for checks and evaluation)."""
