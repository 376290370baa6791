"""``segment --shard K/N`` and ``hqsam-edge merge``: shards run at once on one OUT, merged, equal one run byte for
byte; the shard from SLURM / Kubernetes variables; a missing shard refused; a shard resumed; the run record
created by one shard only."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge.apps.segment import SegmentSpec, merge_shards, segment_images
from hqsam_edge.apps.segment.results import RUN_NAME, record_model
from hqsam_edge.apps.shards import SHARDS_ENV, Shard, choose_shard, parse_shard, shard_from_env, shard_of
from hqsam_edge.cli import app
from hqsam_edge.errors import DataError, UsageError
from hqsam_edge.runtime.predictor import Predictor
from tests.conftest import test_image

H, W = 48, 64
# by sha256 of the path, of 3 shards: 0 <- img_01, img_02, empty; 1 <- img_00, sub/img_07; 2 <- img_03, sub/img_06, bad
SEGMENTED = ["img_00.png", "img_01.png", "img_02.png", "img_03.png", "sub/img_06.jpg", "sub/img_07.jpg"]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def files(out: Path) -> dict[str, bytes]:
    """Every file of OUT but the shards' records, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".shards" not in p.parts}


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    """6 images with 2 boxes each, one without boxes, one that is not an image; a boxes mapping."""
    root = tmp_path_factory.mktemp("shards")
    imgs = root / "imgs"
    (imgs / "sub").mkdir(parents=True)
    boxes = {}
    for i, rel in enumerate(SEGMENTED):
        Image.fromarray(test_image(H, W, seed=i)).save(imgs / rel, quality=90)
        boxes[rel] = [[2 + i, 3, 30, 20], [20, 10 + i, 40, 30]]
    Image.fromarray(test_image(H, W, seed=9)).save(imgs / "empty.png")
    (imgs / "bad.png").write_bytes(b"not a png")
    boxes["bad.png"] = [[1, 1, 5, 5]]
    return imgs, write_json(root / "boxes.json", boxes)


def model_line(folder: Path) -> str:
    """What the command line records as the model (``ModelChoice.describe``) for the test's folder."""
    from hqsam_edge.runtime.choice import ModelChoice

    return ModelChoice(folder=folder, backend="onnxruntime", precision="fp32").describe()


def opener(folder: Path):
    return lambda: Predictor.from_artifacts(folder, backend="onnxruntime", precision="fp32")


# -- which shard ----------------------------------------------------------------------


def test_shard_parsing_and_the_split():
    assert parse_shard("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4" and Shard(2, 4).label == "2-of-4"
    for bad in ("4/4", "-1/4", "1-4", "a/4", "1/0", "1/"):
        with pytest.raises(UsageError, match="K/N|does not exist"):
            parse_shard(bad)
    # stable: pinned values (sha256, never Python's hash), and a name's shard does not depend on the set
    assert (shard_of("a.jpg", 4), shard_of("val/000000000139.jpg", 8)) == (2, 7)
    names = [f"{i:06d}.jpg" for i in range(4000)]
    counts = [sum(shard_of(n, 4) == k for n in names) for k in range(4)]
    assert all(900 < c < 1100 for c in counts), counts
    assert [shard_of(n, 4) for n in names[:100]] == [shard_of(n, 4) for n in (names + ["new.jpg"])[:100]]


def test_shard_from_slurm_and_kubernetes_variables():
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "6",
             "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(slurm) == Shard(2, 4)  # --array=3-6: task 5 is the third
    stepped = {"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "16",
               "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(stepped) == Shard(2, 4)  # --array=10-16:2
    with pytest.raises(UsageError, match="not one range"):
        shard_from_env({**slurm, "SLURM_ARRAY_TASK_MAX": "9"})  # --array=3,4,5,9
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_COUNT is not"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0"})
    assert shard_from_env({"JOB_COMPLETION_INDEX": "3", SHARDS_ENV: "8"}) == Shard(3, 8)
    with pytest.raises(UsageError, match=f"{SHARDS_ENV} is not"):
        shard_from_env({"JOB_COMPLETION_INDEX": "3"})
    with pytest.raises(UsageError, match="not a whole number"):
        shard_from_env({"JOB_COMPLETION_INDEX": "x", SHARDS_ENV: "8"})
    with pytest.raises(UsageError, match="does not exist"):
        shard_from_env({"JOB_COMPLETION_INDEX": "8", SHARDS_ENV: "8"})
    assert shard_from_env({}) is None and choose_shard(None, {}) is None
    assert choose_shard(Shard(0, 1), slurm) is None  # --shard 0/1: the whole set, whatever the environment
    assert choose_shard(Shard(1, 2), slurm) == Shard(1, 2)  # --shard wins


