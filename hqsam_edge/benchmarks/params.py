"""Parameter sizes of every model, next to the paper's (Table 10).

Models are built on the ``meta`` device: no memory is allocated and no
weights are initialised, so all eight rows take a second or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.build import BackboneSpec, backbone_spec, build_from_spec, learnable_hq_parameters
from ..tables import Table
from .paper import TABLE10

MIB = 2**20


@dataclass(frozen=True)
class ParamRow:
    model: str
    backbone: str
    variant: str
    params_mib: float
    learnable_mib: float | None
    paper_params_mib: float
    paper_learnable_mib: float | None

    @property
    def rel_error(self) -> float:
        return self.params_mib / self.paper_params_mib - 1.0


def model_sizes(spec: BackboneSpec, variant: str) -> tuple[float, float | None]:
    """(all parameters, learnable HQ parameters) in MiB of fp32."""
    with torch.device("meta"):
        model = build_from_spec(spec, variant)
    total = sum(p.numel() for p in model.parameters()) * 4 / MIB
    learnable = sum(p.numel() for p in learnable_hq_parameters(model)) * 4 / MIB
    return total, (learnable if variant == "hq" else None)


def param_table() -> list[ParamRow]:
    rows = []
    for paper in TABLE10:
        total, learnable = model_sizes(backbone_spec(paper.backbone), paper.variant)
        rows.append(ParamRow(paper.model, paper.backbone, paper.variant, total, learnable,
                             paper.params_mib, paper.learnable_mib))
    return rows


def format_param_table(rows: list[ParamRow]) -> str:
    """``param_block`` as markdown."""
    return param_block(rows).markdown()


def param_block(rows: list[ParamRow]) -> Table:
    """Ours vs the paper's Table 10 (MiB of fp32), with the relative difference."""
    cells = [[r.model, r.backbone, f"{r.params_mib:.1f}", f"{r.paper_params_mib:.1f}", f"{100 * r.rel_error:+.2f}%",
              "-" if r.learnable_mib is None else f"{r.learnable_mib:.2f}",
              "-" if r.paper_learnable_mib is None else f"{r.paper_learnable_mib:.1f}"] for r in rows]
    return Table(("model", "backbone", "params MiB", "paper", "diff", "learnable MiB", "paper"), cells,
                 title="Parameters (MiB of fp32) vs HQ-SAM paper Table 10", numeric=frozenset(range(2, 7)))
