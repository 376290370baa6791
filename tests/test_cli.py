"""The CLI in-process: working commands, and one-line errors with a non-zero exit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge.apps.overlay import blend_masks, mask_color
from hqsam_edge.cli import app
from tests.conftest import exif_rotated_jpeg, test_image

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(test_image(300, 400)).save(path)
    return path


def test_info_lists_backends_and_params():
    result = run("info", "--params")
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.stdout and "tensorrt" in result.stdout
    assert "| Light HQ-SAM | vit_tiny |" in result.stdout and "| HQ-SAM-H | vit_h |" in result.stdout
    assert "| backend | usable | detail |" in result.stdout


def test_predict_random_weights_writes_mask_and_overlay(image_file, tmp_path):
    out, ov = tmp_path / "mask.png", tmp_path / "overlay.png"
    result = run("predict", "--random-weights", "--image", image_file, "--box", "50,40,300,250",
                 "--box", "10,10,100,100", "--out", out, "--overlay", ov)
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out))
    assert mask.shape == (300, 400) and set(np.unique(mask)) <= {0, 255}
    drawn = np.asarray(Image.open(ov))
    assert drawn.shape == (300, 400, 3)
    assert "2 mask(s)" in result.stdout
    assert (drawn[0, 0] == drawn[0, -1]).all() and drawn[0, 0, 0] > 150 > drawn[0, 0, 1]  # the random-weights banner
    assert (drawn[40, 150] == mask_color(0)).all() and (drawn[100, 55] == mask_color(1)).all()  # box edges


def test_predict_points(image_file, tmp_path, make_checkpoint):
    out, ov = tmp_path / "m.png", tmp_path / "ov.png"
    result = run("predict", "--checkpoint", make_checkpoint("vit_tiny", "hq"), "--image", image_file,
                 "--point", "200,150", "--point", "20,20,0", "--out", out, "--overlay", ov)
    assert result.exit_code == 0, result.output
    assert out.exists()
    drawn = np.asarray(Image.open(ov)).astype(int)
    plain = blend_masks(np.asarray(Image.open(image_file)), np.asarray(Image.open(out))[None] > 0)
    assert drawn[150, 200, 1] > 150 > drawn[150, 200, 0] and drawn[20, 20, 0] > 150 > drawn[20, 20, 1]  # points
    assert (drawn[:6, 200:] == plain[:6, 200:]).all()  # a checkpoint: no random-weights banner


def test_predict_turns_a_photo_as_its_exif_says(tmp_path):
    out, ov = tmp_path / "m.png", tmp_path / "ov.png"
    result = run("predict", "--random-weights", "--image", exif_rotated_jpeg(tmp_path / "phone.jpg"),
                 "--box", "2,2,28,38", "--out", out, "--overlay", ov)
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out)).shape == (40, 30) and np.asarray(Image.open(ov)).shape == (40, 30, 3)


def test_bad_checkpoint(image_file, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 100)
    result = run("predict", "--checkpoint", bad, "--image", image_file, "--box", "1,1,50,50",
                 "--out", tmp_path / "m.png")
    assert_one_line_error(result, "cannot read checkpoint")
    assert not (tmp_path / "m.png").exists()


def test_wrong_backbone(image_file, tmp_path, make_checkpoint):
    result = run("predict", "--backbone", "vit_b", "--checkpoint", make_checkpoint("vit_tiny", "hq"),
                 "--image", image_file, "--box", "1,1,50,50", "--out", tmp_path / "m.png")
    assert_one_line_error(result, "use --backbone vit_tiny")


def test_unknown_backbone(image_file, tmp_path):
    result = run("predict", "--backbone", "vit_x", "--random-weights", "--image", image_file, "--box", "1,1,5,5",
                 "--out", tmp_path / "m.png")
    assert_one_line_error(result, "unknown backbone 'vit_x'")


def test_unreadable_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    result = run("predict", "--random-weights", "--image", bad, "--box", "1,1,50,50", "--out", tmp_path / "m.png")
    assert_one_line_error(result, "cannot read image")
    result = run("predict", "--random-weights", "--image", tmp_path / "none.png", "--box", "1,1,5,5", "--out",
                 tmp_path / "m.png")
    assert_one_line_error(result, "image not found")


def test_box_outside_image(image_file, tmp_path):
    result = run("predict", "--random-weights", "--image", image_file, "--box", "500,400,600,500",
                 "--out", tmp_path / "m.png")
    assert_one_line_error(result, "lies entirely outside the 400x300 image")
    assert not (tmp_path / "m.png").exists()


def test_bad_prompts_and_options(image_file, tmp_path):
    out = tmp_path / "m.png"
    assert_one_line_error(run("predict", "--random-weights", "--image", image_file, "--box", "1,2,3", "--out", out),
                          "a box takes 4 numbers")
    assert_one_line_error(run("predict", "--random-weights", "--image", image_file, "--point", "10,10,7", "--out", out),
                          "point label")
    assert_one_line_error(run("predict", "--random-weights", "--image", image_file, "--point", "900,10", "--out", out),
                          "outside the 400x300 image")
    assert_one_line_error(run("predict", "--image", image_file, "--box", "1,1,9,9", "--out", out),
                          "--random-weights")
    assert_one_line_error(run("predict", "--random-weights", "--image", image_file, "--box", "1,1,9,9",
                              "--out", tmp_path / "no" / "m.png"), "does not exist")
