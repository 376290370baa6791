"""The per-call choice of masks (``runtime.selection``) and folders exported before the graphs returned every token.

The numpy choice must equal the torch one the model keeps for training and as the reference (``select_masks`` of
the two decoders), ties included; an older folder keeps answering with the choice it was exported with and says
to export again for another.
"""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import torch

from hqsam_edge import Predictor
from hqsam_edge.errors import ArtifactError, UsageError
from hqsam_edge.export import contract as C
from hqsam_edge.model.mask_decoder import MaskDecoder
from hqsam_edge.model.mask_decoder_hq import MaskDecoderHQ
from hqsam_edge.runtime.selection import select_masks
from tests.conftest import test_image

CHOICES = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("is_hq", [True, False])
@pytest.mark.parametrize(("multimask", "hq_only"), CHOICES)
def test_numpy_choice_equals_the_models(is_hq, multimask, hq_only):
    rng = np.random.default_rng(0)
    masks = rng.normal(size=(6, C.mask_tokens(is_hq), 8, 8)).astype(np.float32)
    iou = rng.uniform(size=(6, C.SAM_MASK_TOKENS)).astype(np.float32)
    iou[0, 1:] = 0.5  # a tie: the first of equal scores, as torch.max
    iou[1, 2] = iou[1, 3] = 0.99
    decoder = types.SimpleNamespace(num_mask_tokens=C.SAM_MASK_TOKENS)  # all select_masks reads of its decoder
    cls = MaskDecoderHQ if is_hq else MaskDecoder
    want_m, want_s = cls.select_masks(decoder, torch.from_numpy(masks), torch.from_numpy(iou), multimask, hq_only)
    got_m, got_s = select_masks(masks, iou, is_hq=is_hq, multimask_output=multimask, hq_token_only=hq_only)
    assert got_m.shape == (6, C.num_masks(is_hq, multimask), 8, 8) and got_s.shape == got_m.shape[:2]
    np.testing.assert_array_equal(got_m, want_m.numpy())
    np.testing.assert_array_equal(got_s, want_s.numpy())


def test_outputs_of_another_contract_say_export_again():
    with pytest.raises(ArtifactError, match="export the folder again"):
        select_masks(np.zeros((2, 1, 256, 256), np.float32), np.zeros((2, 1), np.float32), is_hq=True,
                     multimask_output=False, hq_token_only=False)


@pytest.fixture(scope="module")
def legacy_folder(tiny_folder, tmp_path_factory):
    """The tiny folder as an older hqsam-edge exported it: a decoder graph that returns SAM's token 0 + HQ (M=1)."""
    from hqsam_edge.export.manifest import read_manifest
    from hqsam_edge.export.onnx_export import DECODER_FILE, _export_graph, _finish_graph, _trace_prompts
    from hqsam_edge.export.wrappers import export_copy

    folder = tmp_path_factory.mktemp("legacy") / "hq_vit_tiny"
    folder.mkdir()
    manifest = read_manifest(tiny_folder)
    manifest.artifacts = [manifest.find("onnxruntime", "fp32")]
    shutil.copyfile(tiny_folder / manifest.artifacts[0].files["encoder"], folder / "encoder.onnx")
    model = export_copy(manifest.build_model())

    class OldDecoderGraph(torch.nn.Module):  # what DecoderGraph was: the choice fixed at export
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model.decode(*inputs, multimask_output=False, hq_token_only=False)

    features = tuple(torch.zeros(s.shape) for s in (C.DECODER_IMAGE_EMBEDDINGS, C.DECODER_HQ_FEATURES))
    old = [C.TensorSpec(s.name, s.dtype, ("P", 1, *s.shape[2:])) for s in C.decoder_outputs()]
    raw = folder / ".raw" / "graph.onnx"
    raw.parent.mkdir()
    _export_graph(OldDecoderGraph().eval(), (*features, *_trace_prompts()), raw, C.decoder_inputs(True), old, 17)
    _finish_graph(raw, folder / DECODER_FILE, True)
    manifest.files = None
    manifest.record_files(folder, ["encoder.onnx", DECODER_FILE])
    data = json.loads(manifest.to_json())
    data["graphs"]["decoder"]["outputs"] = [{"name": s.name, "dtype": "float32", "shape": list(s.shape)} for s in old]
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


def test_an_older_folder_keeps_its_choice_and_refuses_others(tiny_folder, legacy_folder, tmp_path):
    image, box = test_image(200, 260), np.array([20.0, 30.0, 200.0, 170.0])
    new, old = (Predictor.from_artifacts(f, backend="onnxruntime") for f in (tiny_folder, legacy_folder))
    assert new.info.decoder_tokens and not old.info.decoder_tokens
    for p in (new, old):
        p.set_image(image)
    want = new.predict(box=box)
    got = old.predict(box=box)  # the exported choice: SAM's token 0 + HQ
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-5 * float(np.abs(want[2]).max()))
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-5)
    for kw in (dict(multimask_output=True), dict(hq_token_only=True)):
        with pytest.raises(UsageError, match=r"older hqsam-edge .* export it again"):
            old.predict(box=box, **kw)
        assert new.predict(box=box, **kw)[0].shape == (1, 200, 260)  # a current folder chooses per call
    from hqsam_edge.serve.triton import TritonSpec, write_repository

    with pytest.raises(ArtifactError, match="export it again for Triton"):
        write_repository(TritonSpec(folder=str(legacy_folder), out=str(tmp_path / "repo")))
    assert not (tmp_path / "repo").exists()
