"""Which masks a decoder call returns: ``multimask_output`` and ``hq_token_only``, chosen once, here, in numpy.

The decoder graph returns every mask token (``hqsam_edge.export.contract``):
logits ``[P,T,256,256]`` of SAM's 4 tokens, then HQ-SAM's HQ token, and SAM's
IoU prediction of each of its 4 tokens ``[P,4]``. From those, as the official
models choose (``segment_anything_hq``'s ``MaskDecoderHQ.forward`` and its
baseline ``MaskDecoder.forward``):

- plain SAM: token 0 alone (M = 1), or with ``multimask_output`` tokens 1..3
  (M = 3), with their IoU; ``hq_token_only`` has no meaning and is ignored;
- HQ-SAM (M = 1): SAM's token 0, or with ``multimask_output`` the one of tokens
  1..3 with the highest predicted IoU (the first of equal ones, as
  ``torch.max``), plus the HQ token's logits; with ``hq_token_only`` the HQ
  logits alone. The IoU is SAM's, of the token chosen.

``Sam.decode`` (``select_masks`` of the torch decoders) makes the same choice
in torch, for training and as the reference.
"""

from __future__ import annotations

import numpy as np

from ..errors import ArtifactError
from ..export import contract as C


def select_masks(masks: np.ndarray, iou: np.ndarray, *, is_hq: bool, multimask_output: bool,
                 hq_token_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every token's logits ``[P,T,256,256]`` and IoU ``[P,4]`` -> the chosen logits ``[P,M,256,256]`` and
    IoU ``[P,M]`` (M = ``contract.num_masks``)."""
    tokens, sam = C.mask_tokens(is_hq), C.SAM_MASK_TOKENS
    if masks.ndim != 4 or masks.shape[1] != tokens or iou.shape[1:] != (sam,):
        raise ArtifactError(f"the decoder graph returned {list(masks.shape[1:2])} masks and {list(iou.shape[1:])} "
                            f"scores per prompt, not the {tokens} mask tokens and {sam} scores this hqsam-edge "
                            "chooses from: it was exported by an older version; export the folder again")
    if not is_hq:
        chosen = slice(1, sam) if multimask_output else slice(0, 1)
        return np.ascontiguousarray(masks[:, chosen]), np.ascontiguousarray(iou[:, chosen])
    rows = np.arange(len(masks))
    best = np.argmax(iou[:, 1:sam], axis=1) + 1 if multimask_output else np.zeros(len(masks), np.int64)
    hq = masks[:, sam : sam + 1]
    scores = iou[rows, best][:, None]
    if hq_token_only:
        return np.ascontiguousarray(hq), scores
    return masks[rows, best][:, None] + hq, scores
