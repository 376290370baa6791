"""A stress checkpoint: random weights scaled to the activations real SAM checkpoints reach, where FP16 overflows.

Random weights never make the activations that overflow FP16 in real SAM
checkpoints (segment-anything issue 540: ViT-H in FP16 gives garbage;
mit-han-lab/efficientvit issue 142), so on random weights the FP16 graph's
FP32 islands (``calib.recipes.FP16_KEEP_FP32``: norms, softmax, reductions)
show nothing. ``stress_model`` scales a model's weights so the residual stream
and every normalisation's input reach ``STRESS_PEAK`` in magnitude: still a
number FP16 holds (below its 65504), but its square, which a normalisation
computes on the way to the variance, is far beyond it. The FP16 graph as
built keeps those reductions in FP32 and stays finite; the same graph
converted without the islands overflows. ``save_stress_checkpoint`` writes
such a model as a checkpoint ``hqsam-edge export --checkpoint`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

STRESS_PEAK = 2000.0  # |x| at the norms' inputs: x**2 = 4e6 > 65504 (FP16's largest); real checkpoints reach 1e3-1e4
RESIDUAL_GAIN = 40.0  # the residual branches' output layers (MLP fc2 / lin2), scaled so the stream grows block by block
FP16_MAX = 65504.0


@dataclass(frozen=True)
class StressPeaks:
    """Largest |input| of the model's normalisations on one image: over all, and at the image encoder's neck."""

    norms: float
    neck: float


def _norms(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    import torch

    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, torch.nn.LayerNorm) or type(m).__name__ == "LayerNorm2d"]


def measure_peaks(model: torch.nn.Module, image: torch.Tensor | None = None) -> StressPeaks:
    """The normalisations' largest |input| when the image encoder runs ``image`` (default: a seeded random one)."""
    import torch

    encoder = model.image_encoder if hasattr(model, "image_encoder") else model
    if image is None:
        image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    peaks: dict[str, float] = {}

    def hook(name: str):
        def record(module, inputs, output) -> None:  # noqa: ANN001 - torch's hook signature
            peaks[name] = max(peaks.get(name, 0.0), float(inputs[0].detach().abs().max()))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in _norms(encoder)]
    try:
        with torch.no_grad():
            encoder(image)
    finally:
        for handle in handles:
            handle.remove()
    neck = [v for k, v in peaks.items() if k.startswith("neck")]
    return StressPeaks(norms=max(peaks.values(), default=0.0), neck=max(neck, default=0.0))


def stress_model(model: torch.nn.Module, *, peak: float = STRESS_PEAK, gain: float = RESIDUAL_GAIN) -> StressPeaks:
    """Scale ``model``'s weights in place: the residual branches' output layers of the image encoder by ``gain`` (the
    stream grows as in trained checkpoints), then the neck's first convolution so its normalisations' inputs peak at
    ``peak``; the encoder's largest normalisation input is brought to ``peak`` too where it went beyond. The peaks
    measured after."""
    import torch

    encoder = model.image_encoder
    with torch.no_grad():
        for name, module in encoder.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(("mlp.fc2", "mlp.lin2")):
                module.weight.mul_(gain)
                if module.bias is not None:
                    module.bias.mul_(gain)
        first = measure_peaks(model)
        if first.norms > peak:  # too much: the stream beyond what FP16 holds would overflow any FP16 graph
            for name, module in encoder.named_modules():
                if isinstance(module, torch.nn.Linear) and name.endswith(("mlp.fc2", "mlp.lin2")):
                    module.weight.mul_(peak / first.norms)
                    if module.bias is not None:
                        module.bias.mul_(peak / first.norms)
            first = measure_peaks(model)
        neck = encoder.neck[0]
        neck.weight.mul_(peak / max(first.neck, 1e-6))
    return measure_peaks(model)


def save_stress_checkpoint(path: str | Path, backbone: str = "vit_tiny", variant: str = "hq", seed: int = 0,
                           peak: float = STRESS_PEAK) -> tuple[Path, StressPeaks]:
    """Write the stress checkpoint of ``backbone`` / ``variant`` (random weights of ``seed``, ``stress_model``) to
    ``path``; the path and the peaks it reaches."""
    import torch

    from .build import build_model

    torch.manual_seed(seed)
    model = build_model(backbone, variant).eval()
    peaks = stress_model(model, peak=peak)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path, peaks