def test_the_run_record_is_created_by_one_of_racing_shards(tmp_path):
    """Shards starting at once with different models: exactly one records its model, the others are refused."""
    for round_ in range(10):
        out = tmp_path / str(round_)
        out.mkdir()
        gate = threading.Barrier(4)
        refused: list[str] = []

        def start(model: str) -> None:
            gate.wait()
            try:
                record_model(out, model)
            except UsageError:
                refused.append(model)

        threads = [threading.Thread(target=start, args=(f"model {k}",)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recorded = json.loads((out / RUN_NAME).read_text())["model"]
        assert sorted(refused + [recorded]) == [f"model {k}" for k in range(4)]
        assert [p.name for p in out.iterdir()] == [RUN_NAME]  # no temporary left


# -- shards in parallel, merged ------------------------------------------------------


def test_shards_in_parallel_merge_to_one_run_byte_for_byte(image_set, tiny_folder, tmp_path):
    imgs, boxes = image_set
    spec = SegmentSpec(images=str(imgs / "**" / "*.*g"), boxes=str(boxes), out=str(tmp_path / "one"), queue_size=1,
                       model=model_line(tiny_folder))  # as the command line records it: the CLI resumes below
    one = segment_images(spec, opener(tiny_folder))
    assert (one.segmented, one.empty, len(one.failed)) == (6, 1, 1)

    out = tmp_path / "sharded"
    summaries = {}

    def run(k: int) -> None:
        summaries[k] = segment_images(replace(spec, out=str(out), shard=Shard(k, 3)), opener(tiny_folder))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(summaries) == [0, 1, 2]
    assert [(s.images, s.segmented, s.empty, len(s.failed)) for s in (summaries[k] for k in range(3))] == [
        (3, 2, 1, 0), (2, 2, 0, 0), (3, 2, 0, 1)]
    line = summaries[2].line()
    assert line.startswith("shard 2/3: segmented 2 image(s)") and f"hqsam-edge merge {out}" in line
    assert not (out / "results.json").exists() and not (out / "errors.json").exists()
    assert sorted(p.name for p in (out / ".shards").iterdir()) == ["0-of-3.json", "1-of-3.json", "2-of-3.json"]

    merged = merge_shards(out)
    assert (merged.shards, merged.images, len(merged.failed)) == (3, 8, 1) and merged.masks == one.total_masks
    assert files(out) == files(tmp_path / "one")  # per-image files, results.json, errors.json, .segment.json

    # a shard killed before its end: its record gone, one of its images missing; the merge names it
    (out / ".shards" / "1-of-3.json").unlink()
    (out / "sub" / "img_07.jpg.json").unlink()
    with pytest.raises(DataError, match=r"^1 of 3 shards have not finished in .*: 1/3 \(no record"):
        merge_shards(out)
    result = CliRunner().invoke(app, ["merge", str(out)])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert result.stderr.startswith("error: 1 of 3 shards have not finished") and "1/3" in result.stderr

    # resumed from a Kubernetes Indexed Job's variables: only the missing image is segmented
    args = ["segment", str(tiny_folder), "--images", spec.images, "--boxes", str(boxes), "--out", str(out),
            "--backend", "onnxruntime", "--precision", "fp32"]
    result = CliRunner().invoke(app, args, env={"JOB_COMPLETION_INDEX": "1", SHARDS_ENV: "3"})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("shard 1/3: segmented 1 image(s) (2 masks)")
    assert "skipped 1 already" in result.stdout
    result = CliRunner().invoke(app, ["merge", str(out)])
    assert result.exit_code == 3 and "merged 3 shards" in result.stdout and "1 image(s) left out" in result.stdout
    assert files(out) == files(tmp_path / "one")


def test_merge_refuses_shards_of_other_sets_or_splits(tmp_path):
    """Cheap runs (images without boxes open no model): a shard run over a changed set, or records of two
    splits, are refused with what to do."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (imgs / name).write_bytes(b"")
    boxes = write_json(tmp_path / "boxes.json", {})
    out = tmp_path / "out"
    spec = SegmentSpec(images=str(imgs / "*.png"), boxes=str(boxes), out=str(out))

    def no_model():
        raise AssertionError("no image needs the model")

    with pytest.raises(UsageError, match="holds no shard records"):
        merge_shards(out.parent)
    segment_images(replace(spec, shard=Shard(0, 2)), no_model)
    (imgs / "e.png").write_bytes(b"")  # the set grows between the two shards' runs
    segment_images(replace(spec, shard=Shard(1, 2)), no_model)
    with pytest.raises(DataError, match="different image sets .*run every shard again"):
        merge_shards(out)
    segment_images(replace(spec, shard=Shard(0, 2)), no_model)
    assert merge_shards(out).images == 5 and json.loads((out / "results.json").read_text()) == []
    segment_images(replace(spec, shard=Shard(2, 3)), no_model)
    with pytest.raises(UsageError, match=r"different numbers of shards: 2 \(2 records\), 3 \(1 records\)"):
        merge_shards(out)
