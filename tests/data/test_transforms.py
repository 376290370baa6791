"""Image reading and pre-processing: EXIF orientation applied on load; images too thin to resize refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hqsam_edge.data import transforms as T
from hqsam_edge.errors import ImageError


def test_load_image_applies_the_exif_orientation(tmp_path):
    """A phone photo stored 40 wide x 30 high with orientation 6 ("rotate 90 clockwise to view") is shown,
    and so segmented, 30 wide x 40 high: the stored top-left pixel ends up top-right."""
    stored = np.zeros((30, 40, 3), np.uint8)
    stored[:5, :5] = 255  # a white corner, top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)
    shown = T.load_image(str(tmp_path / "phone.jpg"))
    assert shown.shape == (40, 30, 3)
    assert shown[:5, -5:].mean() > 200 and shown[:5, :5].mean() < 50
    assert T.load_image(str(tmp_path / "plain.jpg")).shape == (30, 40, 3)


def test_too_thin_an_image_is_one_clear_error():
    with pytest.raises(ImageError, match="too thin"):
        T.preprocess_image(np.zeros((1, 3000, 3), np.uint8))
