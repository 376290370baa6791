"""One benchmark row in typed parts, and the flat JSON record ``bench --json`` writes of it.

A row says what was measured (``Target``, the paper's model name, ``Sizes``), its ``Timings`` (medians and
p90 in ms), ``Memory``, optional ``Scaling``, and where it ran (``Machine``: device, platform, versions).
``BenchRow.to_dict`` keeps the JSON keys and their order as they have always been.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..hardware import Platform


@dataclass(frozen=True)
class Target:
    """What one row measures: an artifact folder, or a (backbone, variant) built with random weights."""

    backbone: str
    variant: str
    backend: str
    precision: str = "fp32"
    folder: str | None = None
    checkpoint: str | None = None
    reference: bool = False  # the official segment_anything_hq SamPredictor

    @property
    def label(self) -> str:
        """``hq vit_tiny onnxruntime fp32`` (and the folder's name), for progress lines."""
        where = f" ({Path(self.folder).name})" if self.folder else ""
        return f"{self.variant} {self.backbone} {self.backend} {self.precision}{where}"


@dataclass(frozen=True)
class Sizes:
    """Parameter sizes in MiB: the whole model, and what HQ-SAM trains (None for plain SAM)."""

    params_mib: float
    learnable_mib: float | None


@dataclass(frozen=True)
class Timings:
    """Milliseconds: medians and p90 after warm-up by the wall clock; NaN for a measurement not run.
    ``gpu_encoder_ms``: device time of one encoder call by CUDA events (torch on CUDA), else None."""

    encoder_ms: float
    encoder_p90_ms: float
    decoder_ms: float  # 1 box
    decoder_p90_ms: float
    decoder_10pt_ms: float
    decoder_16box_ms: float
    e2e_ms: float
    e2e_p90_ms: float
    gpu_encoder_ms: float | None = None

    @property
    def fps(self) -> float:
        """Images per second end to end, as the HQ-SAM paper counts it (one image, one box)."""
        return 1000.0 / self.e2e_ms if self.e2e_ms else math.nan

    @classmethod
    def not_run(cls) -> Timings:
        nan = math.nan
        return cls(encoder_ms=nan, encoder_p90_ms=nan, decoder_ms=nan, decoder_p90_ms=nan, decoder_10pt_ms=nan,
                   decoder_16box_ms=nan, e2e_ms=nan, e2e_p90_ms=nan)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Memory:
    """The row's peak memory in MiB, and which: ``cpu peak RSS`` or ``gpu peak allocated`` (``-``: none)."""

    peak_mib: float
    kind: str

    @classmethod
    def not_run(cls) -> Memory:
        return cls(math.nan, "-")


@dataclass(frozen=True)
class Scaling:
    """Decoder ms by prompts per call, encoder images/s by batch (keys: the count, as text), and the batches
    left out because the engine's profile takes fewer (batch -> the profile's largest)."""

    decoder_ms_by_prompts: dict[str, float]
    encoder_images_per_s_by_batch: dict[str, float]
    skipped_batches: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, float]]:
        out = {"decoder_ms_by_prompts": dict(self.decoder_ms_by_prompts),
               "encoder_images_per_s_by_batch": dict(self.encoder_images_per_s_by_batch)}
        if self.skipped_batches:
            out["skipped_batches"] = dict(self.skipped_batches)
        return out


@dataclass(frozen=True)
class Machine:
    """Where a row ran: the device the backend used (``-`` where none did), the platform record (Jetson model,
    JetPack, power mode, GPU, CUDA, TensorRT; None where not detected) and the library versions."""

    device: str
    platform: Platform | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """One line for report headers (``hardware.Platform.summary``); empty without a platform."""
        return self.platform.summary() if self.platform is not None else ""

    def platform_dict(self) -> dict[str, Any]:
        return {**self.platform.to_dict(), "summary": self.summary} if self.platform is not None else {}


@dataclass(frozen=True)
class BenchRow:
    """One row of ``hqsam-edge bench``: ``error`` says why a row that could not run did not (its timings NaN);
    ``notes``, the measurements left out and why; ``iters`` timed calls per measurement (over all rounds)."""

    target: Target
    model: str  # the paper's name, "(official)" added for the reference
    sizes: Sizes
    timings: Timings
    memory: Memory
    machine: Machine
    scaling: Scaling | None = None
    iters: int = 0
    rounds: int = 1
    notes: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON record (``bench --json``): the keys and their order of every earlier release."""
        t, timings = self.target, self.timings
        return {
            "model": self.model, "backbone": t.backbone, "variant": t.variant, "backend": t.backend,
            "precision": t.precision, "device": self.machine.device, "params_mib": self.sizes.params_mib,
            "learnable_mib": self.sizes.learnable_mib,
            **{name: getattr(timings, name) for name in Timings.names() if name != "gpu_encoder_ms"},
            "fps": timings.fps, "peak_mem_mib": self.memory.peak_mib, "memory_kind": self.memory.kind,
            "gpu_encoder_ms": timings.gpu_encoder_ms, "iters": self.iters, "rounds": self.rounds, "folder": t.folder,
            "versions": dict(self.machine.versions), "machine": self.machine.platform_dict(),
            "scaling": self.scaling.to_dict() if self.scaling is not None else {}, "notes": list(self.notes),
            "error": self.error,
        }


def rows_to_dicts(rows: list[BenchRow]) -> list[dict[str, Any]]:
    """The JSON records of ``rows`` (``BenchRow.to_dict``)."""
    return [r.to_dict() for r in rows]
