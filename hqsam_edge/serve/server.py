"""A real Triton Inference Server on this machine: started on loopback with free ports, stopped by its PID.

The server is the one PyPI's ``nvidia-pytriton`` bundles (``tritonserver`` 2.51, CPU, with the Python backend
only, and Python-backend stubs for Python 3.8-3.13), run from the Python environment it is installed in, which
is also the Python that runs the repository's ``model.py`` files (``SERVER_REQUIREMENTS``)::

    from hqsam_edge.serve.server import ServerSpec, TritonServer

    with TritonServer(ServerSpec("model_repository", python=".venv-triton/bin/python")) as server:
        print(server.http_url, server.grpc_url)            # 127.0.0.1:<free port>
        print(server.statistics("hq_vit_tiny_encoder"))   # inferences and executions so far

What starting it takes, found here the hard way: the stub for the environment's Python version copied into
a backend folder beside ``libtriton_python.so``; ``PATH`` starting with the environment's ``bin`` (the stub
embeds Python and finds its ``site-packages`` through it); ``LD_LIBRARY_PATH`` starting with that Python's own
``LIBDIR`` (else the stub loads the system's libpython: ``'_thread.RLock' object has no attribute
'_recursion_count'``); numpy 1 in that environment (with numpy 2 tensors cross the stub as 0 bytes).

The server runs in its own process group; ``stop`` sends SIGTERM to its PID, then SIGKILL to the group after
``stop_timeout_s`` (the group holds the server and its Python-backend stubs, nothing else).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, UsageError

# What the Python that runs Triton's Python-backend stub needs for an hqsam-edge repository (besides
# hqsam-edge itself, installed without its dependencies): the server (``nvidia-pytriton`` bundles tritonserver
# 2.51 with the Python backend and stubs for Python 3.8-3.13), numpy 1 (with numpy 2 tensors cross that stub
# as 0 bytes), ONNX Runtime (the graphs of the ``python`` runtime), Pillow and torch (the image resize and
# mask upscaling of ``Predictor``); OpenCV, for a server Python that gets hqsam-edge with its dependencies,
# before 4.12 (4.12 and later want numpy 2).
SERVER_REQUIREMENTS = (
    "nvidia-pytriton==0.7.0",
    "numpy>=1.24,<2",
    "onnxruntime>=1.17",
    "opencv-python-headless>=4.8,<4.12",
    "pillow>=9.0",
    "torch>=2.1",
)

_LOCATE = """
import importlib.util, json, sys, sysconfig
spec = importlib.util.find_spec("pytriton")
print(json.dumps({"pytriton": spec.submodule_search_locations[0] if spec else None,
                  "version": f"{sys.version_info.major}.{sys.version_info.minor}",
                  "libdir": sysconfig.get_config_var("LIBDIR"), "prefix": sys.prefix}))
