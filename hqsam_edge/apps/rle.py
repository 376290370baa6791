"""COCO run-length encoded masks, byte for byte what ``pycocotools.mask`` writes.

A binary ``HxW`` mask is flattened in column-major (Fortran) order, i.e. down
the first column, then the second..., and stored as alternating run lengths
starting with a run of zeros (possibly of length 0). ``{"size": [h, w],
"counts": str}`` holds the runs compressed as in ``maskApi.c``'s
``rleToString``: from the fourth run on, each run is stored as its difference
to the run two before; every number is written as 5-bit groups, least
significant first, one character ``48 + group (+32 if more follow)``, ending
when the rest is the sign extension (0 or -1) of bit 4 of the last group.
Uncompressed RLE (``counts`` a list of ints, COCO's ``iscrowd`` ground truth) is
read too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError, UsageError


def _runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths of a 2-D mask in column-major order, starting with a (maybe empty) run of zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(1, np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat[0]:  # the first run counts zeros
        runs = np.concatenate(([0], runs))
    return runs.astype(np.int64)


def _compress(runs: Sequence[int]) -> str:
    """``rleToString``: delta against the run two before (from the fourth on), 5 bits a character."""
    out: list[str] = []
    for i, n in enumerate(runs):
        x = int(n) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _decompress(counts: str) -> list[int]:
    """``rleFrString``: the inverse of ``_compress``."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise DataError(f"RLE counts string ends in the middle of a number: {counts[-20:]!r}")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise DataError(f"RLE counts hold a character outside '0'..'o': {counts[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """``HxW`` mask (bool, or 0/non-zero) -> ``{"size": [h, w], "counts": str}``, byte for byte what
    ``pycocotools.mask.encode`` returns (with ``counts`` decoded to ``str``)."""
    return encode_with_stats(mask)[0]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """``HxW`` mask -> ``{"size": [h, w], "counts": [runs...]}``, the uncompressed RLE that ``segment_anything``'s
    ``mask_to_rle_pytorch`` writes (and ``pycocotools.mask.frPyObjects`` reads)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UsageError(f"uncompressed_rle takes one HxW mask, got shape {mask.shape}")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _runs(mask != 0).tolist()}


def compress_rle(rle: Mapping[str, Any]) -> dict[str, Any]:
    """An uncompressed RLE (``counts`` a list of runs, as ``segment_anything``'s ``mask_to_rle_pytorch`` gives)
    -> the compressed one, byte for byte ``pycocotools.mask.frPyObjects`` (``counts`` decoded to ``str``)."""
    (h, w), runs = rle_counts(rle)
    return {"size": [h, w], "counts": _compress(runs.tolist())}


def rle_counts(rle: Mapping[str, Any]) -> tuple[tuple[int, int], np.ndarray]:
    """``(h, w)`` and the run lengths of an RLE, compressed (str/bytes) or uncompressed (list)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"an RLE is {{'size': [h, w], 'counts': ...}}; got {str(rle)[:80]}") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = np.asarray(_decompress(counts) if isinstance(counts, str) else list(counts), dtype=np.int64)
    if runs.size and (runs.min() < 0 or runs.sum() != h * w):
        raise DataError(f"RLE runs sum to {int(runs.sum())}, not h*w = {h * w} (or are negative)")
    return (h, w), runs


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """RLE -> ``HxW`` bool mask."""
    (h, w), runs = rle_counts(rle)
    values = np.arange(runs.size) % 2 == 1
    return np.repeat(values, runs).reshape(w, h).T.copy() if h * w else np.zeros((h, w), bool)


def rle_area(rle: Mapping[str, Any]) -> int:
    """Foreground pixels (``pycocotools.mask.area``)."""
    return _runs_area(rle_counts(rle)[1])


def rle_bbox(rle: Mapping[str, Any]) -> list[float]:
    """Tight box ``[x, y, w, h]`` of the foreground in pixels (``pycocotools.mask.toBbox``); zeros if empty."""
    (h, _), runs = rle_counts(rle)
    return _runs_bbox(runs, h)


def encode_with_stats(mask: np.ndarray) -> tuple[dict[str, Any], int, list[float]]:
    """``rle_encode(mask)``, and ``rle_area`` / ``rle_bbox`` of it, from one run-length pass over the mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UsageError(f"rle_encode takes one HxW mask, got shape {mask.shape}")
    runs = _runs(mask != 0)
    rle = {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _compress(runs.tolist())}
    return rle, _runs_area(runs), _runs_bbox(runs, int(mask.shape[0]))


def _runs_area(runs: np.ndarray) -> int:
    return int(np.asarray(runs)[1::2].sum())


def _runs_bbox(runs: np.ndarray, h: int) -> list[float]:
    runs = np.asarray(runs, dtype=np.int64)
    ends = np.cumsum(runs)
    starts = ends - runs
    fg = (np.arange(runs.size) % 2 == 1) & (runs > 0)
    if not fg.any():
        return [0.0, 0.0, 0.0, 0.0]
    first, last = starts[fg], ends[fg] - 1  # column-major pixel indices of each foreground run
    x0, x1 = first // h, last // h
    y0, y1 = first % h, last % h
    if np.any(x1 > x0):  # a run that goes on into the next column: full height, as toBbox has it
        ys, ye = 0, h - 1
    else:
        ys, ye = int(y0.min()), int(y1.max())
    xs, xe = int(x0.min()), int(x1.max())
    return [float(xs), float(ys), float(xe - xs + 1), float(ye - ys + 1)]
