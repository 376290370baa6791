"""The backend lifecycle under Predictor: close / with release the backend; one collected while active warns."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from hqsam_edge import Predictor
from hqsam_edge.runtime.open import open_backend
from tests.conftest import test_image


def test_with_block_releases_the_backend(tiny_folder):
    with Predictor.from_artifacts(tiny_folder, backend="onnxruntime") as predictor:
        backend = predictor.backend
        assert backend.is_active and backend.sessions
        predictor.set_image(test_image(120, 160))
        masks, _, _ = predictor.predict(box=np.array([10, 10, 100, 80]))
        assert masks.shape == (1, 120, 160)
    assert not backend.is_active and backend.sessions == {} and not predictor.is_image_set


def test_close_is_idempotent(tiny_folder):
    predictor = Predictor.from_artifacts(tiny_folder, backend="onnxruntime")
    predictor.close()
    predictor.close()
    assert not predictor.backend.is_active


def test_backend_collected_while_active_warns(tiny_folder):
    backend = open_backend(tiny_folder, backend="onnxruntime")
    backend.activate()
    with pytest.warns(ResourceWarning, match="garbage-collected while active"):
        del backend
        gc.collect()


def test_backend_closed_before_collection_does_not_warn(tiny_folder, recwarn):
    backend = open_backend(tiny_folder, backend="onnxruntime")
    with backend:
        pass
    del backend
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]
