"""Every command in docs/deploy-jetson.md and docs/deploy-rtx.md, run as written.

Each guide runs in a folder holding what its reader has at hand: the official
checkpoint file (random weights in the official format), a folder of
calibration pictures and a picture to segment. `hqsam-edge` lines run
in-process through the CLI; TensorRT lines must either work (a machine with
TensorRT and a GPU) or end with the one-line "not usable here" error the
guides list, and their `--print-trtexec` form must print the trtexec lines.
Other lines (apt, pip, nvpmodel, rsync) are system steps, not run: the test
checks each starts with a tool the guides mean to show, so a typo'd
`hqsam-edge` line cannot hide among them.

The RTX guide is written for `vit_l`; the fast suite runs it with `vit_tiny`
in its place (same commands and options), `-m slow` runs it verbatim.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from hqsam_edge.cli import app
from hqsam_edge.runtime.environment import tensorrt_status
from tests.conftest import test_image

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = ("deploy-jetson.md", "deploy-rtx.md")
SYSTEM_STEPS = ("sudo ", "python3 -m venv ", ". ", "export ", "pip install ", "cd ", "rsync ", "nvidia-smi ")


def bash_lines(guide: str) -> list[str]:
    text = (DOCS / guide).read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [ln.strip() for block in blocks for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def failure_messages(guide: str) -> list[str]:
    """The backticked message that opens each item of the guide's failure-mode list."""
    text = (DOCS / guide).read_text()
    section = text[text.index("ailure modes"):]
    return re.findall(r"^- `([^`]+)`", section, re.M)


def source_text() -> str:
    root = Path(__file__).resolve().parents[2] / "hqsam_edge"
    return "\n".join(p.read_text() for p in root.rglob("*.py"))


def setup_reader_folder(folder: Path, make_checkpoint, backbones: set[str]) -> None:
    (folder / "calib").mkdir()
    for i in range(6):  # four to calibrate, the last two held out for the check
        Image.fromarray(test_image(240, 320, seed=10 + i)).save(folder / "calib" / f"photo{i}.jpg", quality=92)
    Image.fromarray(test_image(300, 400, seed=3)).save(folder / "scene.jpg", quality=92)
    (folder / "checkpoints").mkdir()
    for backbone in backbones:
        path = make_checkpoint(backbone, "hq")
        shutil.copy(path, folder / f"sam_hq_{backbone}.pth")
        shutil.copy(path, folder / "checkpoints" / f"sam_hq_{backbone}.pth")


def check_command(line: str, trt_usable: bool) -> None:
    args = shlex.split(line)[1:]
    result = CliRunner().invoke(app, args)
    err = result.stderr.strip()
    where = f"`{line}`: exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output, where
    if result.exit_code != 0:  # a failure must be one of the expected ones, and one line after the progress lines
        lines = err.splitlines()
        assert all(line.startswith("[") for line in lines[:-1]) and lines[-1].startswith("error: "), where
        err = lines[-1]
    command = args[0]
    tensorrt = "--backend" in args and args[args.index("--backend") + 1] == "tensorrt"
    if "--print-trtexec" in args:
        assert result.exit_code == 0, where
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 2 and all(ln.startswith("trtexec --onnx=") and "--saveEngine=" in ln for ln in lines)
        generation = args[args.index("--print-trtexec") + 1]
        encoder, decoder = (ln.split() for ln in lines)
        if "--dla-core" in args:  # the encoder on the DLA, weakly typed FP16; the dynamic decoder on the GPU
            assert "--allowGPUFallback" in encoder and "--fp16" in encoder, where
            assert not any(a.startswith("--useDLACore") for a in decoder), where
        elif "fp16" in args and generation == "8":
            assert all("--fp16" in ln and "--precisionConstraints=obey" in ln for ln in (encoder, decoder)), where
        elif "fp16" in args and generation == "10":
            assert all("--stronglyTyped" in ln for ln in (encoder, decoder)), where
        if "int8" in args and generation in ("8", "10"):
            assert "--int8" in encoder and "--int8" not in decoder, where
        return
    if command == "download":  # the hub is out of reach from the test machines
        assert result.exit_code == 0 or "cannot download" in err, where
        return
    if tensorrt and not trt_usable and command in ("build", "predict"):
        assert result.exit_code != 0 and "tensorrt is not usable here" in err, where
        return
    if tensorrt and not trt_usable and command == "triton":  # no engines were built here to serve
        assert result.exit_code != 0 and "TensorRT engines" in err and "--backend tensorrt" in err, where
        return
    if tensorrt and not trt_usable and command == "bench":
        assert result.exit_code == 0 and "not run:" in result.stdout, where
        return
    if command == "build" and "int8" in args and result.exit_code != 0:
        assert "short by" in err, where  # random weights: the INT8 check refuses, saying by how much
        return
    assert result.exit_code == 0, where


