"""The machine we run on: CPU architecture, Jetson model and JetPack release, GPU, CUDA, TensorRT, power mode.

Recorded in every manifest (where an artifact was made) and every bench row
(where a figure was measured), and printed by ``hqsam-edge info``. Every probe
is defensive: a file that is missing or a tool that is not installed leaves
the field empty and adds a plain-words reason to ``notes`` -- the platform is
reported honestly, never guessed.

Sources, read from ``root`` (``/`` normally; a folder holding the same files
in tests):

- Jetson model: ``/proc/device-tree/model`` (NUL-terminated, e.g.
  ``NVIDIA Jetson AGX Orin Developer Kit``).
- L4T release: ``/etc/nv_tegra_release`` (``# R36 (release), REVISION: 4.3, ...``
  is L4T 36.4.3), mapped to JetPack through :data:`L4T_TO_JETPACK`; an L4T
  release missing from that table is reported as such, not guessed.
- Power mode: ``nvpmodel -q`` (``NV Power Mode: MAXN`` then the mode id).
- GPU: ``nvidia-smi --query-gpu=name,driver_version,compute_cap`` on dGPU
  machines; on Jetson the integrated GPU is named after the module.
- CUDA toolkit: ``/usr/local/cuda/version.json`` (CUDA >= 11.1) or
  ``version.txt``; TensorRT: the Python module's version.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# L4T (Jetson Linux) release -> JetPack release, from NVIDIA's release notes and JetPack archive. R32 is JetPack 4
# (Jetson Nano / TX2 / Xavier, TensorRT 7-8.2), R34 the JetPack 5.0 developer previews: older than hqsam-edge supports.
L4T_TO_JETPACK: dict[str, str] = {
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "34.1.0": "5.0 DP",
    "34.1.1": "5.0.1 DP",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "38.2.0": "7.0",
    "38.4.0": "7.1",
    "39.2.0": "7.2",
}

# JetPack release -> the TensorRT it ships (what `build` will meet on that board). JetPack 5's 8.4 / 8.5 are below
# hqsam-edge's floor (8.6: the ONNX parser's LayerNormalization); TensorRT 11 comes to Jetson only as the SBSA build on
# JetPack 7.2.2 and later (NVIDIA's "Migrating TensorRT from 10.x to 11.x on Jetson").
JETPACK_TENSORRT: dict[str, str] = {
    "4.5": "7.1",
    "4.6": "8.2",
    "5.0": "8.4",
    "5.1": "8.5",
    "6.0": "8.6",
    "6.1": "10.3",
    "6.2": "10.3",
    "7.0": "10.13",
    "7.1": "10.13",
    "7.2": "10.16",
}
MIN_TENSORRT = "8.6"
# L4T majors and the JetPack series they are, for a release the table lacks (a newer patch, 36.5): named, not guessed
L4T_SERIES: dict[str, str] = {"32": "4.x", "34": "5.0 developer preview", "35": "5.x", "36": "6.x", "38": "7.0 / 7.1",
                              "39": "7.2"}


@dataclass(frozen=True)
class DlaSupport:
    """Which TensorRT releases run DLA, and where (NVIDIA's DLA matrix: "TensorRT 10.7 was the last release that
    supported DLA"; 11.0-11.4.0 none; "TensorRT 11.4.1 supports DLA on NVIDIA Jetson AGX Orin when using NVIDIA
    JetPack 7.2.2 or later"). ``below`` None: no upper bound known."""

    since: str
    below: str | None
    modules: tuple[str, ...]  # Jetson models (substrings of /proc/device-tree/model) with DLA cores there
    min_jetpack: str = ""
    where: str = ""


DLA_SUPPORT: tuple[DlaSupport, ...] = (
    DlaSupport("8.6", "10.8", ("AGX Orin", "Orin NX"), "6.0", "JetPack 6 (TensorRT 8.6 / 10.3)"),
    DlaSupport("11.4.1", None, ("AGX Orin",), "7.2.2", "TensorRT 11.4.1+ on AGX Orin with JetPack 7.2.2+"),
)


def dla_refusal(tensorrt: str, jetson_model: str = "", jetpack: str = "") -> str:
    """Why TensorRT ``tensorrt`` on ``jetson_model`` / ``jetpack`` (empty: not known) cannot build for the DLA; ""
    when ``DLA_SUPPORT`` says it can."""
    version = version_tuple(tensorrt)
    for row in DLA_SUPPORT:
        if version < version_tuple(row.since) or (row.below and version >= version_tuple(row.below)):
            continue
        if jetson_model and not any(m in jetson_model for m in row.modules):
            return f"TensorRT {tensorrt} runs DLA on {' / '.join(row.modules)} only, not on {jetson_model}"
        if jetpack and row.min_jetpack and _older(jetpack.split()[0], row.min_jetpack):
            return f"TensorRT {tensorrt} runs DLA with JetPack {row.min_jetpack} or later, not {jetpack}"
        return ""
    where = "; ".join(row.where for row in DLA_SUPPORT)
    return (f"TensorRT {tensorrt} has no DLA support (10.7 was the last TensorRT 10 with DLA, 11.0-11.4.0 have none): "
            f"DLA runs with {where}")

TENSORRT_HINT = (
    "install the extra: pip install 'hqsam-edge[tensorrt]' (x86_64 with an NVIDIA driver); on Jetson use "
    "JetPack's python3-libnvinfer in a venv made with --system-site-packages and build pycuda "
    "against /usr/local/cuda"
)

Runner = Callable[[list[str]], "str | None"]


@dataclass
class Platform:
    """What ``detect_platform`` found; empty strings mean "not found" (``notes`` says why)."""

    arch: str
    system: str
    python: str
    cpu: str = ""
    cpu_count: int = 0
    memory_gib: float = 0.0
    jetson_model: str = ""
    l4t: str = ""
    jetpack: str = ""
    power_mode: str = ""
    gpu: str = ""
    gpu_driver: str = ""
    compute_capability: str = ""
    unified_memory: bool = False
    cuda_toolkit: str = ""
    torch_cuda: str = ""
    tensorrt: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def is_jetson(self) -> bool:
        return bool(self.jetson_model or self.l4t)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for report headers: ``Jetson AGX Orin, JetPack 6.2, MAXN`` or ``x86_64, 2 CPUs, no GPU``."""
        if self.is_jetson:
            parts = [self.jetson_model or "Jetson (model unknown)",
                     f"JetPack {self.jetpack}" if self.jetpack else f"L4T {self.l4t or '?'}",
                     f"power mode {self.power_mode or 'unknown'}"]
        else:
            parts = [self.arch, f"{self.cpu_count} CPUs", self.cpu or "CPU unknown", self.gpu or "no GPU"]
        return ", ".join(p for p in parts if p)

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` pairs for ``hqsam-edge info``, every field present, empty ones explained."""
        def val(v: str, missing: str) -> str:
            return v if v else missing

        rows = [
            ("architecture", f"{self.arch} ({self.system})"),
            ("cpu", f"{val(self.cpu, 'unknown')}, {self.cpu_count} usable cores"),
            ("memory",
             f"{self.memory_gib:.1f} GiB" + (" (unified: shared by CPU and GPU)" if self.unified_memory else "")),
        ]
        if self.is_jetson:
            rows += [
                ("jetson", val(self.jetson_model, "yes (model not readable)")),
                ("l4t / jetpack", f"L4T {val(self.l4t, '?')} / JetPack {val(self.jetpack, 'unknown')}"),
                ("power mode", val(self.power_mode, "unknown (nvpmodel -q gave nothing)")),
            ]
        else:
            rows.append(("jetson", "no"))
        gpu = self.gpu
        if gpu and self.compute_capability:
            gpu += f" (compute capability {self.compute_capability})"
        if gpu and self.gpu_driver:
            gpu += f", driver {self.gpu_driver}"
        rows += [
            ("gpu", val(gpu, "none")),
            ("cuda toolkit", val(self.cuda_toolkit, "none")),
            ("torch cuda", f"built for CUDA {self.torch_cuda}" if self.torch_cuda else "none (CPU-only torch)"),
            ("tensorrt", val(self.tensorrt, "not installed")),
        ]
        return rows


def _run(cmd: list[str]) -> str | None:
    """stdout of ``cmd`` or None if it is not installed, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def parse_l4t(text: str) -> str:
    """``# R36 (release), REVISION: 4.3, GCID: ...`` -> ``36.4.3``; ``""`` if unreadable."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return ""
    revision = m.group(2).split(".")
    revision += ["0"] * (2 - len(revision))
    return ".".join([m.group(1), *revision[:2]])


def jetpack_for(l4t: str) -> str:
    """JetPack release of an L4T release; a patch release the table lacks (``39.2.1``) gets the JetPack of the
    newest listed release of its major.minor not newer than it (``39.2.0``: ``7.2``); ``""`` when there is none."""
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]
    padded = ".".join((l4t.split(".") + ["0", "0"])[:3])
    if padded in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[padded]
    series = ".".join(padded.split(".")[:2]) + "."
    known = sorted((k for k in L4T_TO_JETPACK if k.startswith(series) and version_tuple(k) <= version_tuple(padded)),
                   key=version_tuple)
    return L4T_TO_JETPACK[known[-1]] if known else ""


