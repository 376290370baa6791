"""``hqsam-edge predict --overlay``'s drawing: prompts over the blend, the legend of scores, the random-weights
banner."""

from __future__ import annotations

import numpy as np

from hqsam_edge.apps.overlay import (
    blend_masks,
    everything_overlay,
    legend_lines,
    mask_color,
    prompt_overlay,
)

H, W = 150, 200
BOXES = np.array([[25, 15, 95, 65], [95, 65, 185, 125]], float)
# a foreground point, a background one, a padding point and a box corner (neither is drawn)
POINTS = np.array([[50, 40], [140, 90], [10, 60], [170, 20]], float)
LABELS = np.array([1, 0, -1, 2])


def scene(h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """A flat grey image and two masks inside the two boxes."""
    image = np.full((h, w, 3), 100, np.uint8)
    masks = np.zeros((2, h, w), bool)
    masks[0, h * 20 // H : h * 60 // H, w * 30 // W : w * 90 // W] = True
    masks[1, h * 70 // H : h * 120 // H, w * 100 // W : w * 180 // W] = True
    return image, masks


def draw(scores=(0.934, 0.5), random_weights=False, **kw):
    image, masks = scene()
    return prompt_overlay(image, masks, list(scores), boxes=BOXES, points=POINTS, point_labels=LABELS,
                          random_weights=random_weights, **kw)


def legend_area(a: np.ndarray) -> np.ndarray:
    return a[H - 45 :, : W // 2]


def test_boxes_and_points_are_drawn_over_the_blend():
    image, masks = scene()
    plain, out = blend_masks(image, masks), draw()
    for k, (y, x) in enumerate([(15, 60), (95, 95)]):  # box 0's top edge, box 1's left edge
        assert (out[y, x] == mask_color(k)).all() and (plain[y, x] != out[y, x]).any()
    positive, negative = out[40, 50].astype(int), out[90, 140].astype(int)
    assert positive[1] > 150 and positive[0] < 80 and positive[2] < 80, positive
    assert negative[0] > 150 and negative[1] < 80 and negative[2] < 80, negative
    assert (out[60, 10] == plain[60, 10]).all() and (out[20, 170] == plain[20, 170]).all()  # labels -1, 2
    assert (out[: H // 2, W - 10 :] == plain[: H // 2, W - 10 :]).all()  # no banner: the model is trained


def test_legend_lists_each_mask_and_its_score():
    assert legend_lines([0.934, 0.5]) == ["mask 1  score 0.93", "mask 2  score 0.50"]
    many = legend_lines(np.linspace(0, 1, 14))
    assert len(many) == 13 and many[0] == "mask 1  score 0.00" and many[-1] == "... and 2 more"
    image, masks = scene()
    plain, out, other = blend_masks(image, masks), draw(), draw(scores=(0.125, 0.5))
    panel = legend_area(out)
    assert (panel != legend_area(plain)).any(axis=-1).mean() > 0.2
    for k in range(2):  # the swatches
        assert (panel == mask_color(k)).all(axis=-1).sum() > 20
    assert (panel == 255).all(axis=-1).sum() > 20  # white text
    changed = (out != other).any(axis=-1)
    assert changed.any() and not changed[: H - 45].any()  # another score: only the legend's text changes


def test_random_weights_banner():
    image, masks = scene()
    plain, warned = blend_masks(image, masks), draw(random_weights=True)
    rows = int((warned[:, 0] == warned[0, 0]).all(axis=-1).argmin())  # the banner's colour, left, from the top
    assert 8 <= rows <= 25 and (warned[0, 0] == warned[0, -1]).all() and warned[0, 0, 0] > 150
    assert (warned[:rows] != plain[:rows]).any(axis=-1).mean() > 0.9
    assert (warned[:rows, :, 1] > 150).sum() > 50  # its light text on the red
    assert (draw()[:rows, 100:] == plain[:rows, 100:]).all()  # no banner (left of this, box 0)


def test_lines_and_text_scale_with_the_image():
    def measured(h, w):
        image, masks = scene(h, w)
        boxes = BOXES * (w / W)
        out = prompt_overlay(image, masks, [0.9, 0.8], boxes=boxes, random_weights=True)
        banner = int((out[:, 0] == out[0, 0]).all(axis=-1).argmin())  # rows of the banner's colour at the top
        x, y = int((boxes[0, 0] + boxes[0, 2]) / 2), int(boxes[0, 3])  # box 0's bottom edge
        return banner, int((out[y - h // 20 : y + h // 20, x] == mask_color(0)).all(axis=-1).sum())

    small_banner, small_line = measured(H, W)
    big_banner, big_line = measured(3000, 4000)
    assert small_banner >= 8 and small_line >= 2
    assert big_banner > 5 * small_banner and big_line >= 10


def test_everything_overlay_counts_its_masks_and_warns():
    image, masks = scene()
    plain = blend_masks(image, masks)
    out = everything_overlay(image, masks, random_weights=True)
    assert (out[H - 20 :, :20] != plain[H - 20 :, :20]).any() and (out[0, 0] != plain[0, 0]).any()
    quiet = everything_overlay(image, masks)
    assert (quiet[:8] == plain[:8]).all() and (quiet[H - 20 :, :20] != plain[H - 20 :, :20]).any()
    assert ((quiet != everything_overlay(image, masks[:1])) & ~masks.any(0)[..., None]).any()  # "2 masks", "1 mask"
