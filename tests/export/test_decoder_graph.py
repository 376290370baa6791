"""export.onnx_export.write_decoder_graph: a module taking the decoder graph's inputs, traced as the decoder is."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from hqsam_edge.export import contract as C
from hqsam_edge.export.onnx_export import write_decoder_graph


class PromptSums(torch.nn.Module):
    """Per prompt: the sum of its point coordinates plus the image's mean embedding (uses every input)."""

    def forward(self, embeddings, coords, labels, mask_input, has_mask):
        total = coords.sum(dim=(1, 2)) + labels.sum(dim=1) + mask_input.mean(dim=(1, 2, 3)) + has_mask
        return total + embeddings.mean(), labels


def test_traced_with_the_contract_inputs_and_dynamic_prompts(tmp_path):
    outputs = (C.TensorSpec("sums", np.float32, ("P",)), C.TensorSpec("labels_out", np.float32, ("P", "N")))
    features = (torch.randn(C.DECODER_IMAGE_EMBEDDINGS.shape),)
    path = tmp_path / "graph.onnx"
    write_decoder_graph(PromptSums().eval(), features, path, outputs, is_hq=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.onnx"]  # the temporary folder is gone
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [s.name for s in C.decoder_inputs(False)]
    assert [o.name for o in session.get_outputs()] == ["sums", "labels_out"]
    p, n = 5, 4  # not the traced P=2, N=3: both stay dynamic
    rng = np.random.default_rng(0)
    feeds = {C.DECODER_IMAGE_EMBEDDINGS.name: features[0].numpy(),
             C.POINT_COORDS.name: rng.uniform(0, 1024, (p, n, 2)).astype(np.float32),
             C.POINT_LABELS.name: np.ones((p, n), np.float32),
             C.MASK_INPUT.name: np.zeros(C.MASK_INPUT.concrete(P=p), np.float32),
             C.HAS_MASK_INPUT.name: np.zeros((p,), np.float32)}
    sums, labels = session.run(None, feeds)
    expected = feeds[C.POINT_COORDS.name].sum(axis=(1, 2)) + n + features[0].numpy().mean()
    np.testing.assert_allclose(sums, expected, rtol=1e-4)
    assert labels.shape == (p, n)
