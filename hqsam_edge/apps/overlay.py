"""The overlay ``hqsam-edge predict --overlay`` draws: masks blended in, their prompts, a legend, a warning.

``prompt_overlay``: each mask blended in its own colour (``mask_color``), each
box prompt outlined in its mask's colour, foreground points as green dots and
background points as red ones (white rims), and a legend panel in the bottom
left corner with each mask's colour and predicted score. ``everything_overlay``:
the masks of everything mode, with a one-line legend (how many). Both write
``RANDOM_WEIGHTS_NOTE`` in a banner across the top when the model has random
weights (``ModelInfo.random_weights``), so that nobody mistakes its masks for
results.

Lines, dots and text scale with the image's shorter side: readable on a
4000x3000 photo and on a 200x150 thumbnail. Text uses Pillow's default font,
at any size where Pillow (>= 10.1, with FreeType) can; otherwise its one bitmap
size, drawn and then enlarged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RANDOM_WEIGHTS_NOTE = "random weights: masks are meaningless"
LEGEND_ROWS = 12  # masks listed in the legend; more are counted in one last line

_COLORS = np.array(
    [[30, 144, 255], [255, 99, 71], [50, 205, 50], [255, 215, 0], [186, 85, 211], [0, 206, 209]], np.float32
)
_POSITIVE, _NEGATIVE, _RIM = (0, 200, 0), (230, 20, 20), (255, 255, 255)
_PANEL, _BANNER, _TEXT = (25, 25, 25), (190, 20, 20), (255, 255, 255)
_BITMAP_HEIGHT = 11  # px, Pillow's bitmap default font
_MIN_TEXT = 6  # px: text is shrunk to fit the image's width, but no further


def mask_color(k: int) -> np.ndarray:
    """The colour of mask ``k``: six fixed ones, then hues a golden angle apart (every mask its own)."""
    if k < len(_COLORS):
        return _COLORS[k]
    import colorsys

    return np.array(colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.75, 0.95), np.float32) * 255


def blend_masks(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """Blend a colour per mask (``[K,H,W]`` or K ``HxW`` masks) over ``image`` ``HxWx3`` (later masks on top)."""
    out = image.astype(np.float32)
    for k, mask in enumerate(masks):
        out[mask] = (1 - alpha) * out[mask] + alpha * mask_color(k)
    return np.clip(out, 0, 255).astype(np.uint8)


def legend_lines(scores: Sequence[float], limit: int = LEGEND_ROWS) -> list[str]:
    """The legend's text, one line per mask (``"mask 1  score 0.93"``), the masks past ``limit`` counted in one."""
    lines = [f"mask {k + 1}  score {float(s):.2f}" for k, s in enumerate(scores[:limit])]
    if len(scores) > limit:
        lines.append(f"... and {len(scores) - limit} more")
    return lines


