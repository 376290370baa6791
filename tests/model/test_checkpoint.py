"""Strict checkpoint loading and parameter sizes."""

from __future__ import annotations

import pytest
import torch

from hqsam_edge import build_model
from hqsam_edge.benchmarks.params import param_table
from hqsam_edge.errors import CheckpointError
from hqsam_edge.model.checkpoint import identify, read_state_dict


def test_identify_official_checkpoints(make_checkpoint):
    for backbone, variant, depth in [("vit_tiny", "hq", None), ("vit_tiny", "sam", None), ("vit_b", "hq", 4)]:
        info = identify(read_state_dict(make_checkpoint(backbone, variant, depth)))
        assert (info.backbone, info.variant) == (backbone, variant)


def test_wrong_backbone_names_the_right_one(make_checkpoint):
    with pytest.raises(CheckpointError, match="use --backbone vit_tiny"):
        build_model("vit_b", "hq", make_checkpoint("vit_tiny", "hq"))


def test_hq_checkpoint_into_plain_sam_is_refused(make_checkpoint):
    with pytest.raises(CheckpointError, match="--variant hq"):
        build_model("vit_tiny", "sam", make_checkpoint("vit_tiny", "hq"))


def test_plain_sam_checkpoint_into_hq_warns_and_loads(make_checkpoint):
    path = make_checkpoint("vit_tiny", "sam")
    with pytest.warns(UserWarning, match="HQ parts of the model are untrained"):
        model = build_model("vit_tiny", "hq", path)
    sd = torch.load(path, weights_only=True)
    assert torch.equal(model.state_dict()["mask_decoder.iou_token.weight"], sd["mask_decoder.iou_token.weight"])


def test_missing_and_unexpected_keys(make_checkpoint, tmp_path):
    sd = read_state_dict(make_checkpoint("vit_tiny", "hq"))
    broken = dict(sd)
    broken.pop("mask_decoder.hf_mlp.layers.0.weight")
    broken["mask_decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as err:
        build_model("vit_tiny", "hq", path)
    msg = str(err.value)
    assert "missing 1 keys (mask_decoder.hf_mlp.layers.0.weight)" in msg
    assert "unexpected 1 keys (mask_decoder.extra.weight)" in msg


def test_shape_mismatch(make_checkpoint, tmp_path):
    sd = dict(read_state_dict(make_checkpoint("vit_tiny", "hq")))
    sd["mask_decoder.hf_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"hf_token.weight \(1, 128\) vs \(1, 256\)"):
        build_model("vit_tiny", "hq", path)


def test_corrupt_truncated_and_missing_files(make_checkpoint, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        build_model("vit_tiny", "hq", garbage)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(make_checkpoint("vit_tiny", "hq").read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated/corrupt"):
        build_model("vit_tiny", "hq", truncated)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        build_model("vit_tiny", "hq", tmp_path / "nope.pth")
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(CheckpointError, match="does not hold a model state dict"):
        build_model("vit_tiny", "hq", notdict)


def test_wrapped_state_dict_loads(make_checkpoint, tmp_path):
    sd = read_state_dict(make_checkpoint("vit_tiny", "hq"))
    path = tmp_path / "wrapped.pth"
    torch.save({"model": sd, "epoch": torch.tensor(3)}, path)
    model = build_model("vit_tiny", "hq", path)
    assert torch.equal(model.state_dict()["mask_decoder.hf_token.weight"], sd["mask_decoder.hf_token.weight"])


def test_parameter_sizes_match_paper_table10():
    rows = param_table()
    assert len(rows) == 8
    for row in rows:
        assert abs(row.rel_error) < 0.005, f"{row.model}: {row.params_mib:.1f} vs paper {row.paper_params_mib}"
        if row.paper_learnable_mib is not None:
            assert abs(row.learnable_mib - row.paper_learnable_mib) <= 0.005 * row.paper_learnable_mib + 0.05
        else:
            assert row.learnable_mib is None
