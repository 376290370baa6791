"""Calibration images are read as they are shown: a phone photo turned as its EXIF orientation says."""

from __future__ import annotations

from hqsam_edge.calib.images import CalibrationSet
from hqsam_edge.calib.precision_graphs import PrecisionSpec, heldout_images
from tests.conftest import exif_rotated_jpeg


def test_calibration_and_heldout_images_are_turned_as_their_exif_says(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        exif_rotated_jpeg(tmp_path / name)  # stored 40 wide, 30 high; shown 30 wide, 40 high
    assert [im.shape for im in CalibrationSet(tmp_path).images()] == [(40, 30, 3)] * 2
    spec = PrecisionSpec(folder=str(tmp_path / "model"), precision="int8", calib_images=str(tmp_path), heldout=1)
    assert [im.shape for im in heldout_images(spec)] == [(40, 30, 3)]