def l4t_note(l4t: str) -> str:
    """What to say of an L4T release ``jetpack_for`` cannot name: older than the table, a release of a known series
    the table lacks, or newer than this hqsam-edge knows."""
    major = l4t.split(".")[0]
    newest = max(int(k.split(".")[0]) for k in L4T_TO_JETPACK)
    if major.isdigit() and int(major) > newest:
        return f"L4T {l4t} is newer than this hqsam-edge knows: JetPack release not named"
    if major in L4T_SERIES:
        return f"L4T {l4t} (JetPack {L4T_SERIES[major]}) is not in this hqsam-edge's table: JetPack release not named"
    return f"L4T {l4t} is older than the JetPack releases this hqsam-edge knows (JetPack 4 is L4T 32)"


def version_tuple(text: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> ``(10, 3, 0)``: the major, minor and patch numbers of a version string (a build
    number after them is ignored), for comparisons."""
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def _older(version: str, than: str) -> bool:
    return version_tuple(version) < version_tuple(than)


def tensorrt_for_jetpack(jetpack: str) -> str:
    """The TensorRT release JetPack ``jetpack`` ships (``"6.2"`` -> ``"10.3"``); ``""`` if unknown."""
    for prefix in sorted(JETPACK_TENSORRT, key=len, reverse=True):
        if jetpack == prefix or jetpack.startswith(prefix + ".") or jetpack.startswith(prefix + " "):
            return JETPACK_TENSORRT[prefix]
    return ""


def parse_power_mode(text: str) -> str:
    """``nvpmodel -q`` output -> ``"MAXN (mode 0)"``; warnings it prints first are skipped."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("NVPM WARN")]
    for i, line in enumerate(lines):
        if line.startswith("NV Power Mode:"):
            name = line.split(":", 1)[1].strip()
            mode = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].isdigit() else ""
            return f"{name} (mode {mode})" if mode else name
    return ""


