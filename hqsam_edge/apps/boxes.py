"""Box prompts read from COCO-style files (what ``hqsam-edge segment --boxes`` reads).

Boxes are always COCO ``[x, y, w, h]`` in pixels of the image, (x, y) its top-left corner:

- a COCO annotations file: ``{"images": [{"id", "file_name", "width", "height"}, ...],
  "annotations": [{"id", "image_id", "bbox": [x, y, w, h], "category_id"}, ...]}``;
- a mapping ``{"file_name": [[x, y, w, h], ...], ...}``: category 1, and image
  ids 1, 2, ... in the order of the file.

``match_images`` pairs their ``file_name`` s with image files found on disk.

A box that is not 4 finite numbers or has no area is wrong for its image only: ``read_boxes_file(...,
keep_bad_boxes=True)`` records the first such box's message as that image's ``problem`` (so that a caller can
skip the image) instead of raising; whatever is wrong with the file itself (not JSON, ids, names) always raises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import DataError, UsageError


@dataclass(frozen=True)
class BoxPrompt:
    """One box prompt: ``bbox`` COCO ``[x, y, w, h]`` in image pixels."""

    bbox: tuple[float, float, float, float]
    category_id: int = 1
    annotation_id: int | None = None
    where: str = ""  # how to find it in the boxes file, for messages

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


@dataclass(frozen=True)
class ImageBoxes:
    """The boxes of one image as the boxes file names it (``width``/``height`` when the file says)."""

    file_name: str
    image_id: int
    boxes: tuple[BoxPrompt, ...] = field(default_factory=tuple)
    width: int | None = None
    height: int | None = None
    problem: str | None = None  # its first bad box, with ``keep_bad_boxes`` (the box is left out of ``boxes``)


@dataclass(frozen=True)
class BoxesFile:
    path: str
    kind: str  # "coco" or "mapping"
    images: tuple[ImageBoxes, ...]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bbox(value: Any, path: str, where: str) -> tuple[float, float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_number(v) for v in value)):
        raise DataError(f"{path}: {where}: a box is [x, y, w, h] (4 finite numbers, COCO pixels); got {value!r:.60}")
    x, y, w, h = (float(v) for v in value)
    if w <= 0 or h <= 0:
        raise DataError(f"{path}: {where}: box [x, y, w, h] = {list(value)} has no area: w and h must be > 0")
    return (x, y, w, h)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DataError(f"key {key!r} appears twice in one object; give each file name once")
        seen[key] = value
    return seen


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"boxes file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read boxes file {path}: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _opt_int(obj: Mapping[str, Any], key: str, path: str, where: str) -> int | None:
    value = obj.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise DataError(f"{path}: {where}: {key!r} must be an integer; got {value!r:.40}")
    return value


def _int(obj: Mapping[str, Any], key: str, path: str, where: str) -> int:
    value = _opt_int(obj, key, path, where)
    if value is None:
        raise DataError(f"{path}: {where} needs an integer {key!r}")
    return value


def _read_coco(data: Mapping[str, Any], path: str, keep_bad_boxes: bool) -> list[ImageBoxes]:
    images, anns = data.get("images"), data.get("annotations")
    if not isinstance(images, list) or not isinstance(anns, list):
        raise DataError(f"{path}: a COCO file holds lists 'images' and 'annotations'")
    by_id: dict[int, dict[str, Any]] = {}
    names: dict[str, int] = {}
    for i, im in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(im, dict):
            raise DataError(f"{path}: {where} must be an object with id, file_name, width, height")
        image_id = _int(im, "id", path, where)
        name = im.get("file_name")
        if not isinstance(name, str) or not name:
            raise DataError(f"{path}: {where} (id {image_id}) needs a 'file_name' string")
        width = _opt_int(im, "width", path, where)
        height = _opt_int(im, "height", path, where)
        if image_id in by_id:
            raise DataError(f"{path}: {where}: image id {image_id} is used twice; image ids must be unique")
        key = _normalise(name)
        if key in names:
            raise DataError(f"{path}: {where}: file_name {name!r} is listed twice (ids {names[key]} and {image_id})")
        names[key] = image_id
        by_id[image_id] = {"file_name": name, "width": width, "height": height, "boxes": [], "problem": None}
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise DataError(f"{path}: annotations[{i}] must be an object with id, image_id, bbox, category_id")
        ann_id = _opt_int(ann, "id", path, f"annotations[{i}]")
        where = f"annotations[{i}]" + (f" (id {ann_id})" if ann_id is not None else "")
        image_id = _int(ann, "image_id", path, where)
        if image_id not in by_id:
            raise DataError(f"{path}: {where}: image_id {image_id} is not in 'images'")
        category = _opt_int(ann, "category_id", path, where)
        try:
            bbox = _bbox(ann.get("bbox"), path, where)
        except DataError as exc:
            if not keep_bad_boxes:
                raise
            by_id[image_id]["problem"] = by_id[image_id]["problem"] or str(exc)
            continue
        by_id[image_id]["boxes"].append(
            BoxPrompt(bbox, 1 if category is None else category, ann_id, where))
    return [ImageBoxes(v["file_name"], k, tuple(v["boxes"]), v["width"], v["height"], v["problem"])
            for k, v in by_id.items()]


def _read_mapping(data: Mapping[str, Any], path: str, keep_bad_boxes: bool) -> list[ImageBoxes]:
    out = []
    for n, (name, boxes) in enumerate(data.items(), start=1):
        if not name:
            raise DataError(f"{path}: an empty file name is a key; keys are image file names")
        if not isinstance(boxes, list):
            raise DataError(f"{path}: entry {name!r} must be a list of boxes [[x, y, w, h], ...]; got {boxes!r:.40}")
        prompts, problem = [], None
        for k, b in enumerate(boxes):
            where = f"entry {name!r} box {k}"
            try:
                prompts.append(BoxPrompt(_bbox(b, path, where), 1, None, where))
            except DataError as exc:
                if not keep_bad_boxes:
                    raise
                problem = problem or str(exc)
        out.append(ImageBoxes(name, n, tuple(prompts), problem=problem))
    return out


def read_boxes_file(path: str | Path, *, keep_bad_boxes: bool = False) -> BoxesFile:
    """Read a COCO annotations file or a ``{"file_name": [[x, y, w, h], ...]}`` mapping (see module doc);
    ``keep_bad_boxes``: a bad box marks its image's ``problem`` instead of raising."""
    path = Path(path)
    data = _read_json(path)
    if isinstance(data, dict) and ("images" in data or "annotations" in data):
        return BoxesFile(str(path), "coco", tuple(_read_coco(data, str(path), keep_bad_boxes)))
    if isinstance(data, dict):
        return BoxesFile(str(path), "mapping", tuple(_read_mapping(data, str(path), keep_bad_boxes)))
    raise DataError(f"{path}: expected a COCO annotations file {{\"images\": [...], \"annotations\": [...]}} "
                    f"or a mapping {{\"file_name\": [[x, y, w, h], ...]}}; got a JSON {type(data).__name__}")


