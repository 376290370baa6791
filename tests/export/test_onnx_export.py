"""Exported graphs under ONNX Runtime against the official PyTorch model.

From official-format checkpoints with random weights: the ORT Predictor and
``segment_anything_hq.SamPredictor`` see the same image and prompts; logits
must agree within 1e-3 of the reference's range and masks reach IoU >= 0.999.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from hqsam_edge import Predictor
from hqsam_edge.errors import ArtifactError, CheckpointError, UsageError
from hqsam_edge.metrics import mask_iou
from hqsam_edge.export import contract as C
from hqsam_edge.export.onnx_export import export_model
from hqsam_edge.pipeline.export import ExportSpec, export_artifacts
from hqsam_edge.pipeline.export import verify_export
from tests.conftest import load_official, official_predictor, test_image

IMAGE = test_image(480, 640)
BOX = np.array([150.0, 80.0, 520.0, 400.0])
RNG = np.random.default_rng(1)


def _official(model):
    return official_predictor(model, IMAGE)


def assert_matches(ours, ref, what):
    (m1, _, l1), (m2, _, l2) = ours, ref
    l2 = np.asarray(l2)
    err = float(np.abs(l1 - l2).max())
    scale = float(np.abs(l2).max())
    assert err <= 1e-3 * scale, f"{what}: logit error {err:.3g} vs range {scale:.3g}"
    pairs = zip(np.asarray(m1).reshape(-1, *m1.shape[-2:]), np.asarray(m2).reshape(-1, *m1.shape[-2:]))
    ious = [mask_iou(a, b) for a, b in pairs]
    assert min(ious) >= 0.999, f"{what}: mask IoU {min(ious):.5f}"


@pytest.fixture(scope="module", params=["hq", "sam"])
def exported(request, make_checkpoint, checkpoint_export):
    variant = request.param
    ckpt = make_checkpoint("vit_tiny", variant)
    out, manifest = checkpoint_export(variant)  # export_artifacts(ExportSpec(..., checkpoint=str(ckpt))), verified
    ours = Predictor.from_artifacts(out, backend="onnxruntime")
    ours.set_image(IMAGE)
    ref = _official(load_official("vit_tiny", variant, ckpt))
    return variant, out, manifest, ours, ref


def _kw(variant):
    return {"hq_token_only": False} if variant == "hq" else {}


def test_manifest_describes_the_folder(exported):
    variant, out, manifest, _, _ = exported
    data = json.loads((out / "manifest.json").read_text())
    assert data["backbone"] == "vit_tiny" and data["variant"] == variant
    assert data["checkpoint_sha256"] and data["image_size"] == 1024 and data["opset"] >= 17
    names = [t["name"] for t in data["graphs"]["encoder"]["outputs"]]
    assert names == ([C.IMAGE_EMBEDDINGS.name, C.HQ_FEATURES.name] if variant == "hq" else [C.IMAGE_EMBEDDINGS.name])
    assert data["artifacts"][0]["backend"] == "onnxruntime" and data["artifacts"][0]["precision"] == "fp32"
    for figures in data["parity"]["decoder"].values():
        assert figures["low_res_masks_rel_error"] < 1e-3 and figures["min_mask_iou"] >= 0.999


def test_graph_contract(exported):
    """No shape-tensor inputs, no OneHot/Tile, LayerNorm2d as LayerNormalization; dynamic P and N."""
    variant, out, *_ = exported
    dec = onnx.load(str(out / "decoder.onnx"))
    ops = {n.op_type for n in dec.graph.node}
    assert not ops & {"OneHot", "Tile"}, ops
    assert "LayerNormalization" in ops
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in dec.graph.input}
    assert inputs[C.POINT_COORDS.name][:2] == ["P", "N"] and "orig_im_size" not in inputs
    assert list(inputs) == [s.name for s in C.decoder_inputs(variant == "hq")]
    enc = onnx.load(str(out / "encoder.onnx"))
    assert "LayerNormalization" in {n.op_type for n in enc.graph.node}


def test_box(exported):
    variant, _, _, ours, ref = exported
    assert_matches(ours.predict(box=BOX), ref.predict(box=BOX, multimask_output=False, **_kw(variant)), "box")


@pytest.mark.parametrize("n", [1, 4, 10])
def test_points(exported, n):
    variant, _, _, ours, ref = exported
    pts = RNG.uniform([0, 0], [640, 480], (n, 2))
    labels = (np.arange(n) % 3 != 2).astype(int)
    assert_matches(ours.predict(point_coords=pts, point_labels=labels),
                   ref.predict(point_coords=pts, point_labels=labels, multimask_output=False, **_kw(variant)),
                   f"{n} points")


def test_mask_input(exported):
    variant, _, _, ours, ref = exported
    low = ref.predict(box=BOX, multimask_output=False, **_kw(variant))[2]
    pts, labels = np.array([[300.0, 200.0]]), np.array([1])
    assert_matches(ours.predict(point_coords=pts, point_labels=labels, mask_input=low),
                   ref.predict(point_coords=pts, point_labels=labels, mask_input=low, multimask_output=False,
                               **_kw(variant)), "mask input")


def test_eight_boxes_in_one_call(exported):
    variant, _, _, ours, ref = exported
    boxes = np.sort(RNG.uniform(0, 460, (8, 2, 2)), axis=1).reshape(8, 4) + [0, 0, 10, 10]
    m1, s1, l1 = ours.predict_boxes(boxes)
    tb = ref.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), ref.original_size)
    m2, s2, l2 = ref.predict_torch(None, None, boxes=tb, multimask_output=False, **_kw(variant))
    assert_matches((m1, s1, l1), (m2.numpy(), s2.numpy(), l2.numpy()), "8 boxes")


def test_torch_backend_of_the_folder_agrees(exported):
    variant, out, _, ours, _ = exported
    torch_p = Predictor.from_artifacts(out, backend="torch")
    torch_p.set_image(IMAGE)
    assert_matches(ours.predict(box=BOX), torch_p.predict(box=BOX), "torch backend vs onnxruntime")


def test_polygraphy_accepts_both_graphs(exported):
    _, out, *_ = exported
    poly = shutil.which("polygraphy") or str(__import__("pathlib").Path(sys.executable).parent / "polygraphy")
    for graph in ("encoder.onnx", "decoder.onnx"):
        r = subprocess.run([poly, "inspect", "model", str(out / graph)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert C.IMAGE.name in r.stdout or C.POINT_COORDS.name in r.stdout
    shapes = "--input-shapes point_coords:[2,3,2] point_labels:[2,3] mask_input:[2,1,256,256] has_mask_input:[2]"
    r = subprocess.run([poly, "run", str(out / "decoder.onnx"), "--onnxrt", *shapes.split()],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "PASSED" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]


def test_one_export_serves_every_choice_of_masks(exported):
    """The graph returns every mask token: multimask_output / hq_token_only are chosen per call, each as the
    official model answers it, and the export check covered every choice."""
    variant, _, manifest, ours, ref = exported
    tokens = C.mask_tokens(variant == "hq")
    assert [e["shape"] for e in manifest.graphs["decoder"]["outputs"]] == [["P", tokens, 256, 256], ["P", 4]]
    pts, labels = np.array([[300.0, 200.0], [100.0, 400.0]]), np.array([1, 0])
    choices = [(True, False), (False, False)] + ([(False, True), (True, True)] if variant == "hq" else [])
    for multimask, hq_only in choices:
        kw = {"hq_token_only": hq_only} if variant == "hq" else {}
        got = ours.predict(point_coords=pts, point_labels=labels, multimask_output=multimask, **kw)
        assert got[0].shape[0] == (3 if multimask and variant == "sam" else 1)
        assert_matches(got, ref.predict(point_coords=pts, point_labels=labels, multimask_output=multimask, **kw),
                       f"multimask={multimask} hq_token_only={hq_only}")
    labels_checked = {name.partition(" [")[2].rstrip("]") for name in manifest.parity["decoder"]}
    assert labels_checked == ({"", "multimask", "hq_token_only", "multimask+hq_token_only"} if variant == "hq"
                              else {"", "multimask"})


def test_reduced_vit_b_export(make_checkpoint, tmp_path):
    from hqsam_edge import build_model
    from tests.conftest import reduced_spec

    model = build_model("vit_b", "hq", make_checkpoint("vit_b", "hq", 2), spec=reduced_spec("vit_b", 2))
    export_model(model, tmp_path, opset=17)
    parity = verify_export(model, tmp_path, multimask_output=False, hq_token_only=False)
    assert parity["encoder"]["hq_features"]["rel_error"] < 1e-3


def test_failed_parity_leaves_nothing(monkeypatch, tmp_path):
    from hqsam_edge.errors import ParityError
    from hqsam_edge.runtime import compare

    # no graph can meet a zero error bound
    monkeypatch.setattr(compare, "EXPORT_BOUNDS", compare.Bounds(max_rel_error=0.0, min_mask_iou=0.999))
    out = tmp_path / "x"
    with pytest.raises(ParityError, match="misses the fp32 PyTorch model"):
        export_artifacts(ExportSpec(random_weights=True, out=str(out)))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_inputs(make_checkpoint, tmp_path):
    with pytest.raises(UsageError, match="unknown backbone"):
        export_artifacts(ExportSpec(backbone="vit_q", random_weights=True, out=str(tmp_path / "a")))
    with pytest.raises(CheckpointError, match="use --backbone vit_tiny"):
        export_artifacts(ExportSpec(backbone="vit_b", checkpoint=str(make_checkpoint("vit_tiny", "hq")),
                                    out=str(tmp_path / "b")))
    with pytest.raises(UsageError, match="--random-weights"):
        export_artifacts(ExportSpec(out=str(tmp_path / "c")))
    with pytest.raises(UsageError, match="opset"):
        export_artifacts(ExportSpec(random_weights=True, opset=13, out=str(tmp_path / "d")))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactError, match="no manifest.json"):
        Predictor.from_artifacts(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["vit_b", "vit_l", "vit_h"])
def test_full_size_export_matches_official(backbone, make_checkpoint, tmp_path):
    """Full-size ViT graphs (vit_h crosses 2 GiB: external data) against the official model."""
    ckpt = make_checkpoint(backbone, "hq")
    out = tmp_path / f"hq_{backbone}"
    export_artifacts(ExportSpec(backbone=backbone, checkpoint=str(ckpt), out=str(out)))
    if backbone == "vit_h":
        assert (out / "encoder.onnx.data").exists()
    ours = Predictor.from_artifacts(out, backend="onnxruntime")
    ours.set_image(IMAGE)
    ref = _official(load_official(backbone, "hq", ckpt))
    assert_matches(ours.predict(box=BOX), ref.predict(box=BOX, multimask_output=False, hq_token_only=False), backbone)
