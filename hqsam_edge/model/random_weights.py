"""Random weights in which every part of a model matters, for tests and benchmarks without a checkpoint.

A freshly initialised SAM has zero or constant tensors (LayerNorm biases, HQ-SAM's zero-initialised layers,
BatchNorm statistics) that hide whole parts of the computation; ``perturb_`` adds seeded noise to every
floating-point tensor so that they all shape the output and masks vary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Add ``scale`` x N(0, 1) noise (seeded) to every floating-point tensor of ``model`` in place; BatchNorm's
    running variances become 0.5 + |noise| and its running means 0.1 x noise. Returns ``model``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            noise = torch.randn(t.shape, generator=g)
            if name.endswith("running_var"):
                t.copy_(0.5 + noise.abs())
            elif name.endswith("running_mean"):
                t.copy_(0.1 * noise)
            else:
                t.add_(scale * noise)
    return model
