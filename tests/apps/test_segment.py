"""``hqsam-edge segment``: the streamed pipeline against the Predictor, failures, and resume after a kill.

The vit_tiny encoder costs about a second an image on two CPU cores, so the
20 images use four distinct pictures (two PNG, two JPEG) with different boxes
each: the reference needs four encodes, yet every mask differs.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge import owners
from hqsam_edge.cli import app
from hqsam_edge.apps import rle
from hqsam_edge.data.transforms import load_image
from hqsam_edge.errors import DataError, UsageError
from hqsam_edge.runtime.predictor import Predictor
from hqsam_edge.apps.segment import SegmentSpec, find_images, output_path, segment_images
from tests.conftest import exif_rotated_jpeg, test_image

N_IMAGES, H, W = 20, 120, 160


def image_name(i: int) -> str:
    return f"img_{i:02d}.{'png' if i % 4 < 2 else 'jpg'}"


def image_boxes(i: int) -> list[list[float]]:
    """Three COCO [x, y, w, h] boxes inside the 160x120 image, different for every image."""
    return [[5 + i, 8, 60, 50], [70, 10 + i, 80, 70], [20 + 2 * i, 40, 100, 70.5]]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """``imgs/`` with 20 images and ``coco.json`` with 3 annotated boxes each."""
    root = tmp_path_factory.mktemp("seg")
    (root / "imgs").mkdir()
    images, anns = [], []
    for i in range(N_IMAGES):
        Image.fromarray(test_image(H, W, seed=i % 4)).save(root / "imgs" / image_name(i), quality=90)
        images.append({"id": 100 + i, "file_name": image_name(i), "width": W, "height": H})
        anns += [{"id": 1000 + 3 * i + k, "image_id": 100 + i, "bbox": b, "category_id": 1 + k}
                 for k, b in enumerate(image_boxes(i))]
    data = {"images": images, "annotations": anns, "categories": [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)]}
    (root / "coco.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="module")
def predictor(tiny_folder):
    return Predictor.from_artifacts(tiny_folder, backend="onnxruntime", precision="fp32")


@pytest.fixture(scope="module")
def reference(dataset, predictor):
    """Image name -> (logits [3,H,W], scores [3]) from the Predictor, one encode per distinct picture."""
    out = {}
    for content in range(4):
        predictor.set_image(load_image(str(dataset / "imgs" / image_name(content))))
        for i in range(content, N_IMAGES, 4):
            xywh = np.array(image_boxes(i))
            logits, scores, _ = predictor.predict_boxes(np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]],
                                                        return_logits=True)
            out[image_name(i)] = (logits[:, 0], scores[:, 0])
    return out


def assert_matches_reference(entries, logits, scores):
    """Masks from RLE equal the Predictor's, up to pixels whose logit is within rounding of 0."""
    assert len(entries) == len(logits)
    for e, lg, s in zip(entries, logits, scores):
        mask = rle.rle_decode(e["segmentation"])
        assert e["segmentation"]["size"] == [H, W] and mask.any()
        differ = mask != (lg > 0)
        assert not differ.any() or np.abs(lg[differ]).max() < 1e-3, np.abs(lg[differ]).max()
        assert e["score"] == pytest.approx(float(s), abs=1e-5)
        assert e["area"] == int(mask.sum()) and e["bbox"] == rle.rle_bbox(e["segmentation"])