def export_key(line: str) -> str:
    """An ``export`` line with its checkpoint path replaced by the file's sha256: lines with the same key make the
    same folder (the guides name the same checkpoint at different paths)."""
    args = shlex.split(line)
    i = args.index("--checkpoint") + 1
    args[i] = hashlib.sha256(Path(args[i]).read_bytes()).hexdigest()
    return " ".join(args)


@dataclass(frozen=True)
class Exports:
    """Export key -> the folder that line made, as it was right after it (kept under ``cache``)."""

    cache: Path
    made: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("guide_exports"))


def run_export(line: str, trt_usable: bool, exports: Exports) -> None:
    """Run an ``export`` line, or, when another guide ran the same export in this module, copy what it made (the
    vit_tiny export with its verification is the slowest line of both guides)."""
    args = shlex.split(line)
    key, out = export_key(line), Path(args[args.index("--out") + 1])
    if key in exports.made:
        shutil.copytree(exports.made[key], out)
        return
    check_command(line, trt_usable)
    exports.made[key] = exports.cache / f"export{len(exports.made)}" / out.name
    shutil.copytree(out, exports.made[key])


def run_guide(guide: str, folder: Path, monkeypatch, substitute: dict[str, str] | None = None,
              exports: Exports | None = None) -> list[str]:
    monkeypatch.chdir(folder)
    trt_usable = tensorrt_status().usable
    ran = []
    for line in bash_lines(guide):
        for old, new in (substitute or {}).items():
            line = line.replace(old, new)
        if not line.startswith("hqsam-edge "):
            assert line.startswith(SYSTEM_STEPS), f"{guide}: {line!r} is neither hqsam-edge nor a known system step"
            continue
        if exports is not None and line.startswith("hqsam-edge export "):
            run_export(line, trt_usable, exports)
        else:
            check_command(line, trt_usable)
        ran.append(line)
    return ran


@pytest.mark.parametrize("guide", GUIDES)
def test_failure_messages_are_ours(guide):
    """Each message a guide quotes is one our code prints (so the guides cannot drift from it)."""
    source = source_text()
    messages = failure_messages(guide)
    assert len(messages) >= 6
    for message in messages:
        for part in (p.strip() for p in message.split("...")):
            assert part in source, f"{guide} quotes {message!r}, but hqsam_edge never prints {part!r}"


def test_jetson_guide(tmp_path, monkeypatch, make_checkpoint, exports):
    setup_reader_folder(tmp_path, make_checkpoint, {"vit_tiny"})
    ran = run_guide("deploy-jetson.md", tmp_path, monkeypatch, exports=exports)
    assert len(ran) >= 10
    assert (tmp_path / "build/hq_vit_tiny/manifest.json").is_file()
    assert "--dla-core 0" in " ".join(ran) and "--graphs-for tensorrt" in " ".join(ran)


def test_rtx_guide_with_vit_tiny(tmp_path, monkeypatch, make_checkpoint, exports):
    """The export line is the Jetson guide's (same checkpoint, same options): it runs in whichever test comes
    first, the other starts from a copy of its folder."""
    setup_reader_folder(tmp_path, make_checkpoint, {"vit_tiny"})
    ran = run_guide("deploy-rtx.md", tmp_path, monkeypatch, {"vit_l": "vit_tiny"}, exports)
    assert len(ran) >= 8 and (tmp_path / "mask.png").is_file()


@pytest.mark.slow
def test_rtx_guide_verbatim(tmp_path, monkeypatch, make_checkpoint):
    setup_reader_folder(tmp_path, make_checkpoint, {"vit_l"})
    run_guide("deploy-rtx.md", tmp_path, monkeypatch)
