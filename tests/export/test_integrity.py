"""Every file a manifest names has its size and sha256 recorded; opening checks them, warm from the verified
stamp, cold by reading every byte; a folder of an older hqsam-edge is refused until its files are recorded."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from hqsam_edge.digest import sha256_file
from hqsam_edge.errors import ArtifactError
from hqsam_edge.export import integrity
from hqsam_edge.export.manifest import Artifact, read_manifest
from hqsam_edge.pipeline.verify import verify_folder
from tests.conftest import external_data_graph


@pytest.fixture
def folder(tiny_folder, tmp_path):
    out = tmp_path / "hq_vit_tiny"
    manifest = read_manifest(tiny_folder)
    out.mkdir()
    for name in ("encoder.onnx", "decoder.onnx"):
        shutil.copyfile(tiny_folder / name, out / name)
    manifest.artifacts = [manifest.find("onnxruntime", "fp32")]
    manifest.write(out)
    return out


def count_hashes(monkeypatch) -> list[str]:
    calls: list[str] = []

    def counting(path, *a, **k):
        calls.append(os.path.basename(path))
        return sha256_file(path, *a, **k)

    monkeypatch.setattr(integrity, "sha256_file", counting)
    return calls


def test_export_records_every_file_and_stamps_them(tiny_folder):
    data = json.loads((tiny_folder / "manifest.json").read_text())
    assert set(data["files"]) >= {"encoder.onnx", "decoder.onnx"}
    for name in ("encoder.onnx", "decoder.onnx"):
        assert data["files"][name] == {"size": (tiny_folder / name).stat().st_size,
                                       "sha256": sha256_file(tiny_folder / name)}
    assert set(json.loads((tiny_folder / integrity.STAMP).read_text())["files"]) >= {"encoder.onnx", "decoder.onnx"}


def test_cold_check_reads_every_byte_and_warm_check_none(folder, monkeypatch):
    manifest = read_manifest(folder)
    calls = count_hashes(monkeypatch)
    manifest.check_files(folder, ["encoder.onnx", "decoder.onnx"])  # copies: other inodes, so cold
    assert sorted(calls) == ["decoder.onnx", "encoder.onnx"]
    calls.clear()
    manifest.check_files(folder, ["encoder.onnx", "decoder.onnx"])
    assert calls == []  # warm: a stat per file
    (folder / integrity.STAMP).unlink()
    manifest.check_files(folder, ["decoder.onnx"])
    assert calls == ["decoder.onnx"]


def test_a_byte_changed_in_place_with_its_time_set_back_is_found(folder):
    manifest = read_manifest(folder)
    manifest.check_files(folder, ["decoder.onnx"])  # stamped
    path = folder / "decoder.onnx"
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(before.st_size // 2)
        byte = f.read(1)
        f.seek(before.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime, same inode
    with pytest.raises(ArtifactError, match=r"decoder\.onnx is not the file manifest\.json records \(sha256 "
                                            r"[0-9a-f]{16}\.\.\., recorded [0-9a-f]{16}\.\.\. \(same size\)\)"):
        manifest.check_files(folder, ["decoder.onnx"])


def test_missing_and_unrecorded_files_are_refused(folder):
    manifest = read_manifest(folder)
    (folder / "decoder.onnx").rename(folder / "decoder.moved")
    with pytest.raises(ArtifactError, match=r"decoder\.onnx is missing \(manifest\.json records \d+ bytes\)"):
        manifest.check_files(folder, ["decoder.onnx"])
    with pytest.raises(ArtifactError, match=r"decoder\.moved has no size and sha256 .* verify .* --update"):
        manifest.check_files(folder, ["decoder.moved"])


def test_external_data_is_recorded_with_its_graph_and_checked(tmp_path):
    external_data_graph(tmp_path / "g.onnx")
    records = integrity.record(tmp_path, ["g.onnx"])
    assert records["g.onnx"]["external_data"] == ["g.onnx.data"] and set(records) == {"g.onnx", "g.onnx.data"}
    assert all(r.ok for r in integrity.check(tmp_path, records, ["g.onnx"]))
    data = (tmp_path / "g.onnx.data").read_bytes()
    (tmp_path / "g.onnx.data").unlink()  # replaced by other valid weights of the same size
    (tmp_path / "g.onnx.data").write_bytes(np.full(4 * 4, 2.0, np.float32).tobytes())
    assert len(data) == (tmp_path / "g.onnx.data").stat().st_size
    results = integrity.check(tmp_path, records, ["g.onnx"])
    assert [(r.name, r.status) for r in results] == [("g.onnx", "ok"), ("g.onnx.data", "changed")]


def test_an_older_folder_is_refused_until_verify_update_records_its_files(folder):
    data = json.loads((folder / "manifest.json").read_text())
    del data["files"]  # as an hqsam-edge before file records wrote it
    (folder / "manifest.json").write_text(json.dumps(data))
    manifest = read_manifest(folder)
    assert manifest.files is None
    with pytest.raises(ArtifactError, match=r"written by an older hqsam-edge .* `hqsam-edge verify .* --update`"):
        manifest.check_files(folder, ["encoder.onnx"])
    report = verify_folder(folder)
    assert [r.status for r in report.rows] == ["not recorded", "not recorded"]
    with pytest.raises(ArtifactError, match=r"2 of 2 files .* record them with `hqsam-edge verify .* --update`"):
        report.raise_for_problems()
    report = verify_folder(folder, update=True)
    assert [r.status for r in report.rows] == ["recorded", "recorded"]
    read_manifest(folder).check_files(folder, ["encoder.onnx", "decoder.onnx"])
    assert [r.status for r in verify_folder(folder).rows] == ["ok", "ok"]


def test_verify_update_never_rewrites_a_record(folder):
    manifest = read_manifest(folder)
    shutil.copyfile(folder / "decoder.onnx", folder / "encoder.fp16.onnx")  # a graph without a record
    manifest.add(Artifact("onnxruntime", "fp16", {"encoder": "encoder.fp16.onnx", "decoder": "decoder.onnx"}))
    manifest.write(folder)
    with open(folder / "decoder.onnx", "ab") as f:
        f.write(b"!")
    report = verify_folder(folder, update=True)
    assert {r.name: r.status for r in report.rows} == {"encoder.onnx": "ok", "decoder.onnx": "changed",
                                                       "encoder.fp16.onnx": "recorded"}
    with pytest.raises(ArtifactError, match=r"1 of 3 files .*decoder\.onnx \(changed\); copy the folder again"):
        report.raise_for_problems()


@pytest.mark.slow
def test_the_warm_check_of_a_vit_b_folder_costs_under_50_ms(tmp_path):
    """The must-show figure (benchmarks/RESULTS.md has the cold one beside it)."""
    import statistics
    import time

    from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

    folder = tmp_path / "hq_vit_b"
    export_artifacts(ExportSpec(backbone="vit_b", random_weights=True, out=str(folder), verify=False))
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        read_manifest(folder).check_files(folder, ["encoder.onnx", "decoder.onnx"])
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.050, times
