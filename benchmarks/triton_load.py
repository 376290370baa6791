"""Triton under load: K concurrent clients for T seconds against a real Triton server started here.

The server is the one ``nvidia-pytriton`` bundles, run from the test suite's server environment
(``python -m tests.serve.triton_venv`` builds it) or ``--server-python``, exactly as
``tests/serve/test_triton_server.py`` starts it (``hqsam_edge.serve.server.TritonServer``). The repository is
written here (``runtime="python"``, ``--kind cpu`` unless told otherwise) from an artifact folder, or from a
Light HQ-SAM with random weights exported into a temporary folder when none is given.

Each client (tritonclient's asyncio API, HTTP or gRPC) sends image + box requests back to back. Prints
throughput, p50 / p99 latency, failed requests, the encoder's executions against its inferences (from the
statistics endpoint: fewer executions means requests were batched) and the server's memory
(server and stubs, shared pages counted once: PSS; the summed RSS beside it) after warm-up, every quarter and at
the end; ``--json`` writes the same as a record.

    python benchmarks/triton_load.py --clients 4 --seconds 60
    python benchmarks/triton_load.py build/hq_vit_tiny --clients 8 --seconds 120 --protocol grpc --json load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class LoadResult:
    clients: int
    seconds: float
    protocol: str
    python_instances: int
    requests: int
    failed: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    encoder_inferences: int
    encoder_executions: int
    rss_start_mib: float
    rss_end_mib: float  # summed RSS: shared pages (the /dev/shm pool) once per process that touched them
    pss_start_mib: float  # proportional set sizes summed: shared pages once
    pss_end_mib: float
    pss_samples_mib: tuple[float, ...] = ()  # during the run, every quarter of it
    first_error: str = ""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="artifact folder (default: a random-weight vit_tiny, exported now)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-seconds", type=float, default=10.0,
                        help="load before the measured run (at least one request a client): every instance warm")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--runtime", choices=("python", "native"), default="python")
    parser.add_argument("--kind", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--python-instances", type=int, default=None, help="default: the repository's (max batch)")
    parser.add_argument("--boxes", type=int, default=4, help="box prompts per request")
    parser.add_argument("--image-size", default="480x640", help="HxW of the synthetic request image")
    parser.add_argument("--server-python", default=None, help="default: the test suite's server environment")
    parser.add_argument("--json", default=None, help="write the result record here")
    return parser.parse_args(argv)


async def client_loop(module, url: str, model: str, image: np.ndarray, boxes: np.ndarray, deadline: float,
                      latencies: list[float], errors: list[str]) -> None:
    """Requests back to back until ``deadline``, and at least one (the warm-up's)."""
    from tritonclient.utils import np_to_triton_dtype

    client = module.InferenceServerClient(url)
    try:
        sent = 0
        while not sent or time.monotonic() < deadline:
            sent += 1
            inputs = []
            for name, array in (("image", image), ("boxes", boxes)):
                tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            start = time.monotonic()
            try:
                await client.infer(model, inputs, outputs=[module.InferRequestedOutput("masks")])
                latencies.append(time.monotonic() - start)
            except Exception as exc:  # noqa: BLE001 - counted, and the first one printed
                errors.append(str(exc))
    finally:
        await client.close()


def run_load(server, model: str, encoder: str, args: argparse.Namespace, python_instances: int) -> LoadResult:
    from hqsam_edge.data.synthetic import demo_image

    if args.protocol == "http":
        import tritonclient.http.aio as module
        url = server.http_url
    else:
        import tritonclient.grpc.aio as module
        url = server.grpc_url
    h, w = (int(v) for v in args.image_size.split("x"))
    image = demo_image(h, w, 0)
    rng = np.random.default_rng(0)
    x0, y0 = rng.uniform(0, w / 2, args.boxes), rng.uniform(0, h / 2, args.boxes)
    boxes = np.stack([x0, y0, x0 + w / 3, y0 + h / 3], axis=1).astype(np.float32)

    async def load(seconds: float, latencies: list[float], errors: list[str]) -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client_loop(module, url, model, image, boxes, deadline, latencies, errors)
                               for _ in range(args.clients)))

    asyncio.run(load(args.warmup_seconds, [], []))  # every instance warm (imports, sessions, first runs)
    before, rss_start, pss_start = server.statistics(encoder), server.rss_bytes(), server.memory_bytes()
    latencies: list[float] = []
    errors: list[str] = []
    samples: list[float] = []
    done = threading.Event()

    def sample_rss() -> None:  # the server's memory through the run, in quarters
        while not done.wait(args.seconds / 4):
            samples.append(round(server.memory_bytes() / 2**20, 1))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    start = time.monotonic()
    asyncio.run(load(args.seconds, latencies, errors))
    elapsed = time.monotonic() - start
    done.set()
    sampler.join()
    after, rss_end, pss_end = server.statistics(encoder), server.rss_bytes(), server.memory_bytes()
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return LoadResult(args.clients, round(elapsed, 1), args.protocol, python_instances, len(latencies), len(errors),
                      round(len(latencies) / elapsed, 3), round(float(np.percentile(ms, 50)), 1),
                      round(float(np.percentile(ms, 99)), 1), after.inference_count - before.inference_count,
                      after.execution_count - before.execution_count, round(rss_start / 2**20, 1),
                      round(rss_end / 2**20, 1), round(pss_start / 2**20, 1), round(pss_end / 2**20, 1), tuple(samples),
                      errors[0] if errors else "")


def main(argv=None) -> int:
    args = parse_args(argv)
    from hqsam_edge.serve.server import ServerSpec, TritonServer
    from hqsam_edge.serve.triton import TritonSpec, write_repository

    python = args.server_python
    if python is None:
        from tests.serve.triton_venv import venv_dir, venv_python

        python = venv_python()
        if python is None:
            print(f"no server environment at {venv_dir()}: python -m tests.serve.triton_venv", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="triton-load-") as tmp:
        folder = args.folder
        if folder is None:
            from hqsam_edge.pipeline.export import ExportSpec, export_artifacts

            folder = str(Path(tmp) / "hq_vit_tiny")
            export_artifacts(ExportSpec(random_weights=True, out=folder, verify=False))
        repo = write_repository(TritonSpec(folder=folder, out=str(Path(tmp) / "repo"), runtime=args.runtime,
                                           kind=args.kind, python_instances=args.python_instances))
        print(repo.summary())
        instances = repo.shm.python_instances if repo.shm else 0
        with TritonServer(ServerSpec(str(repo.path), python=str(python), log=str(Path(tmp) / "server.log"))) as server:
            result = run_load(server, repo.name, repo.encoder, args, instances)
    print(f"{result.clients} clients x {result.seconds} s ({result.protocol}, {instances} model instances): "
          f"{result.requests} requests, {result.throughput_rps} req/s, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, "
          f"{result.failed} failed; encoder {result.encoder_executions} executions for {result.encoder_inferences} "
          f"inferences; server memory (PSS) {result.pss_start_mib} -> {result.pss_end_mib} MiB (every quarter: "
          f"{', '.join(map(str, result.pss_samples_mib))}; summed RSS {result.rss_start_mib} -> {result.rss_end_mib})")
    if result.first_error:
        print(f"first error: {result.first_error}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=1) + "\n")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
