"""The evaluation runner and `hqsam-edge eval` on the synthetic HQSeg-44K validation sets.

The official protocol is recomputed here with the official ``segment_anything_hq``
predictor (the test oracle) and a plain numpy IoU, and must give the same numbers.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge import Predictor, build_model
from hqsam_edge.cli import app
from hqsam_edge.data.synthetic import write_synthetic_hqseg
from hqsam_edge.metrics import boundary_iou
from hqsam_edge.eval.runner import EvalReport, EvalSpec, SetScore, evaluate, format_table, validation_samples
from tests.conftest import load_official

VAL = ("DIS5K-VD", "COIFT", "HRSOD", "ThinObject5k-TE")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_hqseg(tmp_path_factory.mktemp("hqseg") / "data", n_train=0, n_val=1, size=(150, 200), seed=2)


@pytest.fixture(scope="module")
def ckpt(make_checkpoint):
    return make_checkpoint("vit_tiny", "hq")


def _np_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _official_scores(predictor, image_path, mask_path, protocol: str) -> tuple[float, float]:
    """HQ-SAM's evaluation by hand: torch resize to 1024 x 1024, box of the resized mask (> 128), the official
    predictor's HQ-token logits upsampled to the original size."""
    image = np.asarray(Image.open(image_path).convert("RGB"))
    gt = np.asarray(Image.open(mask_path))
    truth = gt > 128
    if protocol == "official":
        im = F.interpolate(torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None], (1024, 1024),
                           mode="bilinear")[0].permute(1, 2, 0).numpy().astype(np.uint8)
        lab = F.interpolate(torch.tensor(gt, dtype=torch.float32)[None, None], (1024, 1024), mode="bilinear")[0, 0]
    else:
        im, lab = image, torch.tensor(gt, dtype=torch.float32)
    ys, xs = np.nonzero(lab.numpy() > 128)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
    predictor.set_image(im)
    masks, _, low_res = predictor.predict(box=box, multimask_output=False, hq_token_only=True)
    if protocol == "official":
        logits = F.interpolate(torch.from_numpy(low_res[None]), gt.shape, mode="bilinear", align_corners=False)
        pred = (logits[0, 0] > 0).numpy()
    else:
        pred = masks[0]
    return _np_iou(pred, truth), boundary_iou(truth, pred)