def parse_cuda_version(root: Path) -> str:
    text = _read(root, "/usr/local/cuda/version.json")
    if text:
        try:
            return str(json.loads(text)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            pass
    text = _read(root, "/usr/local/cuda/version.txt") or ""
    m = re.search(r"CUDA Version\s+([\d.]+)", text)
    return m.group(1) if m else ""


def _cpu_name(root: Path) -> str:
    text = _read(root, "/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            return m.group(1).strip()
    return _platform.processor()


def cpu_flags(root: str | Path = "/") -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``: x86 ``flags``, ARM ``Features``); empty where unknown."""
    text = _read(Path(root), "/proc/cpuinfo") or ""
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    return set(m.group(1).split()) if m else set()


def u8s8_saturates(root: str | Path = "/", machine: str | None = None) -> bool:
    """Whether ONNX Runtime's uint8 x int8 GEMMs can saturate here: x86 without VNNI multiplies with VPMADDUBSW,
    whose int16 pair sums overflow at 255 x 127 x 2 (8-bit weights need to be 7-bit there); with AVX-512 VNNI or
    AVX-VNNI, and on ARM (dot-product instructions), they accumulate in int32."""
    machine = (machine or _platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        return False
    return not cpu_flags(root) & {"avx512_vnni", "avx_vnni"}


def _memory_gib(root: Path) -> float:
    m = re.search(r"^MemTotal:\s+(\d+)\s+kB", _read(root, "/proc/meminfo") or "", re.MULTILINE)
    return round(int(m.group(1)) / 2**20, 1) if m else 0.0


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 0


def module_version(module: str) -> str | None:
    """``module.__version__`` if the library imports; None if not (type stubs alone count as not installed)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    if getattr(mod, "__file__", None) is None and not hasattr(mod, "__version__"):
        return None  # a namespace package left by type stubs, not the library
    return str(getattr(mod, "__version__", "?"))


def _torch_cuda() -> str:
    try:
        import torch
    except ImportError:
        return ""
    return torch.version.cuda or ""


def _torch_gpu() -> tuple[str, str]:
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except Exception:  # noqa: BLE001 - a broken driver is "no GPU", with a note below
        pass
    return "", ""


def detect_platform(root: str | Path = "/", run: Runner = _run, *, probe_python: bool = True) -> Platform:
    """Probe the machine (``root`` for files, ``run`` for tools). ``probe_python=False`` skips torch/tensorrt."""
    root = Path(root)
    p = Platform(arch=_platform.machine(), system=f"{_platform.system()} {_platform.release()}",
                 python=sys.version.split()[0], cpu=_cpu_name(root), cpu_count=_cpu_count(),
                 memory_gib=_memory_gib(root))

    model = (_read(root, "/proc/device-tree/model") or "").replace("\x00", "").strip()
    release = _read(root, "/etc/nv_tegra_release")
    if "jetson" in model.lower() or release is not None:
        p.jetson_model = model
        p.unified_memory = True
        p.l4t = parse_l4t(release or "")
        if release is None:
            p.notes.append("Jetson module without /etc/nv_tegra_release: L4T/JetPack release unknown")
        elif not p.l4t:
            p.notes.append("/etc/nv_tegra_release is not in the usual form: L4T release unknown")
        else:
            p.jetpack = jetpack_for(p.l4t)
            if not p.jetpack:
                p.notes.append(l4t_note(p.l4t))
        out = run(["nvpmodel", "-q"])
        p.power_mode = parse_power_mode(out) if out else ""
        if not p.power_mode:
            p.notes.append("nvpmodel -q gave no power mode (state the mode and clocks yourself in benchmark reports)")
        if p.jetson_model:
            p.gpu = f"{p.jetson_model.replace('NVIDIA ', '')} integrated GPU"

    smi = run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"])
    if smi and smi.strip() and "," in smi:
        name, driver, cc = [s.strip() for s in smi.strip().splitlines()[0].split(",")[:3]]
        p.gpu, p.gpu_driver, p.compute_capability = name, driver, cc if re.fullmatch(r"\d+\.\d+", cc) else ""
    elif not p.is_jetson:
        why = []
        if not (root / "proc/driver/nvidia").exists():
            why.append("no NVIDIA driver loaded (/proc/driver/nvidia missing)")
        if shutil.which("nvidia-smi") is None:
            why.append("nvidia-smi not found")
        p.notes.append("no NVIDIA GPU: " + ("; ".join(why) or "nvidia-smi lists none"))

    p.cuda_toolkit = parse_cuda_version(root)
    if probe_python:
        p.torch_cuda = _torch_cuda()
        if not p.compute_capability:
            name, cc = _torch_gpu()
            p.gpu, p.compute_capability = p.gpu or name, cc
        p.tensorrt = module_version("tensorrt") or ""
        if not p.tensorrt:
            p.notes.append("TensorRT's Python module is not installed (the tensorrt backend row says how to add it)")
            if p.is_jetson and p.jetpack:
                trt = tensorrt_for_jetpack(p.jetpack)
                if trt and _older(trt, MIN_TENSORRT):
                    p.notes.append(f"JetPack {p.jetpack} ships TensorRT {trt}, older than the {MIN_TENSORRT} "
                                   "hqsam-edge needs: upgrade to JetPack 6.0 or newer for TensorRT engines")
                elif trt:
                    p.notes.append(f"JetPack {p.jetpack} ships TensorRT {trt} (apt install python3-libnvinfer)")
    return p


_CACHED: Platform | None = None


def this_platform() -> Platform:
    """``detect_platform()`` once per process (it runs external tools)."""
    global _CACHED
    if _CACHED is None:
        _CACHED = detect_platform()
    return _CACHED
