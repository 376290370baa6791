"""Optimization profiles as plain data, read from the graph contract.

A TensorRT engine (or ONNX Runtime's TensorRT provider) is built for bounded
shapes: ``Limits`` names the bounds of one call (images per encoder call,
prompts per decoder call, points per prompt) and ``profile_for`` turns them
into ``{input: (min, opt, max)}`` shapes for a graph. TensorRT tunes its kernels
for the *opt* shapes, so they follow the real uses: the encoder's opt batch is its
maximum (a maximum above 1 is built for Triton's dynamic batching), the decoder's
opt prompts those of everything mode's calls (``points_per_batch`` 64, one point
plus one padding point each; boxes are two points too), capped by the maximum.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UsageError
from . import contract as C

MIN_POINTS = 2  # a box is two corner points; a click gets one padding point
EVERYTHING_PROMPTS = 64  # prompts per decoder call in everything mode (SamAutomaticMaskGenerator's points_per_batch)


@dataclass(frozen=True)
class Limits:
    """The bounds of one call: ``max_prompts`` P and ``max_points`` N of the decoder, ``max_batch`` B of the
    encoder (1 for a DLA encoder, whose shapes must be static)."""

    max_prompts: int = 64
    max_points: int = 16
    max_batch: int = 1
    opt_prompts: int | None = None  # the decoder shape TensorRT tunes for; None: min(EVERYTHING_PROMPTS, max_prompts)
    opt_batch: int | None = None  # the encoder's; None: max_batch

    @property
    def tuned(self) -> tuple[int, int]:
        """``(opt_prompts, opt_batch)`` with their defaults resolved: what the profiles tune for."""
        prompts = min(EVERYTHING_PROMPTS, self.max_prompts) if self.opt_prompts is None else self.opt_prompts
        return prompts, self.max_batch if self.opt_batch is None else self.opt_batch

    def resolved(self) -> Limits:
        """These bounds with the tuned shapes written out (what an engine's manifest record keeps)."""
        prompts, batch = self.tuned
        return replace(self, opt_prompts=prompts, opt_batch=batch)

    def __post_init__(self) -> None:
        if self.max_prompts < 1 or self.max_batch < 1:
            raise UsageError(f"--max-prompts and --max-batch must be at least 1, not {self.max_prompts} / "
                             f"{self.max_batch}")
        if self.max_points < MIN_POINTS:
            raise UsageError(f"--max-points must be at least {MIN_POINTS}: a box takes two corner points and a click "
                             f"one point plus padding; got {self.max_points}")
        for name, opt, top in (("prompts", self.opt_prompts, self.max_prompts), ("batch", self.opt_batch,
                                                                                   self.max_batch)):
            if opt is not None and not 1 <= opt <= top:
                raise UsageError(f"--opt-{name} must be between 1 and --max-{name} ({top}), not {opt}")


@dataclass(frozen=True)
class Profile:
    """``{input name: (min, opt, max) shapes}`` of one graph."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

    def spec(self, which: int) -> str:
        """``name:AxBxC,...`` of the min (0), opt (1) or max (2) shapes: trtexec's and ONNX Runtime's format."""
        return ",".join(f"{name}:{'x'.join(map(str, dims[which]))}" for name, dims in self.shapes.items())


def encoder_profile(max_batch: int = 1, opt_batch: int | None = None) -> Profile:
    """B images in 1..max_batch, tuned for ``opt_batch`` (None: max_batch)."""
    opt = Limits(max_batch=max_batch, opt_batch=opt_batch).tuned[1]
    return Profile({C.IMAGE.name: (C.IMAGE.concrete(B=1), C.IMAGE.concrete(B=opt), C.IMAGE.concrete(B=max_batch))})


def decoder_profile(max_prompts: int, max_points: int, opt_prompts: int | None = None, opt_points: int = 2) -> Profile:
    """P prompts in 1..max_prompts, N points in 1..max_points, tuned for ``opt_prompts`` (None: everything mode's,
    capped by the maximum) and ``opt_points``; the image features are static."""
    dynamic = (C.POINT_COORDS, C.POINT_LABELS, C.MASK_INPUT, C.HAS_MASK_INPUT)
    opt_prompts = min(EVERYTHING_PROMPTS, max_prompts) if opt_prompts is None else opt_prompts
    shapes = {
        s.name: (s.concrete(P=1, N=1), s.concrete(P=opt_prompts, N=min(opt_points, max_points)),
                 s.concrete(P=max_prompts, N=max_points))
        for s in dynamic
    }
    return Profile(shapes)


def profile_for(graph: str, limits: Limits) -> Profile:
    if graph == "encoder":
        return encoder_profile(limits.max_batch, limits.opt_batch)
    return decoder_profile(limits.max_prompts, limits.max_points, limits.opt_prompts)
