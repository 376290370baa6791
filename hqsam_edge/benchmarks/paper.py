"""The HQ-SAM paper's Table 10 (and Table 1): params, FPS, memory.

"Model Params (MB)" are MiB of fp32 parameters; FPS and memory were measured
in PyTorch on an unnamed GPU. "Learnable" is the HQ parts' share in MiB.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    model: str
    backbone: str
    variant: str
    params_mib: float
    fps: float
    memory_gb: float
    learnable_mib: float | None  # None for plain SAM (nothing trained)


TABLE10: tuple[PaperRow, ...] = (
    PaperRow("SAM-B", "vit_b", "sam", 358.0, 10.1, 5.1, None),
    PaperRow("HQ-SAM-B", "vit_b", "hq", 362.1, 9.8, 5.1, 4.1),
    PaperRow("SAM-L", "vit_l", "sam", 1191.0, 5.0, 7.6, None),
    PaperRow("HQ-SAM-L", "vit_l", "hq", 1196.1, 4.8, 7.6, 5.1),
    PaperRow("SAM-H", "vit_h", "sam", 2446.0, 3.5, 10.3, None),
    PaperRow("HQ-SAM-H", "vit_h", "hq", 2452.1, 3.4, 10.3, 6.1),
    PaperRow("MobileSAM", "vit_tiny", "sam", 38.6, 44.8, 3.7, None),
    PaperRow("Light HQ-SAM", "vit_tiny", "hq", 40.3, 41.2, 3.7, 1.7),
)


def paper_row(backbone: str, variant: str) -> PaperRow:
    for row in TABLE10:
        if row.backbone == backbone and row.variant == variant:
            return row
    raise KeyError((backbone, variant))
