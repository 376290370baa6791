"""The I/O contract of the deployment graphs, declared once.

``export`` names graph inputs/outputs and dynamic axes from here, ``engines``
builds TensorRT profiles from here, every runtime backend reads its feeds and
fetches by these names, and the Triton model derives its tensors from them.
Nothing else spells a graph's tensor name.

Encoder: B images per call (B is dynamic; the runtime sends one).
Decoder: P prompts of N points for one image -> every mask token's logits
(T per prompt); which of them a call returns is the runtime's choice.
Processing graphs (``export --with-processing``, for apps without Python):
preprocess (an RGB image of any size -> the encoder's input and the two
sizes) and postprocess (the decoder's outputs as they come, the sizes and the
choice -> the chosen masks at the original size and their scores), so that
preprocess -> encoder -> decoder -> postprocess chain with no code between.
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

    def fix(self, **dims: int) -> TensorSpec:
        """This tensor with the named dynamic axes fixed (e.g. T=5), the others left dynamic."""
        return TensorSpec(self.name, self.dtype, tuple(dims.get(d, d) if isinstance(d, str) else d for d in self.shape))

    def renamed(self, name: str | None = None, **axes: str) -> TensorSpec:
        """This tensor under another name (None: its own) and with dynamic axes renamed (e.g. P="K")."""
        shape = tuple(axes.get(d, d) if isinstance(d, str) else d for d in self.shape)
        return TensorSpec(self.name if name is None else name, self.dtype, shape)


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
# Every mask token's logits: SAM's 4 tokens (0: the single mask, 1..3: the multimask ones), then HQ-SAM's
# HQ token (T = ``mask_tokens(is_hq)``); and SAM's IoU prediction of each of its 4 tokens. The runtime picks
# what a call asks for (``multimask_output``, ``hq_token_only``: ``hqsam_edge.runtime.selection``).
SAM_MASK_TOKENS = 4
LOW_RES_MASKS = TensorSpec("low_res_masks", np.float32, ("P", "T", LOW_RES_SIZE, LOW_RES_SIZE))
IOU_PREDICTIONS = TensorSpec("iou_predictions", np.float32, ("P", SAM_MASK_TOKENS))

# Processing graphs: preprocess (image_rgb -> IMAGE of one image, the sizes) and postprocess ----------
# Sizes are (H, W) in int32, the type of TensorRT's shape tensors (the postprocess graph resizes to them).
IMAGE_RGB = TensorSpec("image_rgb", np.uint8, ("H", "W", 3))
ORIGINAL_SIZE = TensorSpec("original_size", np.int32, (2,))  # the image's H, W
INPUT_SIZE = TensorSpec("input_size", np.int32, (2,))  # H, W resized, the longest side IMAGE_SIZE
# The choice of masks, as ``Predictor.predict`` takes it (rules: ``hqsam_edge.runtime.selection``): scalars.
MULTIMASK_OUTPUT = TensorSpec("multimask_output", np.bool_, ())
HQ_TOKEN_ONLY = TensorSpec("hq_token_only", np.bool_, ())
# The chosen masks at the original size (M = ``num_masks``) and SAM's IoU prediction of each.
MASKS = TensorSpec("masks", np.bool_, ("P", "M", "H", "W"))
SCORES = TensorSpec("scores", np.float32, ("P", "M"))

# Point labels.
LABEL_PAD, LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3


def encoder_outputs(is_hq: bool) -> tuple[TensorSpec, ...]:
    return (IMAGE_EMBEDDINGS, HQ_FEATURES) if is_hq else (IMAGE_EMBEDDINGS,)


def encoder_inputs() -> tuple[TensorSpec, ...]:
    return (IMAGE,)


def decoder_inputs(is_hq: bool) -> tuple[TensorSpec, ...]:
    features = (DECODER_IMAGE_EMBEDDINGS, DECODER_HQ_FEATURES) if is_hq else (DECODER_IMAGE_EMBEDDINGS,)
    return features + (POINT_COORDS, POINT_LABELS, MASK_INPUT, HAS_MASK_INPUT)


def decoder_outputs(is_hq: bool | None = None) -> tuple[TensorSpec, ...]:
    """The decoder graph's outputs; with ``is_hq``, T fixed to that model's token count (as exported)."""
    if is_hq is None:
        return (LOW_RES_MASKS, IOU_PREDICTIONS)
    return (LOW_RES_MASKS.fix(T=mask_tokens(is_hq)), IOU_PREDICTIONS)


def preprocess_inputs() -> tuple[TensorSpec, ...]:
    return (IMAGE_RGB,)


def preprocess_outputs() -> tuple[TensorSpec, ...]:
    """The encoder's input of one image, then the sizes ``postprocess`` and the prompts' scaling need."""
    return (IMAGE.fix(B=1), ORIGINAL_SIZE, INPUT_SIZE)


def postprocess_inputs(is_hq: bool) -> tuple[TensorSpec, ...]:
    """The decoder's outputs as exported, the sizes, and the choice (``hq_token_only``: HQ-SAM only, as the
    decoder's ``hq_features``; plain SAM ignores it)."""
    choice = (MULTIMASK_OUTPUT, HQ_TOKEN_ONLY) if is_hq else (MULTIMASK_OUTPUT,)
    return (*decoder_outputs(is_hq), INPUT_SIZE, ORIGINAL_SIZE, *choice)


def postprocess_outputs(is_hq: bool) -> tuple[TensorSpec, ...]:
    """The chosen masks and their scores; M fixed to 1 for HQ-SAM, 1 or 3 (``multimask_output``) for SAM."""
    if is_hq:
        return (MASKS.fix(M=1), SCORES.fix(M=1))
    return (MASKS, SCORES)


def mask_tokens(is_hq: bool) -> int:
    """T, the decoder graph's masks per prompt: SAM's 4 mask tokens, and HQ-SAM's HQ token after them."""
    return SAM_MASK_TOKENS + int(is_hq)


def num_masks(is_hq: bool, multimask_output: bool) -> int:
    """M, the masks per prompt a caller gets after the selection: HQ-SAM one; plain SAM 1, or 3 with multimask."""
    return 3 if (multimask_output and not is_hq) else 1
