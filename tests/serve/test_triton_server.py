"""The repository ``hqsam-edge triton`` writes, served by a real Triton server: the one PyPI's ``nvidia-pytriton``
bundles (tritonserver 2.51, CPU, Python backend only), in its own environment with numpy 1
(``tests/serve/triton_venv.py``; ``.ci/run`` builds it). Skipped, with the command that builds it, when that
environment is absent, except in CI (``CI=true``), where its absence fails.

One server per module, on 127.0.0.1 with free ports, in explicit model-control mode; stopped by its PID at the
end (SIGTERM, then SIGKILL). A failed test's report carries the server's log (``tests/serve/conftest.py``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from hqsam_edge.export import contract as C
from hqsam_edge.serve import triton_model as S
from hqsam_edge.serve.server import ServerError, ServerSpec, TritonServer
from hqsam_edge.serve.triton import TritonSpec, write_repository
from tests.conftest import test_image
from tests.model.test_model_parity import assert_same_masks
from tests.serve.triton_venv import venv_dir, venv_python

http = pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] (dev extra)")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[http,grpc] (dev extra)")
from tritonclient.utils import InferenceServerException  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGE = test_image(300, 400)
BOXES = np.array([[50.0, 40.0, 300.0, 250.0], [10.0, 10.0, 120.0, 90.0]], np.float32)
NAME = "seg"
CLIENTS = 3  # concurrent requests; with as many instances of the image + prompts model, two reach the encoder
# while it runs the first, and its batcher merges them


def server_python() -> Path:
    python = venv_python()
    if python is None:
        why = (f"no Triton server environment at {venv_dir()}: build it with `python -m tests.serve.triton_venv` "
               "(a few minutes, once)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why + " (CI builds it in .ci/run before pytest)")
        pytest.skip(why)
    return python


def load_client():
    spec = importlib.util.spec_from_file_location("triton_client", ROOT / "examples" / "triton_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_copy(repo: Path, spec: TritonSpec) -> list[str]:
    """Another repository's models (written with ``spec``) moved into ``repo``; their names."""
    other = write_repository(spec)
    names = sorted(p.name for p in other.path.iterdir())
    for name in names:
        shutil.move(str(other.path / name), repo / name)
    return names


@pytest.fixture(scope="module")
def repo(tiny_folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    base = TritonSpec(folder=str(tiny_folder), out=str(tmp / "repo"), name=NAME, runtime="python", kind="cpu",
                      python_instances=CLIENTS, max_request_prompts=16)
    repo = write_repository(base)
    # A copy whose decoder graph was swapped for the encoder's: files.json must refuse it when it loads.
    add_copy(repo.path, dataclasses.replace(base, out=str(tmp / "swapped"), name="swapped"))
    shutil.copyfile(repo.path / "swapped_encoder/1/model.onnx", repo.path / "swapped_decoder/1/model.onnx")
    # One whose bounds need more /dev/shm than this machine has: its load must say --shm-size.
    pixels = shutil.disk_usage("/dev/shm").total // 16 + 1
    add_copy(repo.path, dataclasses.replace(base, out=str(tmp / "big"), name="big", max_image_pixels=pixels))
    return repo


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    python = server_python()
    log = tmp_path_factory.mktemp("server-log") / "tritonserver.log"
    spec = ServerSpec(str(repo.path), python=str(python), models=(repo.name, repo.encoder, repo.decoder), log=str(log))
    with TritonServer(spec) as running:
        assert running.http_url.startswith("127.0.0.1:") and running.grpc_url.startswith("127.0.0.1:")
        yield running
        pid = running.pid
        assert running.stop() == 0, running.log_tail()  # SIGTERM: a clean exit
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="module")
def reference(tiny_folder):
    from hqsam_edge import Predictor

    predictor = Predictor.from_artifacts(tiny_folder, backend="onnxruntime")
    predictor.set_image(IMAGE)
    masks, scores, _ = predictor.predict_boxes(BOXES)
    logits = predictor.predict_boxes(BOXES, return_logits=True)[0]
    return {"masks": masks, "scores": scores, "logits": logits}


def test_the_repository_loads(server, repo):
    assert server.ready()
    states = {m.name: m.state for m in server.models()}
    assert all(states[name] == "READY" for name in (repo.name, repo.encoder, repo.decoder)), states


def infer(client_module, url: str, outputs: list[str], **inputs):
    example = load_client()
    with client_module.InferenceServerClient(url) as client:
        request, wanted = example.build_request(client_module, outputs=outputs, **inputs)
        result = client.infer(NAME, request, outputs=wanted)
        return {name: result.as_numpy(name) for name in outputs}


