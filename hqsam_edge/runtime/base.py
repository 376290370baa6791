"""The lifecycle every runtime backend follows (after Polygraphy's runners).

``activate()`` loads what is heavy (sessions, engines, device memory),
``encode(image)`` runs the encoder graph and keeps its outputs in the
backend's own memory (host arrays, torch tensors, device buffers),
``decode(features, prompts, multimask_output=..., hq_token_only=...)`` runs
the decoder graph for P prompts against those features and returns the masks
those options choose (the graph returns every mask token; the choice is
``selection.select_masks``, the same for every backend), ``deactivate()``
frees everything. Feeds and fetches are named by
``hqsam_edge.export.contract``. ``Predictor`` sits on top.

Folders exported by an older hqsam-edge have a decoder graph that returns
only the masks of the options it was exported with (``ModelInfo.decoder_tokens``
False): ``decode`` returns those, and refuses other options with a line
saying to export again.

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
    multimask_output: bool = False  # the defaults of a call that does not choose
    hq_token_only: bool = False
    decoder_tokens: bool = True  # the decoder returns every mask token; False: an older folder's fixed choice
    random_weights: bool = False  # no checkpoint: its masks mean nothing (overlays say so)

    @property
    def is_hq(self) -> bool:
        return self.variant == "hq"

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelInfo:
        return cls(manifest.backbone, manifest.variant, manifest.image_size, manifest.multimask_output,
                   manifest.hq_token_only, manifest.decoder_returns_tokens, manifest.random_weights)

    @classmethod
    def from_model(cls, model: Any, *, random_weights: bool = False) -> ModelInfo:
        """A ``hqsam_edge`` model's (``build_model(...)``); whether its weights are random only the caller knows."""
        return cls(backbone=getattr(model, "backbone", "?"), variant="hq" if model.is_hq else "sam",
                   image_size=model.image_size, random_weights=random_weights)


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
        the masks the options choose, ``{"low_res_masks" [P,M,256,256], "iou_predictions" [P,M]}`` as numpy;
        in calls of at most ``max_prompts`` prompts, each call's choice made as it returns."""
        if not self.info.decoder_tokens:
            self._check_fixed_choice(multimask_output, hq_token_only)  # refused before any decoder call
        return self._decode_calls(features, prompts, lambda out: self.choose(
            out, multimask_output=multimask_output, hq_token_only=hq_token_only))

    def decode_tokens(self, features: Any, prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The decoder graph's outputs for P prompts (every mask token, ``[P,T,256,256]`` and ``[P,4]``), in calls
        of at most ``max_prompts`` prompts; ``choose`` picks from them."""
        return self._decode_calls(features, prompts, lambda out: out)

    def choose(self, outputs: dict[str, np.ndarray], *, multimask_output: bool,
               hq_token_only: bool) -> dict[str, np.ndarray]:
        """The masks ``multimask_output`` / ``hq_token_only`` choose from the decoder graph's ``outputs``
        (``selection.select_masks``); an older folder's graph has chosen already: its outputs, if the options
        are the ones it was exported with."""
        from ..export import contract as C
        from .selection import select_masks

        if not self.info.decoder_tokens:
            self._check_fixed_choice(multimask_output, hq_token_only)
            return outputs
        masks, scores = select_masks(outputs[C.LOW_RES_MASKS.name], outputs[C.IOU_PREDICTIONS.name],
                                     is_hq=self.info.is_hq, multimask_output=multimask_output,
                                     hq_token_only=hq_token_only)
        return {C.LOW_RES_MASKS.name: masks, C.IOU_PREDICTIONS.name: scores}

    def _decode_calls(self, features: Any, prompts: dict[str, np.ndarray], finish) -> dict[str, np.ndarray]:
        from ..errors import UsageError
        from ..export import contract as C

        p, n = prompts[C.POINT_COORDS.name].shape[:2]
        if self.max_points is not None and n > self.max_points:
            raise UsageError(f"{n} decoder points per prompt (points, plus 2 box corners or 1 padding point), but the "
                             f"{self.name} decoder takes at most {self.max_points} (`hqsam-edge build --max-points`)")
        step = self.max_prompts or p
        if p <= step:
            return finish(self._decode(features, prompts))
        parts = [finish(self._decode(features, {k: v[i : i + step] for k, v in prompts.items()}))
                 for i in range(0, p, step)]
        return {s.name: np.concatenate([part[s.name] for part in parts]) for s in C.decoder_outputs()}

    def _check_fixed_choice(self, multimask_output: bool, hq_token_only: bool) -> None:
        """``UsageError`` unless the options are those an older folder's decoder graph was exported with."""
        info = self.info
        if multimask_output != info.multimask_output or (info.is_hq and hq_token_only != info.hq_token_only):
            from ..errors import UsageError

            raise UsageError(f"this folder was exported by an older hqsam-edge with multimask_output="
                             f"{info.multimask_output}, hq_token_only={info.hq_token_only}, and its decoder returns "
                             "only those masks: export it again (`hqsam-edge export`) to choose them per call")

    @abc.abstractmethod
    def _decode(self, features: Any, prompts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One decoder call (at most ``max_prompts`` prompts): the graph's outputs by contract name, as numpy."""

    @abc.abstractmethod
    def features_to_numpy(self, features: Any) -> dict[str, np.ndarray]:
        """Encoder outputs by contract name, as host arrays (for checks and evaluation)."""
