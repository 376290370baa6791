"""What ``hqsam-edge info`` and ``--backend auto`` call usable: TensorRT only where it can make a builder."""

from __future__ import annotations

from hqsam_edge.runtime import environment
from tests.engines import recording_pycuda as RC
from tests.engines import recording_tensorrt as RT


def test_tensorrt_is_usable_only_if_it_can_make_a_builder(monkeypatch):
    """pycuda can work on a driver too old for the CUDA TensorRT was built with; TensorRT then returns a null
    builder, which pybind11 turns into a TypeError: said, with the driver floors, not called usable."""
    RT.install(monkeypatch)
    monkeypatch.setattr(environment, "_BUILDER_CHECKED", {})
    assert environment.tensorrt_status().usable

    def null_builder(self, logger):
        raise TypeError("pybind11::init(): factory function returned nullptr")

    monkeypatch.setattr(RT.Builder, "__init__", null_builder)
    monkeypatch.setattr(RC, "get_driver_version", lambda: 12040)
    assert environment.tensorrt_status().usable  # checked once per process
    monkeypatch.setattr(environment, "_BUILDER_CHECKED", {})
    status = environment.tensorrt_status()
    assert not status.usable and "cannot initialise CUDA on this driver (12040; pybind11" in status.detail
    assert "r580+" in status.detail and "r535+" in status.detail