@pytest.fixture(scope="module")
def served(server, tmp_path_factory):
    """Concurrent requests: the client example over HTTP and over gRPC, and a request for every output."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("client")
    Image.fromarray(IMAGE).save(tmp / "image.png")
    example = load_client()
    box_args = [a for box in BOXES for a in ("--box", ",".join(str(int(v)) for v in box))]
    results: dict[str, object] = {}

    def run_example(protocol: str, url: str) -> None:
        out = tmp / f"{protocol}.png"
        results[protocol] = example.main(["--image", str(tmp / "image.png"), *box_args, "--out", str(out),
                                          "--model", NAME, "--protocol", protocol, "--url", url])
        results[f"{protocol}.png"] = np.asarray(Image.open(out)) if out.exists() else None

    def run_direct() -> None:
        # not every output: a request naming all of them reads as one naming none (the defaults: masks)
        outputs = [S.MASKS.name, S.SCORES.name, C.IMAGE_EMBEDDINGS.name, C.HQ_FEATURES.name]
        results["direct"] = infer(grpc, server.grpc_url, outputs, image=IMAGE, boxes=BOXES)

    threads = [threading.Thread(target=run_example, args=("http", server.http_url)),
               threading.Thread(target=run_example, args=("grpc", server.grpc_url)),
               threading.Thread(target=run_direct)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def test_masks_equal_predictor_over_http_and_grpc(served, reference):
    from hqsam_edge.serve.triton_model import MASKS, SCORES

    example = load_client()
    assert served["http"] == 0 and served["grpc"] == 0
    best, _ = example.best_masks(reference["masks"], reference["scores"])
    union = (best.any(axis=0) * 255).astype(np.uint8)
    for protocol in ("http", "grpc"):
        differ = served[f"{protocol}.png"] != union
        logits = reference["logits"][:, 0].max(axis=0)  # the union's logit: the largest of the prompts'
        assert not differ.any() or np.abs(logits[differ]).max() <= 1e-5 * np.abs(logits).max(), protocol
    direct = served["direct"]
    assert direct[MASKS.name].dtype == bool and direct[MASKS.name].shape == (2, 1, 300, 400)
    assert_same_masks(np.where(direct[MASKS.name], 1.0, -1.0) * np.abs(reference["logits"]), reference["logits"])
    assert np.abs(direct[SCORES.name] - reference["scores"]).max() <= 1e-4


def test_concurrent_requests_are_batched_at_the_encoder(served, server, repo):
    encoder = server.statistics(repo.encoder)
    assert encoder.failure == 0 and encoder.inference_count == CLIENTS
    assert encoder.execution_count < encoder.inference_count, encoder  # the batcher merged requests


def error_of(call) -> str:
    with pytest.raises(InferenceServerException) as err:
        call()
    return str(err.value)


def test_bad_requests_get_a_clear_error_and_the_server_stays_ready(served, server):
    from tritonclient.utils import np_to_triton_dtype

    features = {name: served["direct"][name] for name in (C.IMAGE_EMBEDDINGS.name, C.HQ_FEATURES.name)}

    def raw(*tensors):
        """A request of ``(name, array)`` pairs as given, dtype and shape unchecked."""
        with http.InferenceServerClient(server.http_url) as client:
            inputs = []
            for name, array in tensors:
                tensor = http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            return client.infer(NAME, inputs)

    cases = [
        (lambda: raw(("image", IMAGE.astype(np.float32)), ("boxes", BOXES)), "data type|datatype|FP32"),
        (lambda: raw(("image", IMAGE[..., :2].copy()), ("boxes", BOXES)), "shape|dims"),
        (lambda: raw(("boxes", BOXES)), "send an image"),  # no image, no features
        (lambda: raw(("image", IMAGE), ("boxes", np.tile(BOXES[:1], (10_000, 1)))), "10000 prompts.*at most 16"),
        (lambda: raw(("image", np.zeros((1, 1, 3), np.uint8)), ("boxes", BOXES)), "outside"),
    ]
    for call, message in cases:
        text = error_of(call)
        assert re.search(message, text), text
        assert server.ready()
    # and it still answers (with the encoding of the image: no encoder run)
    out = infer(http, server.http_url, [S.MASKS.name], features=features, original_size=(300, 400), boxes=BOXES)
    assert np.array_equal(out[S.MASKS.name], served["direct"][S.MASKS.name])


def test_a_swapped_graph_is_refused_when_it_loads(server, repo):
    for model in ("swapped_decoder", "swapped"):
        with pytest.raises(ServerError, match=r"swapped_decoder/1/model\.onnx is not the file .*files\.json"):
            server.load(model)
    states = {m.name: (m.state, m.reason) for m in server.models()}
    assert states["swapped"][0] == "UNAVAILABLE" and "files.json" in states["swapped"][1]
    # the served models stay ready (the server's strict readiness now counts the failed load against it)
    assert server.live() and all(server.model_ready(m) for m in (repo.name, repo.encoder, repo.decoder))


def test_a_repository_that_needs_more_shared_memory_says_how_much(server, repo):
    with pytest.raises(ServerError, match=r"/dev/shm holds .*--shm-size=\d+g"):
        server.load("big")
    assert server.live() and all(server.model_ready(m) for m in (repo.name, repo.encoder, repo.decoder))