def _normalise(name: str) -> str:
    """``file_name`` as a relative POSIX path: backslashes to slashes, no leading ``./``."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def match_images(boxes: BoxesFile, rel_paths: Iterable[str]) -> dict[str, ImageBoxes]:
    """Pair image files (paths relative to the image root, POSIX) with the boxes file's entries.

    An entry matches the image whose relative path equals its ``file_name``;
    failing that, the one image with the same base name. An entry whose base
    name fits several images, or two entries that land on one image, is an
    error. Entries that match no image are left out (the glob picked a
    subset); if no image matches at all, that is an error too.
    """
    rels = list(rel_paths)
    exact = set(rels)
    by_base: dict[str, list[str]] = {}
    for rel in rels:
        by_base.setdefault(PurePosixPath(rel).name, []).append(rel)
    matched: dict[str, ImageBoxes] = {}
    for entry in boxes.images:
        key = _normalise(entry.file_name)
        if key in exact:
            rel = key
        else:
            found = by_base.get(PurePosixPath(key).name, [])
            if not found:
                continue
            if len(found) > 1:
                raise DataError(f"{boxes.path}: file_name {entry.file_name!r} is ambiguous: it matches "
                                f"{', '.join(found[:3])}{' ...' if len(found) > 3 else ''}; "
                                "give paths relative to the image root (the --images glob before its first wildcard)")
            rel = found[0]
        if rel in matched:
            raise DataError(f"{boxes.path}: file names {matched[rel].file_name!r} and {entry.file_name!r} "
                            f"both name image {rel}; keep one")
        matched[rel] = entry
    if boxes.images and rels and not matched:
        raise DataError(f"{boxes.path}: none of its {len(boxes.images)} file names matches any of the {len(rels)} "
                        f"images (e.g. {boxes.images[0].file_name!r} vs {rels[0]!r}); file names are matched by path "
                        "relative to the image root, or by base name")
    return matched


def check_boxes_inside(entry: ImageBoxes, width: int, height: int, path: str, rel: str, slack: float = 1.0) -> None:
    """Every box of ``entry`` must lie inside the ``width x height`` image, ``slack`` pixels allowed for rounding."""
    for box in entry.boxes:
        x0, y0, x1, y1 = box.xyxy
        if x0 < -slack or y0 < -slack or x1 > width + slack or y1 > height + slack:
            shown = [round(v, 2) for v in box.bbox]
            raise DataError(f"{path}: {box.where}: box [x, y, w, h] = {shown} reaches outside the {width}x{height} "
                            f"image {rel}; fix or clip the box")
