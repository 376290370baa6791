"""The lifecycle every runtime backend follows (after Polygraphy's runners).

``activate()`` loads what is heavy (sessions, engines, device memory),
``encode(image)`` runs the encoder graph and keeps its outputs in the
backend's own memory (host arrays, torch tensors, device buffers),
``decode(features, prompts)`` runs the decoder graph for P prompts against
those features, ``deactivate()`` frees everything. Feeds and fetches are
named by ``hqsam_edge.export.contract``. ``Predictor`` sits on top.

Bounds of one call (a TensorRT engine's profile) are the backend's
``max_prompts``, ``max_points`` and ``max_batch`` (None: no bound). ``decode``
splits P prompts into calls of at most ``max_prompts`` for every backend
(``_decode`` runs one call) and refuses more than ``max_points`` points per
prompt; ``encode`` refuses more than ``max_batch`` images.

A backend collected while still active warns (``ResourceWarning``, as an
unclosed file does) and frees what it holds: close it, or use ``with``.
"""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..export.manifest import Manifest


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

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelInfo:
        return cls(manifest.backbone, manifest.variant, manifest.image_size, manifest.multimask_output,
                   manifest.hq_token_only)


class Backend(abc.ABC):
    """One way to run the two graphs. Subclasses set ``name`` and ``precision``."""

    name: str = "?"
    precision: str = "fp32"

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.is_active = False
        # bounds of one call (a TensorRT profile's); None: no bound
        self.max_prompts: int | None = None  # decoder prompts per call (more are split into calls)
        self.max_points: int | None = None  # decoder points per prompt
        self.max_batch: int | None = None  # encoder images per call

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

    def __del__(self) -> None:
        if getattr(self, "is_active", False):
            warnings.warn(f"the {self.name} backend was garbage-collected while active; call .deactivate() "
                          "(Predictor.close()) or use it in a `with` block", ResourceWarning, stacklevel=2)
            try:
                self.deactivate()
            except Exception:  # noqa: BLE001 - at interpreter exit its libraries may be gone already
                pass

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

    def check_batch(self, image: np.ndarray) -> None:
        """``UsageError`` if ``image`` holds more images than one encoder call takes."""
        if self.max_batch is not None and image.shape[0] > self.max_batch:
            from ..errors import UsageError

            raise UsageError(f"{image.shape[0]} images in one encoder call, but the {self.name} encoder takes at most "
                             f"{self.max_batch} (`hqsam-edge build --max-batch`)")

    def decode(self, features: Any, prompts: dict[str, np.ndarray], *, multimask_output: bool,
               hq_token_only: bool) -> dict[str, np.ndarray]:
        """Decoder feeds (``point_coords``, ``point_labels``, ``mask_input``, ``has_mask_input``) for P prompts ->
        ``{"low_res_masks", "iou_predictions"}`` as numpy; in calls of at most ``max_prompts`` prompts."""
        from ..errors import UsageError
        from ..export import contract as C

        p, n = prompts[C.POINT_COORDS.name].shape[:2]
        if self.max_points is not None and n > self.max_points:
            raise UsageError(f"{n} decoder points per prompt (points, plus 2 box corners or 1 padding point), but the "
                             f"{self.name} decoder takes at most {self.max_points} (`hqsam-edge build --max-points`)")
        step = self.max_prompts or p
        options = dict(multimask_output=multimask_output, hq_token_only=hq_token_only)
        if p <= step:
            return self._decode(features, prompts, **options)
        parts = [self._decode(features, {k: v[i : i + step] for k, v in prompts.items()}, **options)
                 for i in range(0, p, step)]
        return {s.name: np.concatenate([part[s.name] for part in parts]) for s in C.decoder_outputs()}

    @abc.abstractmethod
    def _decode(self, features: Any, prompts: dict[str, np.ndarray], *, multimask_output: bool,
                hq_token_only: bool) -> dict[str, np.ndarray]:
        """One decoder call (at most ``max_prompts`` prompts): the contract's outputs as numpy."""

    @abc.abstractmethod
    def features_to_numpy(self, features: Any) -> dict[str, np.ndarray]:
        """Encoder outputs by contract name, as host arrays (for checks and evaluation)."""