def scales(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Line width, point radius and text size (px) for an image of ``shape`` (H, W, ...)."""
    side = min(shape[0], shape[1])
    return max(2, round(side / 250)), max(3, round(side / 100)), max(10, round(side / 40))


def prompt_overlay(image: np.ndarray, masks: np.ndarray, scores: Sequence[float], *,
                   boxes: np.ndarray | None = None, points: np.ndarray | None = None,
                   point_labels: np.ndarray | None = None, random_weights: bool = False) -> np.ndarray:
    """``image`` ``HxWx3`` with masks ``[K,H,W]`` blended in, box ``k`` of ``boxes`` ``[K,4]`` (x0,y0,x1,y1 pixels)
    outlined in mask ``k``'s colour, ``points`` ``[N,2]`` (x,y pixels) drawn by ``point_labels`` ``[N]`` (1
    foreground, 0 background; other labels, box corners or padding, are not points and not drawn), a legend of
    the masks' ``scores`` and, with ``random_weights``, the banner that says so."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(blend_masks(image, masks))
    draw = ImageDraw.Draw(canvas)
    width, radius, text = scales(image.shape)
    for k, (x0, y0, x1, y1) in enumerate(np.zeros((0, 4)) if boxes is None else np.asarray(boxes, float)):
        draw.rectangle([x0, y0, x1, y1], outline=tuple(int(c) for c in mask_color(k)), width=width)
    if points is not None:
        for (x, y), label in zip(np.asarray(points, float), np.asarray(point_labels)):
            if label in (0, 1):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=_POSITIVE if label == 1
                             else _NEGATIVE, outline=_RIM, width=max(1, width // 2))
    shown = min(len(scores), LEGEND_ROWS)  # the lines past these count the rest
    rows = [(mask_color(k) if k < shown else None, line) for k, line in enumerate(legend_lines(scores))]
    _annotate(canvas, rows, text, random_weights)
    return np.asarray(canvas)


def everything_overlay(image: np.ndarray, masks: Sequence[np.ndarray], *, random_weights: bool = False) -> np.ndarray:
    """Everything mode's masks ``[K,H,W]`` blended over ``image`` (later ones on top), a legend line saying how
    many and, with ``random_weights``, the banner that says so."""
    from PIL import Image

    canvas = Image.fromarray(blend_masks(image, masks))
    _annotate(canvas, [(None, f"{len(masks)} mask{'' if len(masks) == 1 else 's'}")], scales(image.shape)[2],
              random_weights)
    return np.asarray(canvas)


def _annotate(canvas, rows: list, size: int, random_weights: bool) -> None:
    """Paste the legend panel of ``rows`` (if any) bottom left and, with ``random_weights``, the banner across
    the top."""
    if rows:
        margin = max(2, size // 3)
        legend = _fitted_panel(rows, size, _PANEL, canvas.width - 2 * margin)
        canvas.paste(legend, (margin, max(0, canvas.height - legend.height - margin)))
    if random_weights:
        from PIL import Image

        note = _fitted_panel([(None, RANDOM_WEIGHTS_NOTE)], size, _BANNER, canvas.width)
        banner = Image.new("RGB", (canvas.width, note.height), _BANNER)
        banner.paste(note, (max(0, (canvas.width - note.width) // 2), 0))  # too wide still: its start shows
        canvas.paste(banner, (0, 0))


def _font(size: int):
    """Pillow's default font at ``size`` px and 1, or (Pillow < 10.1, or no FreeType) its bitmap font and the
    factor to enlarge what it draws by."""
    from PIL import ImageFont

    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one size
        font = ImageFont.load_default()
    if isinstance(font, ImageFont.FreeTypeFont):
        return font, 1
    return font, max(1, round(size / _BITMAP_HEIGHT))


def _fitted_panel(rows: list, size: int, background: tuple[int, int, int], max_width: int):
    """``_panel`` at text ``size``, or smaller (down to ``_MIN_TEXT``) until it fits ``max_width``."""
    panel = _panel(rows, size, background)
    if panel.width > max_width and size > _MIN_TEXT:
        size = max(_MIN_TEXT, int(size * max_width / panel.width))
        panel = _panel(rows, size, background)
        while panel.width > max_width and size > _MIN_TEXT:
            size -= 1
            panel = _panel(rows, size, background)
    return panel


def _panel(rows: list, size: int, background: tuple[int, int, int]):
    """A filled panel of ``rows`` ``(colour or None, text)``: each a colour swatch (if any) and its text."""
    from PIL import Image, ImageDraw

    font, factor = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = probe.textbbox((0, 0), "Ag", font=font)[3]
    pad, gap = max(2, line // 3), max(1, line // 4)
    swatch = line if any(colour is not None for colour, _ in rows) else 0
    text_x = pad + (swatch + line // 2 if swatch else 0)
    width = text_x + max(int(np.ceil(probe.textlength(t, font=font))) for _, t in rows) + pad
    height = 2 * pad + len(rows) * line + (len(rows) - 1) * gap
    panel = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(panel)
    for i, (colour, text) in enumerate(rows):
        y = pad + i * (line + gap)
        if colour is not None:
            draw.rectangle([pad, y, pad + swatch - 1, y + line - 1], fill=tuple(int(c) for c in colour),
                           outline=_TEXT)
        draw.text((text_x, y), text, fill=_TEXT, font=font)
    return panel if factor == 1 else panel.resize((width * factor, height * factor), Image.NEAREST)
