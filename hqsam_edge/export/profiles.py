"""Optimization profiles as plain data, read from the graph contract."""

from __future__ import annotations

from dataclasses import dataclass

from . import contract as C


@dataclass(frozen=True)
class Profile:
    """``{input name: (min, opt, max) shapes}`` of one graph."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def encoder_profile(max_batch: int = 1) -> Profile:
    return Profile({C.IMAGE.name: (C.IMAGE.concrete(B=1), C.IMAGE.concrete(B=1), C.IMAGE.concrete(B=max_batch))})


def decoder_profile(max_prompts: int, max_points: int, opt_prompts: int = 1, opt_points: int = 2) -> Profile:
    """P prompts in 1..max_prompts, N points in 1..max_points; the image features are static."""
    dynamic = (C.POINT_COORDS, C.POINT_LABELS, C.MASK_INPUT, C.HAS_MASK_INPUT)
    shapes = {
        s.name: (s.concrete(P=1, N=1), s.concrete(P=opt_prompts, N=min(opt_points, max_points)),
                 s.concrete(P=max_prompts, N=max_points))
        for s in dynamic
    }
    return Profile(shapes)


def profile_for(graph: str, max_prompts: int, max_points: int) -> Profile:
    return encoder_profile() if graph == "encoder" else decoder_profile(max_prompts, max_points)
