"""The I/O contract of the two deployment graphs, declared once.

``export`` names graph inputs/outputs and dynamic axes from here, ``engines``
builds TensorRT profiles from here, and every runtime backend reads its feeds
and fetches by these names. Nothing else spells a tensor name.

Encoder: B images per call (B is dynamic; the runtime sends one).
Decoder: P prompts of N points for one image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 1024
EMBED_SIZE = IMAGE_SIZE // 16  # 64
LOW_RES_SIZE = 4 * EMBED_SIZE  # 256
EMBED_DIM = 256
HQ_DIM = EMBED_DIM // 8  # 32


@dataclass(frozen=True)
class TensorSpec:
    """One graph tensor: name, dtype and shape (str entries are dynamic axes)."""

    name: str
    dtype: type
    shape: tuple[int | str, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete(self, **dims: int) -> tuple[int, ...]:
        """The shape with dynamic axes replaced by ``dims`` (e.g. P=4, N=3)."""
        return tuple(dims[d] if isinstance(d, str) else d for d in self.shape)


# Encoder graph ---------------------------------------------------------------
IMAGE = TensorSpec("image", np.float32, ("B", 3, IMAGE_SIZE, IMAGE_SIZE))
IMAGE_EMBEDDINGS = TensorSpec("image_embeddings", np.float32, ("B", EMBED_DIM, EMBED_SIZE, EMBED_SIZE))
HQ_FEATURES = TensorSpec("hq_features", np.float32, ("B", HQ_DIM, LOW_RES_SIZE, LOW_RES_SIZE))

# Decoder graph: the encoder outputs of one image, then the prompts --------------
DECODER_IMAGE_EMBEDDINGS = TensorSpec(IMAGE_EMBEDDINGS.name, np.float32, IMAGE_EMBEDDINGS.concrete(B=1))
DECODER_HQ_FEATURES = TensorSpec(HQ_FEATURES.name, np.float32, HQ_FEATURES.concrete(B=1))
POINT_COORDS = TensorSpec("point_coords", np.float32, ("P", "N", 2))
POINT_LABELS = TensorSpec("point_labels", np.float32, ("P", "N"))
MASK_INPUT = TensorSpec("mask_input", np.float32, ("P", 1, LOW_RES_SIZE, LOW_RES_SIZE))
HAS_MASK_INPUT = TensorSpec("has_mask_input", np.float32, ("P",))
LOW_RES_MASKS = TensorSpec("low_res_masks", np.float32, ("P", "M", LOW_RES_SIZE, LOW_RES_SIZE))
IOU_PREDICTIONS = TensorSpec("iou_predictions", np.float32, ("P", "M"))

# Point labels.
LABEL_PAD, LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3


def encoder_outputs(is_hq: bool) -> tuple[TensorSpec, ...]:
    return (IMAGE_EMBEDDINGS, HQ_FEATURES) if is_hq else (IMAGE_EMBEDDINGS,)


def encoder_inputs() -> tuple[TensorSpec, ...]:
    return (IMAGE,)


def decoder_inputs(is_hq: bool) -> tuple[TensorSpec, ...]:
    features = (DECODER_IMAGE_EMBEDDINGS, DECODER_HQ_FEATURES) if is_hq else (DECODER_IMAGE_EMBEDDINGS,)
    return features + (POINT_COORDS, POINT_LABELS, MASK_INPUT, HAS_MASK_INPUT)


def decoder_outputs() -> tuple[TensorSpec, ...]:
    return (LOW_RES_MASKS, IOU_PREDICTIONS)


def num_masks(is_hq: bool, multimask_output: bool) -> int:
    """M: HQ-SAM returns one mask per prompt; plain SAM 1, or 3 with multimask."""
    return 3 if (multimask_output and not is_hq) else 1
