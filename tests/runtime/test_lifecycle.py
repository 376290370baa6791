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


def test_decode_splits_prompts_into_calls_of_max_prompts(tiny_folder):
    """A profile's bounds are the backend's: P prompts go in calls of at most max_prompts (same masks as one
    call), more than max_points points per prompt are refused, and so are more images than max_batch."""
    from hqsam_edge.errors import UsageError
    from hqsam_edge.runtime.compare import prompt_sets

    feeds = prompt_sets()["8_boxes"]
    with open_backend(tiny_folder, backend="onnxruntime") as backend:
        calls = []
        one_call = backend._decode
        backend._decode = lambda f, p: calls.append(len(p["point_coords"])) or one_call(f, p)
        tensor = np.zeros((1, 3, 1024, 1024), np.float32)
        features = backend.encode(tensor)
        options = dict(multimask_output=False, hq_token_only=False)
        whole = backend.decode(features, feeds, **options)
        backend.max_prompts, backend.max_points, backend.max_batch = 3, 2, 1
        split = backend.decode(features, feeds, **options)
        assert calls == [8, 3, 3, 2]
        for name, value in whole.items():
            np.testing.assert_allclose(split[name], value, rtol=0, atol=1e-5)
        with pytest.raises(UsageError, match="11 decoder points per prompt.*at most 2"):
            backend.decode(features, prompt_sets()["10_points"], **options)
        with pytest.raises(UsageError, match="2 images in one encoder call.*at most 1"):
            backend.check_batch(np.zeros((2, 3, 1024, 1024), np.float32))


def test_decode_feeds_is_decode_prompts_without_the_rest(tiny_folder):
    """The public decode of raw feeds (what benchmarks time) gives decode_prompts' logits and scores, with the
    folder's defaults or the choice given; it and the backend's features handle need an image."""
    from hqsam_edge.errors import ImageNotSetError
    from hqsam_edge.export import contract as C

    box = np.array([[10.0, 10.0, 100.0, 80.0]])
    with Predictor.from_artifacts(tiny_folder, backend="onnxruntime") as predictor:
        with pytest.raises(ImageNotSetError):
            _ = predictor.backend_features
        with pytest.raises(ImageNotSetError):
            predictor.decode_feeds({})
        predictor.set_image(test_image(120, 160))
        feeds = predictor.prompt_feeds(boxes=box)
        low_res, scores = predictor.decode_prompts(boxes=box)
        out = predictor.decode_feeds(feeds)
        np.testing.assert_array_equal(out[C.LOW_RES_MASKS.name], low_res)
        np.testing.assert_array_equal(out[C.IOU_PREDICTIONS.name], scores)
        other = not predictor.info.hq_token_only  # the choice given, not the folder's
        chosen = predictor.decode_feeds(feeds, hq_token_only=other)[C.LOW_RES_MASKS.name]
        np.testing.assert_array_equal(chosen, predictor.decode_prompts(boxes=box, hq_token_only=other)[0])
        assert not np.array_equal(chosen, low_res)
        direct = predictor.backend.decode(predictor.backend_features, feeds, multimask_output=False,
                                          hq_token_only=predictor.info.hq_token_only)
        np.testing.assert_array_equal(direct[C.LOW_RES_MASKS.name], low_res)
