"""The FP16 graph's FP32 islands, shown to matter on the CPU with a stress checkpoint (``model.stress``)."""

from __future__ import annotations

import pytest

from hqsam_edge.calib.fp16_stress import fp16_stress
from hqsam_edge.model.stress import FP16_MAX, save_stress_checkpoint
from hqsam_edge.runtime.compare import PRECISION_BOUNDS

FP16_BOUND = PRECISION_BOUNDS["fp16"].min_sqnr_db


@pytest.fixture(scope="module")
def stress_folder(tmp_path_factory):
    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

    root = tmp_path_factory.mktemp("stress")
    checkpoint, peaks = save_stress_checkpoint(root / "stress.pth")
    export_artifacts(ExportSpec(checkpoint=str(checkpoint), out=str(root / "hq_vit_tiny"), verify=False))
    return root / "hq_vit_tiny", peaks


def test_stress_checkpoint_reaches_real_magnitudes(stress_folder):
    """The norms' inputs reach a magnitude FP16 holds whose square it does not (65504)."""
    _, peaks = stress_folder
    assert 256.0 < peaks.neck < FP16_MAX and peaks.neck ** 2 > FP16_MAX  # |x| > 256: x**2 beyond FP16
    assert peaks.norms < FP16_MAX  # the stream itself stays representable: only the islands' arithmetic overflows


def test_fp16_islands_keep_the_stress_checkpoint_finite(stress_folder, tmp_path):
    folder, _ = stress_folder
    result = fp16_stress(folder / "encoder.onnx", tmp_path)
    assert result.built.finite and result.built.worst_db >= FP16_BOUND  # the FP16 graph as built
    assert result.islands.finite and result.islands.worst_db >= FP16_BOUND  # FP16 storage, FP32 islands
    # the same graph in FP16 without the islands: the norms' squares overflow
    assert not result.no_islands.finite or result.no_islands.worst_db < FP16_BOUND - 20


def test_random_weights_never_needed_the_islands(tiny_folder, tmp_path):
    """Why the stress checkpoint: on random weights even the graph without islands meets FP16's bound."""
    result = fp16_stress(tiny_folder / "encoder.onnx", tmp_path)
    assert result.no_islands.finite and result.no_islands.worst_db >= FP16_BOUND
