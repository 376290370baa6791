"""Point sampling with importance (Mask2Former / PointRend) and the BCE + Dice loss, against hand formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hqsam_edge.train.losses import (
    LossSpec,
    dice,
    mask_losses,
    point_sample,
    sigmoid_bce,
    uncertain_point_coords,
)


def test_point_sample_hits_pixel_centres_and_interpolates():
    feats = torch.randn(2, 3, 8, 8)
    ij = torch.tensor([[0, 0], [3, 5], [7, 7]])
    coords = ((ij[:, [1, 0]].float() + 0.5) / 8).expand(2, -1, -1)  # (x, y) of centres (row i, col j)
    out = point_sample(feats, coords)
    assert out.shape == (2, 3, 3)
    torch.testing.assert_close(out[:, :, 1], feats[:, :, 3, 5])
    mid = torch.tensor([[[(5.5 + 0.5) / 8, (3 + 0.5) / 8]]]).expand(2, -1, -1)  # between columns 5 and 6
    torch.testing.assert_close(point_sample(feats, mid)[:, :, 0], (feats[:, :, 3, 5] + feats[:, :, 3, 6]) / 2)


def test_point_sample_is_resolution_independent():
    """A linear image sampled at its pixel centres gives the same values at 256 and 1024 (align_corners=False)."""

    def linear(n):
        c = (torch.arange(n) + 0.5) / n
        return (3 * c[None, :] - 2 * c[:, None])[None, None]  # f(x, y) = 3x - 2y

    coords = 0.01 + 0.98 * torch.rand(1, 500, 2, generator=torch.Generator().manual_seed(0))
    low, high = point_sample(linear(256), coords), point_sample(linear(1024), coords)
    torch.testing.assert_close(low, high, atol=1e-5, rtol=0)
    torch.testing.assert_close(low[0, 0], 3 * coords[0, :, 0] - 2 * coords[0, :, 1], atol=1e-5, rtol=0)


def test_importance_points_are_the_most_uncertain_candidates():
    spec = LossSpec(num_points=400, oversample_ratio=3.0, importance_ratio=0.75)
    x = (torch.arange(64) + 0.5) / 64
    logits = (40 * (x - 0.3)).expand(64, 64)[None, None].repeat(2, 1, 1, 1)  # decision boundary at x = 0.3
    coords = uncertain_point_coords(logits, spec, torch.Generator().manual_seed(1))
    assert coords.shape == (2, 400, 2) and coords.min() >= 0 and coords.max() <= 1
    # reference: the same candidates (same generator), top 300 by -|logit|, then 100 uniform
    g = torch.Generator().manual_seed(1)
    candidates = torch.rand(2, 1200, 2, generator=g)
    scores = -point_sample(logits, candidates)[:, 0].abs()
    for b in range(2):
        top = candidates[b, scores[b].argsort(descending=True)[:300]]
        assert {tuple(p) for p in top.tolist()} == {tuple(p) for p in coords[b, :300].tolist()}
    torch.testing.assert_close(coords[:, 300:], torch.rand(2, 100, 2, generator=g))
    assert (coords[:, :300, 0] - 0.3).abs().max() < (coords[:, 300:, 0] - 0.3).abs().mean()


def test_bce_and_dice_match_the_formulas():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 50))
    targets = rng.random((3, 50))
    p = 1 / (1 + np.exp(-logits))
    bce_ref = np.mean(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)), axis=1).sum() / 3
    dice_ref = np.sum(1 - (2 * (p * targets).sum(1) + 1) / (p.sum(1) + targets.sum(1) + 1)) / 3
    lt, tt = torch.tensor(logits), torch.tensor(targets)
    assert float(sigmoid_bce(lt, tt, 3)) == pytest.approx(bce_ref, rel=1e-9)
    assert float(dice(lt, tt, 3)) == pytest.approx(dice_ref, rel=1e-9)


def test_mask_losses_reward_the_right_mask_at_any_target_size():
    target = torch.zeros(2, 1, 1024, 1024)
    target[:, :, 200:700, 300:800] = 1
    good = torch.full((2, 1, 256, 256), -12.0)
    good[:, :, 50:175, 75:200] = 12.0
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    right = mask_losses(good, target, generator=gen())
    wrong = mask_losses(-good, target, generator=gen())
    assert set(right) == {"loss_mask", "loss_dice"}
    assert right["loss_mask"] < 0.05 and right["loss_dice"] < 0.05
    assert wrong["loss_mask"] > 5 and wrong["loss_dice"] > 0.9
    logits = good.clone().requires_grad_(True)
    sum(mask_losses(logits * 0.1, target, generator=gen()).values()).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