@pytest.mark.parametrize("protocol", ["official", "predictor"])
def test_scores_equal_the_official_predictor_by_hand(root, ckpt, protocol):
    sets = ("DIS5K-VD", "HRSOD") if protocol == "official" else ("COIFT",)
    spec = EvalSpec(data=str(root), datasets=sets, protocol=protocol, hq_token_only=True)
    report = evaluate(Predictor.from_model(build_model("vit_tiny", "hq", ckpt)), spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq import SamPredictor
    oracle = SamPredictor(load_official("vit_tiny", "hq", ckpt))
    samples = validation_samples(spec)
    assert [s.dataset for s in report.sets] == list(sets) and len(report.images) == len(sets)
    for score, name in zip(report.images, sets):
        sample = samples[name][0]
        iou, biou = _official_scores(oracle, sample.image, sample.mask, protocol)
        print(f"{protocol} {name}: ours IoU {score.iou:.5f} BIoU {score.boundary_iou:.5f}; "
              f"official IoU {iou:.5f} BIoU {biou:.5f}")
        assert score.iou == pytest.approx(iou, abs=2e-3)
        assert score.boundary_iou == pytest.approx(biou, abs=5e-3)
    for s in report.sets:  # one image per set: the set means are those images
        img = next(i for i in report.images if i.dataset == s.dataset)
        assert (s.count, s.miou, s.mbiou) == (1, img.iou, img.boundary_iou)
    assert report.mean_miou == pytest.approx(np.mean([s.miou for s in report.sets]))


def _table_rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| data set"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_cli_eval_checkpoint_prints_the_per_set_table(root, ckpt, tmp_path):
    out = tmp_path / "scores.json"
    r = CliRunner().invoke(app, ["eval", "--checkpoint", str(ckpt), "--backbone", "vit_tiny", "--data", str(root),
                                 "--limit", "1", "--datasets", "coift", "--datasets", "HRSOD", "--json", str(out)])
    assert r.exit_code == 0, r.output
    print(r.output)
    rows = _table_rows(r.output)
    assert list(rows) == ["COIFT", "HRSOD", "mean (2 sets)"]
    assert "torch fp32 mIoU" in r.output and "Δ" not in r.output
    values = [float(v) for row in rows.values() for v in row[1:]]
    assert all(0 <= v <= 100 for v in values)
    saved = json.loads(out.read_text())
    assert len(saved) == 1 and len(saved[0]["images"]) == 2
    assert float(rows["mean (2 sets)"][1]) == pytest.approx(100 * saved[0]["mean_miou"], abs=0.006)


def test_cli_eval_onnxruntime_folder_side_by_side(root, checkpoint_export, tmp_path):
    folder = tmp_path / "hq_vit_tiny"  # the session's export of ckpt (make_checkpoint("vit_tiny", "hq")), a copy
    shutil.copytree(checkpoint_export("hq")[0], folder)
    r = CliRunner().invoke(app, ["eval", str(folder), "--backend", "onnxruntime", "--data", str(root)])
    assert r.exit_code == 0, r.output
    print(r.output)
    header = next(line for line in r.output.splitlines() if line.startswith("| data set"))
    assert "PyTorch fp32 mIoU" in header and "onnxruntime fp32 mIoU" in header and "Δ mBIoU" in header
    rows = _table_rows(r.output)
    assert list(rows) == [*VAL, "mean (4 sets)"]
    for name, cells in rows.items():
        torch_miou, ort_miou, delta = float(cells[1]), float(cells[3]), float(cells[5])
        assert delta == pytest.approx(ort_miou - torch_miou, abs=0.011)
        assert abs(delta) < 1.0, f"{name}: ONNX Runtime fp32 moves mIoU by {delta} points"
    r = CliRunner().invoke(app, ["eval", str(folder), "--backend", "onnxruntime", "--data", str(root),
                                 "--no-reference", "--datasets", "COIFT"])
    assert r.exit_code == 0 and "PyTorch" not in r.output and list(_table_rows(r.output)) == ["COIFT", "mean (1 set)"]


def test_format_table_side_by_side():
    a = EvalReport("torch fp32", "official", None, (SetScore("A", 2, 0.5, 0.25), SetScore("B", 3, 0.7, 0.35)), ())
    b = EvalReport("onnxruntime int8", "official", None, (SetScore("A", 2, 0.49, 0.2), SetScore("B", 3, 0.7, 0.4)), ())
    rows = _table_rows(format_table([a, b]))
    assert rows["A"] == ["2", "50.00", "25.00", "49.00", "20.00", "-1.00", "-5.00"]
    assert rows["mean (2 sets)"] == ["5", "60.00", "30.00", "59.50", "30.00", "-0.50", "+0.00"]
    assert math.isclose(b.mean_miou, 0.595)


def test_eval_errors_end_in_one_line(root, ckpt, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "none")])
    assert r.exit_code == 1 and r.output.startswith("error: data root not found") and len(r.output.splitlines()) == 1
    r = runner.invoke(app, ["eval", "--checkpoint", str(ckpt), "--data", str(root), "--datasets", "DUTS-TR"])
    assert r.exit_code == 2 and "unknown val data set 'DUTS-TR'" in r.output
    r = runner.invoke(app, ["eval", "--data", str(root), "--backend", "onnxruntime", "--checkpoint", str(ckpt)])
    assert r.exit_code == 2 and "needs an artifact folder" in r.output
    r = runner.invoke(app, ["eval", "--checkpoint", str(ckpt), "--data", str(root), "--protocol", "fast"])
    assert r.exit_code == 2 and "unknown protocol" in r.output
    empty = tmp_path / "empty"
    write_synthetic_hqseg(empty, 0, 1, size=64, seed=0)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(empty / "thin_object_detection/COIFT/masks/coift_0000.png")
    r = runner.invoke(app, ["eval", "--checkpoint", str(ckpt), "--data", str(empty), "--datasets", "COIFT"])
    assert r.exit_code == 1 and "coift_0000.png has no foreground pixel" in r.output
