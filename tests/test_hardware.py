"""Platform detection: this machine reported honestly; Jetson and RTX boxes read from the files they really have.

No Jetson exists here, so the Jetson cases lay out a root folder holding the
files a board has (device-tree model, ``nv_tegra_release``, CUDA's
``version.json``), in the exact forms JetPack writes them, and answer the two
tools we call (``nvpmodel -q``, ``nvidia-smi``) with their real output.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from hqsam_edge import hardware as hw
from hqsam_edge.cli import app
from tests.conftest import table_rows


def board(tmp_path, *, model: str | None, release: str | None, cuda: str | None = "12.6.68"):
    root = tmp_path / "root"
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "proc/meminfo").write_text("MemTotal:       64335836 kB\nMemFree:        1000 kB\n")
    (root / "proc/cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 62.50\nCPU implementer\t: 0x41\n")
    if model is not None:
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if release is not None:
        (root / "etc/nv_tegra_release").write_text(release)
    if cuda is not None:
        (root / "usr/local/cuda").mkdir(parents=True)
        (root / "usr/local/cuda/version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": cuda}}))
    return root


def tools(outputs: dict[str, str]):
    def run(cmd):
        return outputs.get(cmd[0])
    return run


NVPMODEL_MAXN = "NV Power Mode: MAXN\n0\n"
NVPMODEL_15W_WARN = "NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n"
R36_4_3 = ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
           "DATE: Wed Jan  8 01:49:37 UTC 2025\n")


def test_jetson_agx_orin_jetpack_62(tmp_path):
    root = board(tmp_path, model="NVIDIA Jetson AGX Orin Developer Kit", release=R36_4_3)
    p = hw.detect_platform(root, tools({"nvpmodel": NVPMODEL_MAXN}), probe_python=False)
    assert p.is_jetson and p.unified_memory
    assert (p.jetson_model, p.l4t, p.jetpack, p.power_mode) == (
        "NVIDIA Jetson AGX Orin Developer Kit", "36.4.3", "6.2", "MAXN (mode 0)")
    assert p.cuda_toolkit == "12.6.68" and p.memory_gib == pytest.approx(61.4, abs=0.1)
    assert p.gpu == "Jetson AGX Orin Developer Kit integrated GPU"
    assert "JetPack 6.2" in p.summary() and "MAXN" in p.summary()
    rows = dict(p.rows())
    assert rows["l4t / jetpack"] == "L4T 36.4.3 / JetPack 6.2" and "unified" in rows["memory"]


def test_jetson_orin_nano_jetpack_60_with_nvpmodel_warnings(tmp_path):
    release = ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, "
               "DATE: Mon May  6 17:34:21 UTC 2024\n")
    root = board(tmp_path, model="NVIDIA Jetson Orin Nano Developer Kit", release=release, cuda=None)
    p = hw.detect_platform(root, tools({"nvpmodel": NVPMODEL_15W_WARN}), probe_python=False)
    assert (p.l4t, p.jetpack, p.power_mode, p.cuda_toolkit) == ("36.3.0", "6.0", "15W (mode 2)", "")
    assert hw.tensorrt_for_jetpack(p.jetpack) == "8.6"


def test_jetpack5_cuda_version_txt_and_unknown_future_release(tmp_path):
    root = board(tmp_path, model="NVIDIA Orin NX Developer Kit", cuda=None,
                 release="# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
                         "DATE: Tue Aug  1 19:57:35 UTC 2023\n")
    (root / "usr/local/cuda").mkdir(parents=True)
    (root / "usr/local/cuda/version.txt").write_text("CUDA Version 11.4.315\n")
    p = hw.detect_platform(root, tools({}), probe_python=False)
    assert (p.l4t, p.jetpack, p.cuda_toolkit, p.power_mode) == ("35.4.1", "5.1.2", "11.4.315", "")
    assert any("nvpmodel" in n for n in p.notes)  # no power mode: said, not guessed
    assert hw.tensorrt_for_jetpack("5.1.2") == "8.5"

    (root / "etc/nv_tegra_release").write_text(R36_4_3.replace("R36", "R41"))
    p = hw.detect_platform(root, tools({}), probe_python=False)
    assert p.l4t == "41.4.3" and p.jetpack == "" and any("newer than this hqsam-edge knows" in n for n in p.notes)
    assert "JetPack" not in p.summary() and "L4T 41.4.3" in p.summary()


def test_rtx_workstation_from_nvidia_smi(tmp_path):
    root = board(tmp_path, model=None, release=None, cuda="12.8.93")
    smi = "NVIDIA GeForce RTX 4090, 570.86.15, 8.9\n"
    p = hw.detect_platform(root, tools({"nvidia-smi": smi}), probe_python=False)
    assert not p.is_jetson and not p.unified_memory
    assert (p.gpu, p.gpu_driver, p.compute_capability, p.cuda_toolkit) == (
        "NVIDIA GeForce RTX 4090", "570.86.15", "8.9", "12.8.93")
    assert "RTX 4090 (compute capability 8.9), driver 570.86.15" in dict(p.rows())["gpu"]


def test_parsers_reject_what_they_do_not_know():
    assert hw.parse_l4t("garbage") == "" and hw.parse_power_mode("nothing here") == ""
    assert hw.jetpack_for("36.4") == "6.1"  # two-part revision padded
    assert hw.tensorrt_for_jetpack("9.9") == ""


def test_this_machine_is_reported_honestly():
    """The dev/CI box: no Jetson files, no NVIDIA driver, no TensorRT -- each said with its reason."""
    p = hw.detect_platform()
    if shutil.which("nvidia-smi") or hw.Path("/proc/driver/nvidia").exists():
        pytest.skip("this machine has an NVIDIA driver; the no-GPU report is checked on the CPU machines")
    assert not p.is_jetson and p.gpu == "" and p.cpu_count >= 1 and p.memory_gib > 0
    assert any(n.startswith("no NVIDIA GPU: no NVIDIA driver loaded") for n in p.notes)
    if hw.module_version("tensorrt") is None:
        assert p.tensorrt == "" and any("TensorRT" in n and "not installed" in n for n in p.notes)

    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    lines = {row[0]: row[1] for row in rows if len(row) == 2}
    assert lines["gpu"] == "none" and lines["jetson"] == "no" and lines["architecture"].startswith(p.arch)
    assert "no NVIDIA driver loaded" in result.stdout and ["tensorrt", "no"] in [row[:2] for row in rows]


def test_platform_is_recorded_in_the_manifest(tiny_folder):
    from hqsam_edge.export.manifest import read_manifest

    recorded = read_manifest(tiny_folder).platform
    here = hw.this_platform()
    assert recorded["arch"] == here.arch and recorded["cpu_count"] == here.cpu_count
    assert recorded["jetpack"] == here.jetpack and recorded["gpu"] == here.gpu


def test_jetpack_tensorrt_table_and_the_floor(tmp_path, monkeypatch):
    """JetPack 5.0.x ships TensorRT 8.4, below the 8.5 floor: the platform says so; 7.0 / 7.1 carry 10.13 and
    7.2 (L4T 39.2) 10.16."""
    assert [hw.tensorrt_for_jetpack(j) for j in ("5.0.2", "5.1.3", "6.0", "6.2.1", "7.0", "7.1", "7.2")] == [
        "8.4", "8.5", "8.6", "10.3", "10.13", "10.13", "10.16"]
    assert hw.jetpack_for("39.2.0") == "7.2" and hw.jetpack_for("39.2.2") == "7.2"  # a patch release: its series
    assert hw.jetpack_for("36.4.2") == "6.1" and hw.jetpack_for("41.0.0") == "" and hw.jetpack_for("35.0.9") == ""
    release = ("# R35 (release), REVISION: 1.0, GCID: 31346300, BOARD: t186ref, EABI: aarch64, "
               "DATE: Thu Aug 25 18:41:45 UTC 2022\n")
    root = board(tmp_path, model="NVIDIA Jetson AGX Orin Developer Kit", release=release, cuda=None)
    monkeypatch.setattr(hw, "module_version", lambda name: None)  # no TensorRT module here either way
    p = hw.detect_platform(root, tools({}), probe_python=True)
    assert p.jetpack == "5.0.2"
    assert any("TensorRT 8.4, older than the 8.6 hqsam-edge needs: upgrade to JetPack 6.0" in n for n in p.notes)


def test_older_and_unlisted_l4t_releases_are_named_as_such(tmp_path):
    """L4T 32 (JetPack 4) and 34 (the JetPack 5.0 previews) are older than hqsam-edge supports, not "newer"; an
    L4T 36 release the table lacks is said to be one."""
    assert hw.jetpack_for("32.7.1") == "4.6.1" and hw.jetpack_for("34.1.1") == "5.0.1 DP"
    assert hw.tensorrt_for_jetpack("4.6.1") == "8.2" and hw.tensorrt_for_jetpack("5.0.1 DP") == "8.4"
    assert hw.jetpack_for("36.4.7") == "6.2.1"  # a patch release of a listed series
    for release, note in (("# R32 (release), REVISION: 7.1, GCID: 1", "L4T 32.7.1"),
                          ("# R36 (release), REVISION: 5.0, GCID: 1", "L4T 36.5.0 (JetPack 6.x) is not in"),
                          ("# R31 (release), REVISION: 1.0, GCID: 1", "L4T 31.1.0 is older than")):
        root = board(tmp_path / release[3:5], model="NVIDIA Jetson AGX Orin Developer Kit", release=release + "\n")
        p = hw.detect_platform(root, tools({}), probe_python=False)
        assert not any("newer than this hqsam-edge knows" in n for n in p.notes), p.notes
        if p.jetpack:
            assert p.jetpack == "4.6.1"
        else:
            assert any(note in n for n in p.notes), p.notes


def test_dla_support_follows_nvidias_matrix():
    assert hw.dla_refusal("10.3.0", "NVIDIA Jetson AGX Orin Developer Kit", "6.2") == ""
    assert hw.dla_refusal("8.6.2", "NVIDIA Jetson Orin NX Engine", "6.0") == ""
    assert "no DLA support (10.7 was the last" in hw.dla_refusal("10.8.0")
    assert "no DLA support" in hw.dla_refusal("10.16.0") and "no DLA support" in hw.dla_refusal("11.4.0")
    assert hw.dla_refusal("11.4.1", "NVIDIA Jetson AGX Orin Developer Kit", "7.2.2") == ""
    assert "AGX Orin only, not on NVIDIA Jetson Orin NX" in hw.dla_refusal("11.4.1", "NVIDIA Jetson Orin NX", "7.2.2")
    assert "JetPack 7.2.2 or later, not 7.2" in hw.dla_refusal("11.4.1", "NVIDIA Jetson AGX Orin", "7.2")
    assert "Orin Nano" in hw.dla_refusal("10.3.0", "NVIDIA Jetson Orin Nano Developer Kit", "6.2")


def test_u8s8_saturation_follows_the_cpu_flags(tmp_path):
    """x86 without VNNI multiplies uint8 x int8 with VPMADDUBSW (int16 pair sums that saturate); VNNI and ARM's dot
    products accumulate in int32. Read from the CPU's flags (x86 ``flags``, ARM ``Features``)."""
    proc = tmp_path / "proc"
    proc.mkdir()
    cpuinfo = proc / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n")
    assert {"avx2", "avx512_vnni"} <= hw.cpu_flags(tmp_path)
    assert not hw.u8s8_saturates(tmp_path, machine="x86_64")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx_vnni\n")
    assert not hw.u8s8_saturates(tmp_path, machine="x86_64")  # Alder Lake and later: AVX-VNNI
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert hw.u8s8_saturates(tmp_path, machine="x86_64")
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert hw.cpu_flags(tmp_path) == {"fp", "asimd", "asimddp"}
    assert not hw.u8s8_saturates(tmp_path, machine="aarch64")
    assert hw.cpu_flags(tmp_path / "none") == set()
