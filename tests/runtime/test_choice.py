"""Whether a model has random weights (``ModelInfo.random_weights``, which overlays warn of), from each way one is
opened: a model choice, an artifact folder's manifest, a model handed to ``Predictor.from_model``."""

from __future__ import annotations

import dataclasses

from hqsam_edge.export.manifest import read_manifest
from hqsam_edge.model import build_model
from hqsam_edge.runtime.base import ModelInfo
from hqsam_edge.runtime.choice import ModelChoice
from hqsam_edge.runtime.predictor import Predictor


def test_random_weights_from_the_model_choice(make_checkpoint):
    with ModelChoice(random_weights=True).open() as p:
        assert p.info.random_weights
    with ModelChoice(checkpoint=make_checkpoint("vit_tiny", "hq")).open() as p:
        assert not p.info.random_weights
    with Predictor.from_model(build_model("vit_tiny")) as p:  # the Python API: only the caller knows
        assert not p.info.random_weights


def test_random_weights_from_the_manifest(tiny_folder):
    manifest = read_manifest(tiny_folder)  # exported with --random-weights
    assert manifest.random_weights and ModelInfo.from_manifest(manifest).random_weights
    for backend in ("onnxruntime", "torch"):
        with Predictor.from_artifacts(tiny_folder, backend=backend) as p:
            assert p.info.random_weights, backend
    from_checkpoint = dataclasses.replace(manifest, checkpoint="/ckpt/sam_hq_vit_tiny.pth",
                                          checkpoint_sha256="ab" * 32, random_seed=None)
    assert not ModelInfo.from_manifest(from_checkpoint).random_weights