def listing(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# -- planning ---------------------------------------------------------------------


def test_find_images_root_and_relative_paths(tmp_path):
    for rel in ("a.png", "x/b.jpg", "x/y/c.png", "x/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    root, rels = find_images(str(tmp_path / "**" / "*.*g"))
    assert root == tmp_path and rels == ["a.png", "x/b.jpg", "x/y/c.png"]
    root, rels = find_images(str(tmp_path / "x" / "*"), exclude=tmp_path / "x" / "y")
    assert root == tmp_path / "x" and rels == ["b.jpg", "notes.txt"]
    assert find_images(str(tmp_path / "x" / "b.jpg")) == (tmp_path / "x", ["b.jpg"])
    with pytest.raises(UsageError, match="matches no files"):
        find_images(str(tmp_path / "*.tif"))
    assert output_path(Path("o"), "x/y/c.png") == Path("o/x/y/c.png.json")


# -- the pipeline in-process --------------------------------------------------------


def test_pipeline_matches_predictor_and_resumes(dataset, predictor, reference, tmp_path):
    boxes = write_json(tmp_path / "boxes.json", {image_name(0): image_boxes(0), image_name(2): image_boxes(2),
                                                  image_name(1): []})
    spec = SegmentSpec(images=str(dataset / "imgs" / "img_0[0-2].*"), boxes=str(boxes), out=str(tmp_path / "out"),
                       queue_size=1)
    summary = segment_images(spec, lambda: predictor)
    assert (summary.images, summary.segmented, summary.empty, summary.skipped, summary.masks) == (3, 2, 1, 0, 6)
    assert summary.busy["encode"] > 0 and "skipped 0 already done" in summary.line()
    out = tmp_path / "out"
    assert listing(out) == ["img_00.png.json", "img_01.png.json", "img_02.jpg.json", "results.json"]
    assert json.loads((out / "img_01.png.json").read_text()) == []  # no boxes: not encoded, empty result
    results = json.loads((out / "results.json").read_text())
    assert [(e["file_name"], e["image_id"], e["category_id"]) for e in results] == (
        [("img_00.png", 1, 1)] * 3 + [("img_02.jpg", 2, 1)] * 3)  # mapping files: ids in file order
    assert results[0]["prompt_bbox"] == image_boxes(0)[0] and "annotation_id" not in results[0]
    assert_matches_reference(results[:3], *reference[image_name(0)])
    assert_matches_reference(results[3:], *reference[image_name(2)])

    def no_model():
        raise AssertionError("a finished run must not open the model")

    again = segment_images(spec, no_model)
    assert (again.segmented, again.empty, again.skipped, again.total_masks) == (0, 0, 3, 6)
    assert json.loads((out / "results.json").read_text()) == results


def test_bad_image_stops_after_earlier_images_are_written(dataset, predictor, tmp_path):
    boxes = write_json(tmp_path / "b.json", {image_name(0): image_boxes(0), image_name(1): [[150, 0, 50, 50]]})
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"entry 'img_01.png' box 0: .* reaches outside the 160x120 image img_01.png"):
        segment_images(SegmentSpec(str(dataset / "imgs" / "img_0[01].*"), str(boxes), str(out), queue_size=1,
                                   on_error="stop"), lambda: predictor)
    assert listing(out) == ["img_00.png.json"]  # complete and valid; no temp files, no results.json
    assert len(json.loads((out / "img_00.png.json").read_text())) == 3


def test_failing_writer_stops_the_pipeline(predictor, tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "imgs" / "sub").mkdir(parents=True, exist_ok=True)
        Image.fromarray(test_image(H, W)).save(tmp_path / "imgs" / "sub" / name)
    boxes = write_json(tmp_path / "b.json", {f"sub/{n}": [[1, 1, 50, 50]] for n in ("b.png", "c.png")})
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the writer needs a folder")
    started = time.monotonic()
    with pytest.raises(UsageError, match="cannot write .*sub/a.png.json"):
        segment_images(SegmentSpec(str(tmp_path / "imgs" / "**" / "*.png"), str(boxes), str(out), queue_size=1),
                       lambda: predictor)
    assert time.monotonic() - started < 30
    assert listing(out) == ["sub"]


# -- the command line -------------------------------------------------------------


def test_cli_bad_boxes_file_is_one_line_and_writes_nothing(dataset, tiny_folder, tmp_path):
    runner = CliRunner()
    data = json.loads((dataset / "coco.json").read_text())
    data["annotations"][4]["bbox"] = [10, 10, 0, 5]
    bad = write_json(tmp_path / "bad.json", data)
    outside = json.loads((dataset / "coco.json").read_text())
    outside["annotations"][7]["bbox"] = [100, 100, 80, 10]  # width 160 (from the COCO file): checked up front
    outside = write_json(tmp_path / "outside.json", outside)
    unknown = json.loads((dataset / "coco.json").read_text())
    unknown["annotations"][2]["image_id"] = 999  # a broken file, not a bad box: stops even with --on-error skip
    unknown = write_json(tmp_path / "unknown.json", unknown)
    for boxes, fragment, on_error in [(bad, "annotations[4] (id 1004)", "stop"),
                                      (outside, "annotations[7] (id 1007)", "stop"),
                                      (unknown, "annotations[2] (id 1002): image_id 999", "skip")]:
        result = runner.invoke(app, ["segment", str(tiny_folder), "--images", str(dataset / "imgs" / "*"),
                                     "--boxes", str(boxes), "--out", str(tmp_path / "out"), "--backend", "onnxruntime",
                                     "--on-error", on_error])
        assert result.exit_code not in (0, 3), result.output
        err = result.stderr.strip()
        assert err.startswith(f"error: {boxes}: {fragment}") and len(err.splitlines()) == 1, err
        assert "Traceback" not in result.output
        assert not (tmp_path / "out").exists()


def test_segment_resumes_after_kill_and_loses_nothing(dataset, tiny_folder, reference, tmp_path):
    """The must-show: 20 images x 3 boxes; kill -9 midway; rerun; every mask there once, equal to the Predictor's."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hqsam_edge.cli", "segment", str(tiny_folder), "--images", str(dataset / "imgs" / "*"),
           "--boxes", str(dataset / "coco.json"), "--out", str(out), "--backend", "onnxruntime", "--precision", "fp32",
           "--queue-size", "1"]

    def written() -> list[Path]:
        return [p for p in out.glob("img_*.json")] if out.exists() else []

    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(written()) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    _, err = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, f"the first run ended by itself ({first.returncode}): {err}"
    done_before = len(written())
    assert 2 <= done_before < N_IMAGES - 1 and not (out / "results.json").exists()
    # what a kill can leave: a temp file; plus a truncated result (not ours: atomic writes never leave one)
    tag = f"{owners.MARK}{owners.realm()}-{first.pid}-1"  # the killed run's owner tag (start time: any other)
    (out / f".{image_name(19)}.json.{tag}.k1ll3d00.part").write_text('[{"image_id"')
    live = out / f".{image_name(18)}.json.{owners.tag()}.l1ve0000.part"  # a live process's temporary stays
    live.write_text('[{"image_id"')
    (out / f"{image_name(19)}.json").write_text('[{"image_id"')

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"skipped {done_before} already done" in second.stdout, second.stdout
    assert re.search(rf"segmented {N_IMAGES - done_before} image\(s\) \({3 * (N_IMAGES - done_before)} masks\)",
                     second.stdout), second.stdout

    assert live.exists()
    live.unlink()
    written = [f"{image_name(i)}.json" for i in range(N_IMAGES)]
    assert listing(out) == sorted(written + ["results.json", ".segment.json"])
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 3 * N_IMAGES
    for i in range(N_IMAGES):
        entries = json.loads((out / f"{image_name(i)}.json").read_text())
        assert entries == results[3 * i: 3 * i + 3]  # results.json: image order
        assert [(e["image_id"], e["annotation_id"], e["category_id"], e["file_name"]) for e in entries] == [
            (100 + i, 1000 + 3 * i + k, 1 + k, image_name(i)) for k in range(3)]
        assert [e["prompt_bbox"] for e in entries] == image_boxes(i)
        assert_matches_reference(entries, *reference[image_name(i)])

    from pycocotools import mask as coco_mask
    from pycocotools.coco import COCO

    gt = COCO(str(dataset / "coco.json"))
    loaded = gt.loadRes(str(out / "results.json"))  # the COCO tools accept the file as it is
    assert len(loaded.getAnnIds()) == 3 * N_IMAGES
    for e in results[::7]:
        ref = {"size": e["segmentation"]["size"], "counts": e["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(coco_mask.decode(ref).astype(bool), rle.rle_decode(e["segmentation"]))


def test_sigterm_stops_cleanly_and_says_what_it_kept(dataset, tiny_folder, tmp_path):
    """A job scheduler's SIGTERM: exit 143, one line naming what was kept, no temporary left; a rerun resumes."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hqsam_edge.cli", "segment", str(tiny_folder), "--images", str(dataset / "imgs" / "*"),
           "--boxes", str(dataset / "coco.json"), "--out", str(out), "--backend", "onnxruntime", "--precision", "fp32",
           "--queue-size", "1"]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(out.glob("img_*.json")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    lines = err.strip().splitlines()  # progress lines (`[ 1.2 s] ...`), then the one error line
    assert all(line.startswith("[") for line in lines[:-1]) and "Traceback" not in err, err
    err = lines[-1]
    kept = re.search(rf"^error: interrupted by SIGTERM: .*; kept the (\d+) image result\(s\) written in {out} "
                     r"\(run again to resume\)$", err.strip())
    assert kept and 1 <= int(kept[1]) < N_IMAGES, err
    assert not [p for p in out.rglob("*") if owners.MARK in p.name] and not (out / "results.json").exists()
    assert len(list(out.glob("img_*.json"))) == int(kept[1])


def test_resume_with_another_model_is_refused(dataset, predictor, tmp_path):
    from dataclasses import replace

    from hqsam_edge.errors import UsageError

    boxes = write_json(tmp_path / "boxes.json", {image_name(0): image_boxes(0)})
    spec = SegmentSpec(images=str(dataset / "imgs" / "img_00.*"), boxes=str(boxes), out=str(tmp_path / "out"),
                       model="build/hq_vit_tiny backend=onnxruntime precision=fp32")
    assert segment_images(spec, lambda: predictor).segmented == 1
    with pytest.raises(UsageError, match="holds masks from another model .*would mix them"):
        segment_images(replace(spec, model="build/hq_vit_b backend=onnxruntime precision=fp32"), lambda: predictor)
    assert segment_images(spec, lambda: predictor).skipped == 1  # the same model resumes


# -- bad images: --on-error skip | stop ------------------------------------------------


def bad_set(root: Path) -> tuple[Path, Path, Path]:
    """``root/imgs``: a.png and c.jpg good, b.jpg a JPEG cut in half, d.png a good picture whose box has no
    area, e.png one whose box reaches outside it, f.jpg text; -> (image folder, boxes of a-f, boxes of a-c)."""
    imgs = root / "imgs"
    imgs.mkdir()
    for name, seed in (("a.png", 0), ("b.jpg", 1), ("c.jpg", 2), ("d.png", 0), ("e.png", 0)):
        Image.fromarray(test_image(H, W, seed=seed)).save(imgs / name, quality=90)
    data = (imgs / "b.jpg").read_bytes()
    (imgs / "b.jpg").write_bytes(data[: len(data) // 2])
    (imgs / "f.jpg").write_text("not a picture")
    box = [[10, 10, 60, 50]]
    good = {"a.png": box, "b.jpg": box, "c.jpg": box}
    every = {**good, "d.png": [[10, 10, 0, 50]], "e.png": [[150, 0, 50, 50]], "f.jpg": box}
    return imgs, write_json(root / "all.json", every), write_json(root / "abc.json", good)


def test_cli_skips_bad_images_lists_them_and_exits_3(tiny_folder, tmp_path):
    """The must-show: a truncated JPEG (and other bad images) among good ones: the good ones written, the bad
    ones named in the summary, the progress notes and OUT/errors.json, exit code 3, no traceback; a rerun
    retries only the bad ones."""
    imgs, boxes, _ = bad_set(tmp_path)
    out = tmp_path / "out"
    args = ["segment", str(tiny_folder), "--images", str(imgs / "*"), "--boxes", str(boxes), "--out", str(out),
            "--backend", "onnxruntime", "--queue-size", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert re.search(r"segmented 2 image\(s\) \(2 masks\) .*; 4 image\(s\) skipped on errors "
                     rf"\(see {re.escape(str(out / 'errors.json'))}\); wrote .* \(2 masks, 2 images\)", result.stdout)
    errors = json.loads((out / "errors.json").read_text())
    assert [(e["file"], e["stage"]) for e in errors] == [("b.jpg", "read"), ("d.png", "boxes"), ("e.png", "boxes"),
                                                         ("f.jpg", "read")]
    assert errors[0]["error"].startswith(f"cannot read image {imgs / 'b.jpg'}: image file is truncated")
    assert "w and h must be > 0" in errors[1]["error"]
    assert "reaches outside the 160x120 image e.png" in errors[2]["error"]
    assert all("\n" not in e["error"] for e in errors)
    assert f"skipped b.jpg (read): cannot read image {imgs / 'b.jpg'}: image file is truncated" in result.stderr
    assert listing(out) == [".segment.json", "a.png.json", "c.jpg.json", "errors.json", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert [e["file_name"] for e in results] == ["a.png", "c.jpg"]

    Image.fromarray(test_image(H, W, seed=1)).save(imgs / "b.jpg", quality=90)  # fixed: the rerun segments it
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert "segmented 1 image(s)" in result.stdout and "skipped 2 already done" in result.stdout
    assert [e["file"] for e in json.loads((out / "errors.json").read_text())] == ["d.png", "e.png", "f.jpg"]
    assert [e["file_name"] for e in json.loads((out / "results.json").read_text())] == ["a.png", "b.jpg", "c.jpg"]

    result = CliRunner().invoke(app, [*args[:3], str(imgs / "[abc].*"), *args[4:]])  # no bad image left: exit 0
    assert result.exit_code == 0 and "skipped on errors" not in result.stdout, result.output
    assert not (out / "errors.json").exists() and len(json.loads((out / "results.json").read_text())) == 3


def test_cli_on_error_stop_ends_at_the_first_bad_image(tiny_folder, tmp_path):
    imgs, boxes, abc = bad_set(tmp_path)
    out = tmp_path / "out"
    args = ["segment", str(tiny_folder), "--images", str(imgs / "*"), "--out", str(out), "--backend", "onnxruntime",
            "--queue-size", "1", "--on-error", "stop"]
    result = CliRunner().invoke(app, [*args, "--boxes", str(abc)])
    assert result.exit_code == 1, result.output
    err = result.stderr.strip().splitlines()[-1]
    assert err.startswith(f"error: cannot read image {imgs / 'b.jpg'}: image file is truncated"), result.stderr
    assert "Traceback" not in result.output and "error:" not in "".join(result.stderr.strip().splitlines()[:-1])
    assert listing(out) == [".segment.json", "a.png.json"]  # kept for a resume; no results.json, no errors.json
    result = CliRunner().invoke(app, [*args, "--boxes", str(boxes)])  # a box with no area: refused before any work
    assert result.exit_code != 0 and "entry 'd.png' box 0" in result.stderr and "w and h must be > 0" in result.stderr
    result = CliRunner().invoke(app, [*args, "--boxes", str(abc), "--on-error", "later"])
    assert result.exit_code == 2 and "unknown --on-error value 'later'; choose one of: skip, stop" in result.stderr


def test_skip_never_swallows_a_model_failure(predictor, tmp_path, monkeypatch):
    imgs, _, abc = bad_set(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("the decoder broke")

    monkeypatch.setattr(predictor, "predict_boxes", broken)
    with pytest.raises(RuntimeError, match="the decoder broke"):
        segment_images(SegmentSpec(str(imgs / "*"), str(abc), str(tmp_path / "out")), lambda: predictor)
    assert not (tmp_path / "out" / "errors.json").exists()


# -- everything mode ------------------------------------------------------------------

# random weights: keep every mask
EVERYTHING = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


def test_everything_mode_writes_every_mask_and_resumes(dataset, predictor, tmp_path):
    """``--everything``: one COCO entry per mask of SamAutomaticMaskGenerator on each image, as the generator's
    records; a rerun redoes only what is missing; other generator options are refused on resume."""
    from dataclasses import replace

    from hqsam_edge import SamAutomaticMaskGenerator
    from hqsam_edge.apps.generator_options import GeneratorOptions

    options = GeneratorOptions(**EVERYTHING)
    spec = SegmentSpec(images=str(dataset / "imgs" / "img_0[0-2].*"), boxes=None, out=str(tmp_path / "out"),
                       queue_size=1, model="tiny", everything=options)
    summary = segment_images(spec, lambda: predictor)
    assert (summary.images, summary.segmented, summary.skipped) == (3, 3, 0) and summary.masks > 3
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    generator = SamAutomaticMaskGenerator(predictor, **EVERYTHING, output_mode="uncompressed_rle")
    for i in range(3):
        entries = [e for e in results if e["file_name"] == image_name(i)]
        records = generator.generate(load_image(str(dataset / "imgs" / image_name(i))))
        assert len(entries) == len(records) and {e["image_id"] for e in entries} == {i + 1}
        for e, r in zip(entries, records):
            mask = rle.rle_decode(e["segmentation"])
            assert np.array_equal(mask, rle.rle_decode(r["segmentation"]))
            assert e["score"] == pytest.approx(r["predicted_iou"]) and e["area"] == r["area"] == mask.sum()
            assert e["bbox"] == rle.rle_bbox(e["segmentation"]) and e["point_coords"] == r["point_coords"]
            assert e["stability_score"] == pytest.approx(r["stability_score"]) and e["crop_box"] == [0, 0, W, H]

    (out / f"{image_name(1)}.json").unlink()
    again = segment_images(spec, lambda: predictor)
    assert (again.segmented, again.skipped, again.total_masks) == (1, 2, len(results))
    assert json.loads((out / "results.json").read_text()) == results
    with pytest.raises(UsageError, match="another model .*points_per_side=4"):
        segment_images(replace(spec, everything=replace(options, points_per_side=4)), lambda: predictor)
    with pytest.raises(UsageError, match="--boxes FILE .* or --everything"):
        segment_images(replace(spec, boxes=str(dataset / "coco.json")), lambda: predictor)
    with pytest.raises(UsageError, match="a grid of 0 points"):
        segment_images(replace(spec, out=str(tmp_path / "o2"), everything=replace(options, points_per_side=0)),
                       lambda: predictor)
    assert not (tmp_path / "o2").exists()


def test_everything_mode_skips_bad_images(predictor, tmp_path):
    from hqsam_edge.apps.generator_options import GeneratorOptions

    imgs, _, _ = bad_set(tmp_path)
    spec = SegmentSpec(images=str(imgs / "[ab].*"), boxes=None, out=str(tmp_path / "out"), queue_size=1,
                       everything=GeneratorOptions(**EVERYTHING))
    summary = segment_images(spec, lambda: predictor)
    assert (summary.segmented, summary.skipped) == (1, 0)
    assert [(f.file, f.stage) for f in summary.failed] == [("b.jpg", "read")]
    assert summary.errors == tmp_path / "out" / "errors.json" and "1 image(s) skipped on errors" in summary.line()
    assert {e["file_name"] for e in json.loads((tmp_path / "out" / "results.json").read_text())} == {"a.png"}


def test_cli_everything(dataset, tiny_folder, tmp_path):
    runner = CliRunner()
    opts = [f"--{k.replace('_', '-')}={v}" for k, v in EVERYTHING.items()]
    image = dataset / "imgs" / image_name(0)
    result = runner.invoke(app, ["predict", str(tiny_folder), "--image", str(image), "--everything", *opts,
                                 "--overlay", str(tmp_path / "ov.png"), "--out", str(tmp_path / "labels.png"),
                                 "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(tmp_path / "labels.png"))
    n = int(re.search(r"(\d+) mask\(s\)", result.stdout).group(1))
    assert labels.shape == (H, W) and labels.max() <= n and n > 1 and "decoder" in result.stdout
    assert np.asarray(Image.open(tmp_path / "ov.png")).shape == (H, W, 3)

    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(tiny_folder), "--images", str(dataset / "imgs" / "img_00.*"),
                                 "--everything", *opts, "--out", str(out), "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "results.json").read_text())) == n

    for args, fragment in [(["--everything", "--box", "1,1,50,50"], "drop --box"),
                           (["--everything", "--points-per-side", "0"], "a grid of 0 points"),
                           (["--points-per-side", "4", "--out", str(tmp_path / "m.png")], "apply to --everything"),
                           (["--everything"], "--overlay"), (["--box", "1,1,50,50"], "give --out")]:
        result = runner.invoke(app, ["predict", str(tiny_folder), "--image", str(image), *args])
        assert result.exit_code != 0 and result.stderr.startswith("error: "), result.output
        assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr
    result = runner.invoke(app, ["segment", str(tiny_folder), "--images", str(image), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "--everything" in result.stderr and not (tmp_path / "o").exists()


def test_photos_are_turned_as_their_exif_says(predictor, tmp_path):
    """A phone photo stored 40x30 with EXIF orientation 6 is segmented as shown, 30 wide and 40 high: by
    ``segment`` with boxes (a box 34 high fits only the turned picture) and ``--everything``, and by
    ``predict --everything``."""
    from hqsam_edge.apps.files import everything_to_files
    from hqsam_edge.apps.generator_options import GeneratorOptions

    (tmp_path / "imgs").mkdir()
    photo = exif_rotated_jpeg(tmp_path / "imgs" / "phone.jpg")
    boxes = write_json(tmp_path / "boxes.json", {"phone.jpg": [[2, 2, 24, 34]]})
    pattern = str(tmp_path / "imgs" / "*.jpg")
    everything = GeneratorOptions(**EVERYTHING)
    for name, spec in [("boxes", SegmentSpec(pattern, str(boxes), str(tmp_path / "boxes"), queue_size=1)),
                       ("everything", SegmentSpec(pattern, None, str(tmp_path / "all"), queue_size=1,
                                                  everything=everything))]:
        assert segment_images(spec, lambda: predictor).masks >= 1, name
        entries = json.loads((Path(spec.out) / "results.json").read_text())
        assert entries and all(e["segmentation"]["size"] == [40, 30] for e in entries), name
    result = everything_to_files(predictor, photo, everything, out=tmp_path / "labels.png",
                                 overlay=tmp_path / "ov.png")
    assert np.asarray(Image.open(result.out)).shape == (40, 30)
    assert np.asarray(Image.open(result.overlay)).shape == (40, 30, 3)


# -- detector mode ----------------------------------------------------------------


def detector_graph(path: Path, rows: list[list[float]]) -> Path:
    """An end-to-end 'detector' ([1, K, 6] rows for a 64x64 input) whose answer is ``rows`` whatever the image."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    out = np.asarray([rows], np.float32)
    node = helper.make_node("Constant", [], ["dets"], value=numpy_helper.from_array(out))
    g = helper.make_graph([node], "det", [helper.make_tensor_value_info("images", TensorProto.FLOAT, (1, 3, 64, 64))],
                          [helper.make_tensor_value_info("dets", TensorProto.FLOAT, out.shape)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# In the 64x64 input a 160x120 image is scaled by 0.4 and padded 8 rows above: input (x, y) = (0.4 X, 0.4 Y + 8).
DETECTOR_ROWS = [[8, 12, 40, 40, 0.9, 0], [20, 20, 50, 50, 0.8, 2], [4, 10, 30, 30, 0.2, 0], [30, 20, 60, 50, 0.7, 1]]
DETECTED = {0: [20, 10, 100, 80], 2: [50, 30, 125, 105]}  # the kept rows (classes 0 and 2, score >= 0.5), in pixels


def test_segment_with_a_detector_matches_the_predictor_and_resumes(dataset, predictor, tiny_folder, tmp_path):
    """``segment --detector``: the detector's boxes (class filter, score threshold, mapped back to the image)
    prompt the model; entries carry the detector's class and score; a rerun resumes, one with other detector
    options is refused."""
    det = detector_graph(tmp_path / "det.onnx", DETECTOR_ROWS)
    out = tmp_path / "out"
    images = str(dataset / "imgs" / "img_0[0-2].*")
    args = ["segment", str(tiny_folder), "--images", images, "--detector", str(det), "--detector-classes", "0,2",
            "--detector-score", "0.5", "--out", str(out), "--backend", "onnxruntime"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "segmented 3 image(s) (6 masks)" in result.stdout
    entries = json.loads((out / "results.json").read_text())
    assert [(e["image_id"], e["file_name"], e["category_id"]) for e in entries] == [
        (i + 1, image_name(i), c) for i in range(3) for c in (0, 2)]
    for e in entries:
        x0, y0, x1, y1 = DETECTED[e["category_id"]]
        assert e["prompt_bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=1e-3)
        assert e["score"] == pytest.approx(0.9 if e["category_id"] == 0 else 0.8)
    predictor.set_image(load_image(str(dataset / "imgs" / image_name(1))))
    logits, scores, _ = predictor.predict_boxes(np.array([DETECTED[0], DETECTED[2]], np.float64), return_logits=True)
    assert_matches_reference([{**e, "score": e["mask_score"]} for e in entries[2:4]], logits[:, 0], scores[:, 0])

    output_path(out, image_name(2)).unlink()  # as if killed before the last image was written
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "segmented 1 image(s) (2 masks)" in result.stdout, result.output
    assert "skipped 2 already done" in result.stdout
    assert json.loads((out / "results.json").read_text()) == entries

    result = CliRunner().invoke(app, [a if a != "0.5" else "0.3" for a in args])
    assert result.exit_code != 0 and "holds masks from another model" in result.stderr, result.output
    assert "detector: det.onnx sha256=" in result.stderr and "score>=0.5" in result.stderr


def test_segment_detector_mode_is_one_of_three(dataset, tmp_path):
    det = detector_graph(tmp_path / "det.onnx", DETECTOR_ROWS)
    spec = SegmentSpec(images=str(dataset / "imgs" / "*.png"), boxes=str(dataset / "coco.json"), out=str(tmp_path),
                       detector=str(det))
    with pytest.raises(UsageError, match="or --detector D.onnx .a detector's boxes., one of them"):
        segment_images(spec, lambda: None)