"""


class ServerError(BackendUnavailableError):
    """The Triton server did not start, did not get ready, or refused a request to it (its log says more)."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start the server. Ports 0: free ones, chosen when it starts.

    ``python``: the Python environment with ``nvidia-pytriton`` and ``SERVER_REQUIREMENTS``;
    ``models``: with a tuple, the server starts in explicit model control mode (``load`` / ``unload`` through
    its API) with only these loaded; None loads every model of the repository. ``backend_config``: values of
    ``--backend-config`` (e.g. ``python,shm-default-byte-size=16777216``). ``log``: the server's log file
    (None: a file in its work folder, removed on stop; ``log_text`` reads either).
    """

    repository: str
    python: str = sys.executable
    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    models: tuple[str, ...] | None = None
    backend_config: tuple[str, ...] = ()
    log: str | None = None
    log_verbose: int = 0
    startup_timeout_s: float = 120.0
    exit_timeout_s: int = 30  # the server's own wait on SIGTERM for requests, connections and unloading models
    stop_timeout_s: float = 45.0
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelStatistics:
    """One model's counters from the statistics endpoint: ``inference_count`` requests' batch items served,
    ``execution_count`` model executions (fewer than inferences: requests were batched), ``success`` /
    ``failure`` requests."""

    name: str
    inference_count: int
    execution_count: int
    success: int
    failure: int


@dataclass(frozen=True)
class ModelState:
    name: str
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING
    reason: str


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def locate(python: str) -> dict[str, str]:
    """Where ``python``'s ``nvidia-pytriton`` keeps tritonserver, and that Python's version and LIBDIR."""
    try:
        found = subprocess.run([python, "-c", _LOCATE], capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"cannot run the server's Python {python}: {exc}") from None
    info = json.loads(found.stdout)
    if info["pytriton"] is None:
        raise BackendUnavailableError(
            f"{python} has no nvidia-pytriton (the Triton server it bundles): "
            f"`{python} -m pip install {' '.join(repr(r) for r in SERVER_REQUIREMENTS)}`")
    return info


class TritonServer:
    """``tritonserver`` of ``spec.python``'s ``nvidia-pytriton`` for ``spec.repository``; a context manager."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.work: Path | None = None
        self.log_path: Path | None = None

    # -- addresses --------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def http_url(self) -> str:
        return f"{self.spec.host}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{self.spec.host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"{self.spec.host}:{self.ports['metrics']}"

    # -- life -------------------------------------------------------------------------------------
    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def command(self, info: dict[str, str]) -> list[str]:
        """The ``tritonserver`` command line (its work folder and ports already chosen)."""
        spec, dist = self.spec, Path(info["pytriton"]) / "tritonserver"
        assert self.work is not None
        args = [str(dist / "bin" / "tritonserver"), f"--model-repository={Path(spec.repository).resolve()}",
                f"--backend-directory={self.work / 'backends'}", f"--cache-directory={dist / 'caches'}",
                f"--http-address={spec.host}", f"--http-port={self.ports['http']}",
                f"--grpc-address={spec.host}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-address={spec.host}", f"--metrics-port={self.ports['metrics']}",
                "--exit-on-error=false", f"--exit-timeout-secs={spec.exit_timeout_s}",
                f"--log-verbose={spec.log_verbose}"]
        if spec.models is not None:
            args += ["--model-control-mode=explicit", *(f"--load-model={m}" for m in spec.models)]
        args += [f"--backend-config={c}" for c in spec.backend_config]
        return args + list(spec.extra_args)

    def _prepare(self, info: dict[str, str]) -> dict[str, str]:
        """The work folder (the Python backend with the stub of this Python), ports, the environment."""
        dist = Path(info["pytriton"]) / "tritonserver"
        stub = dist / "python_backend_stubs" / info["version"] / "triton_python_backend_stub"
        if not stub.is_file():
            raise BackendUnavailableError(f"nvidia-pytriton has no Python-backend stub for Python {info['version']} "
                                          f"({stub}); use Python 3.8-3.13 for the server's environment")
        self.work = Path(tempfile.mkdtemp(prefix="hqsam-triton-"))
        backend = self.work / "backends" / "python"
        backend.mkdir(parents=True)
        for source in (dist / "backends" / "python").iterdir():
            if source.is_file():
                shutil.copy2(source, backend / source.name)
        shutil.copy2(stub, backend / stub.name)
        self.ports = {k: getattr(self.spec, f"{k}_port") or free_port(self.spec.host)
                      for k in ("http", "grpc", "metrics")}
        env = dict(os.environ)
        libs = [info["libdir"], str(Path(info["pytriton"]).parent / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in [env.get("LD_LIBRARY_PATH", "")] if p])
        env["PATH"] = f"{Path(info['prefix']) / 'bin'}:{env.get('PATH', '')}"
        env.pop("PYTHONHOME", None)
        return env

    def start(self) -> TritonServer:
        """Start the server and wait until it answers ready; ``ServerError`` with the log's tail otherwise."""
        info = locate(self.spec.python)
        try:
            env = self._prepare(info)
            assert self.work is not None
            self.log_path = Path(self.spec.log) if self.spec.log else self.work / "tritonserver.log"
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(self.command(info), stdout=log, stderr=subprocess.STDOUT, env=env,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode} while starting: "
                                  f"{self.log_tail()}")
            if self.live():
                return
            time.sleep(0.2)
        raise ServerError(f"tritonserver was not live after {self.spec.startup_timeout_s:.0f} s: {self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM to the server's PID; SIGKILL to its process group after ``stop_timeout_s``. Its exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(self.spec.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            code = self.process.returncode
        if self.work is not None:
            if self.log_path is not None and self.log_path.parent == self.work:
                self._kept_log = self.log_text()
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None
        return code

    def log_text(self) -> str:
        if self.log_path is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return getattr(self, "_kept_log", "")

    def log_tail(self, lines: int = 15) -> str:
        return " | ".join(self.log_text().strip().splitlines()[-lines:]) or "(no log)"

    # -- the HTTP API (no tritonclient needed) ---------------------------------------------------
    def _request(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.http_url}{path}", data=data,
                                         method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, {"error": text.decode(errors="replace")}
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def live(self) -> bool:
        return self._request("/v2/health/live")[0] == 200

    def ready(self) -> bool:
        """The server's readiness: strict, so false once a model it tried to load failed (unloading it does
        not clear that); ``model_ready`` tells of one model."""
        return self._request("/v2/health/ready")[0] == 200

    def models(self) -> list[ModelState]:
        """Every model of the repository with its state and, for one that failed to load, the reason."""
        code, body = self._request("/v2/repository/index", {})
        if code != 200:
            raise ServerError(f"the repository index failed ({code}): {body}")
        return [ModelState(m["name"], m.get("state", ""), m.get("reason", "")) for m in body]

    def load(self, model: str) -> None:
        """Load (or reload) ``model`` (explicit model control mode); ``ServerError`` with the server's reason."""
        code, body = self._request(f"/v2/repository/models/{model}/load", {})
        if code != 200:
            raise ServerError(f"model {model} did not load: {(body or {}).get('error', code)}")

    def unload(self, model: str) -> None:
        code, body = self._request(f"/v2/repository/models/{model}/unload", {})
        if code != 200:
            raise ServerError(f"model {model} did not unload: {(body or {}).get('error', code)}")

    def model_ready(self, model: str) -> bool:
        return self._request(f"/v2/models/{model}/ready")[0] == 200

    def statistics(self, model: str) -> ModelStatistics:
        code, body = self._request(f"/v2/models/{model}/stats")
        if code != 200:
            raise ServerError(f"no statistics for model {model} ({code}): {body}")
        stats = body["model_stats"][0]
        infer = stats["inference_stats"]
        return ModelStatistics(model, int(stats["inference_count"]), int(stats["execution_count"]),
                               int(infer["success"]["count"]), int(infer["fail"]["count"]))

    def _group(self) -> list[Path]:
        """/proc entries of the server and its Python-backend stubs (its process group)."""
        if self.process is None:
            return []
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == self.process.pid:
                    members.append(entry)
            except (OSError, ValueError, IndexError):
                continue
        return members

    def rss_bytes(self) -> int:
        """Resident memory of the server and its stubs, summed: pages they share (the Python backend's /dev/shm
        pool, libraries) count once per process that touched them; ``memory_bytes`` counts them once."""
        total, page = 0, os.sysconf("SC_PAGE_SIZE")
        for entry in self._group():
            try:
                total += int((entry / "statm").read_text().split()[1]) * page
            except (OSError, ValueError, IndexError):
                continue
        return total

    def memory_bytes(self) -> int:
        """The memory the server and its stubs hold, shared pages counted once: the sum of their proportional set
        sizes (``Pss`` in /proc/PID/smaps_rollup, Linux 4.14+); their summed RSS where that file is missing."""
        if not Path("/proc/self/smaps_rollup").exists():
            return self.rss_bytes()
        total = 0
        for entry in self._group():
            try:
                rollup = (entry / "smaps_rollup").read_text()
            except OSError:  # the process ended since the group was listed
                continue
            total += next((int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:")), 0)
        return total
