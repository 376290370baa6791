"""The trainer on the synthetic HQSeg-44K with Light HQ-SAM (vit_tiny), on the CPU.

Starts from a MobileSAM-format checkpoint (random weights), as Light HQ-SAM is
trained: the HQ parts begin untrained, everything else stays frozen.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hqsam_edge import progress
from hqsam_edge.cli import app
from hqsam_edge.data.augment import AugmentSpec
from hqsam_edge.data.hqseg import HQSegTrainSet, collate_train, list_split
from hqsam_edge.data.prompts import PromptSpec
from hqsam_edge.data.synthetic import write_synthetic_hqseg
from hqsam_edge.model import build_model
from hqsam_edge.model.mask_decoder_hq import HQ_PARAMETER_PREFIXES
from hqsam_edge.train.losses import LossSpec, mask_losses
from hqsam_edge.train.checkpoints import epoch_checkpoints
from hqsam_edge.train.features import encode_frozen
from hqsam_edge.train.spec import TrainSpec
from hqsam_edge.train.trainer import HQHead, freeze_all_but_hq, train
from tests.conftest import load_official

REPO = Path(__file__).resolve().parents[2]
ONE = ("DIS5K-TR",)  # one synthetic image
TWO = ("DIS5K-TR", "FSS")  # two


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_hqseg(tmp_path_factory.mktemp("hqseg") / "data", n_train=1, n_val=1, size=(96, 128), seed=1)


@pytest.fixture(scope="module")
def mobilesam(make_checkpoint):
    return make_checkpoint("vit_tiny", "sam")


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def _is_hq(key: str) -> bool:
    return key.startswith(HQ_PARAMETER_PREFIXES)


def test_loss_decreases_on_a_fixed_batch_and_only_hq_parts_learn(root, mobilesam):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model("vit_tiny", "hq", mobilesam)
    torch.manual_seed(0)
    params = freeze_all_but_hq(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    samples = list_split(root, ONE, "train")["DIS5K-TR"]
    ds = HQSegTrainSet(samples, augment=AugmentSpec(scale_min=0.9, scale_max=0.9), prompts=PromptSpec(types=("box",)))
    batch = collate_train([ds[0]])
    emb, early = encode_frozen(model, batch["image"], [0], None)
    assert not emb.requires_grad and emb.shape == (1, 256, 64, 64) and early.shape == (1, 160, 64, 64)
    head = HQHead(model)
    opt = torch.optim.Adam(params, lr=3e-4)
    fixed_points = LossSpec(importance_ratio=0.0)  # the same 12,544 uniform points every step: one objective
    losses = []
    for _ in range(10):
        logits = head(emb, early, batch["prompts"])
        assert logits.shape == (1, 1, 256, 256)
        loss = sum(mask_losses(logits, batch["target"], fixed_points, torch.Generator().manual_seed(0)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    print("fixed-batch loss:", [round(v, 4) for v in losses])
    assert sum(losses[-3:]) / 3 < 0.9 * losses[0] and min(losses[-5:]) < losses[1], losses
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not _is_hq(k))
    assert all(not torch.equal(before[k], after[k]) for k in before if _is_hq(k) and k.endswith("weight"))
    assert all(p.grad is None for n, p in model.named_parameters() if not _is_hq(n))


def test_cli_train_checkpoints_resume_and_official_merged_checkpoint(root, mobilesam, tmp_path):
    """An interrupted run (--max-steps) resumed with --resume ends exactly where an uninterrupted one does,
    and the merged checkpoint loads strictly into segment_anything_hq and build_model."""
    base = ["train", "--backbone", "vit_tiny", "--checkpoint", str(mobilesam), "--data", str(root),
            "--datasets", "DIS5K-TR", "--datasets", "FSS", "--epochs", "2", "--batch-size", "1", "--workers", "0",
            "--cache-features", str(tmp_path / "cache")]  # the encoder runs twice in all three runs
    runner = CliRunner()
    a, b = tmp_path / "a", tmp_path / "b"
    r = runner.invoke(app, [*base, "--out", str(a), "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in epoch_checkpoints(a)] == ["epoch_0.pth", "epoch_1.pth"]
    partial = torch.load(a / "epoch_1.pth", weights_only=True)
    assert (partial["step"], partial["epoch_complete"], partial["batch_in_epoch"]) == (3, False, 1)
    assert [rec["step"] for rec in _log(a)] == [1, 2, 3]

    r = runner.invoke(app, [*base, "--out", str(a)])  # no --resume: refuses to overwrite
    assert r.exit_code == 2 and "pass --resume" in r.output
    r = runner.invoke(app, [*base, "--out", str(a), "--resume"])
    assert r.exit_code == 0, r.output
    done = torch.load(a / "epoch_1.pth", weights_only=True)
    assert (done["step"], done["epoch_complete"], done["next_epoch"]) == (4, True, 2)
    assert done["scheduler"]["last_epoch"] == 2

    r = runner.invoke(app, [*base, "--out", str(b)])
    assert r.exit_code == 0, r.output
    log_a, log_b = _log(a), _log(b)
    assert [x["step"] for x in log_a] == [x["step"] for x in log_b] == [1, 2, 3, 4]
    for x, y in zip(log_a, log_b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
    merged_a = torch.load(a / "sam_hq_vit_tiny_trained.pth", weights_only=True)
    merged_b = torch.load(b / "sam_hq_vit_tiny_trained.pth", weights_only=True)
    assert merged_a.keys() == merged_b.keys()
    for k in merged_a:
        torch.testing.assert_close(merged_a[k], merged_b[k], rtol=1e-5, atol=1e-6)

    # the merged checkpoint: SAM weights as given, HQ parts trained, official layout
    start = torch.load(mobilesam, weights_only=True)
    assert all(torch.equal(merged_a[k], v) for k, v in start.items())
    assert {k for k in merged_a if k not in start} == {k for k in merged_a if _is_hq(k)}
    load_official("vit_tiny", "hq", a / "sam_hq_vit_tiny_trained.pth")  # strict
    build_model("vit_tiny", "hq", a / "sam_hq_vit_tiny_trained.pth")  # strict


def test_trainer_lowers_the_loss_and_feature_cache_skips_the_encoder(root, mobilesam, tmp_path, monkeypatch):
    """Six epochs of `train` (box prompts, no augmentation, for a clean signal) lower the loss; a second run
    reads every encoder output from the cache (the encoder is made to fail) and reproduces the first."""
    spec = TrainSpec(backbone="vit_tiny", checkpoint=str(mobilesam), data=str(root), out=str(tmp_path / "a"),
                     datasets=ONE, epochs=6, batch_size=1, lr=3e-4, workers=0,
                     cache_features=str(tmp_path / "cache"), augment=AugmentSpec(enabled=False),
                     prompts=PromptSpec(types=("box",)))
    first = train(spec)
    print("train() loss per step:", [round(v, 4) for v in first.losses])
    assert first.state.step == 6 and len(first.losses) == 6
    assert sum(first.losses[-2:]) / 2 < 0.85 * first.losses[0], first.losses
    assert len(list((tmp_path / "cache").glob("*/*.pt"))) == 1

    from hqsam_edge.model.tiny_vit import TinyViT

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although its features are cached")

    monkeypatch.setattr(TinyViT, "forward", no_encoder)
    log = io.StringIO()
    with progress.reporting(progress.Reporter(stream=log, interactive=False)):
        second = train(dataclasses.replace(spec, out=str(tmp_path / "b"), epochs=2))
    assert second.losses == pytest.approx(first.losses[:2], rel=1e-6)
    lines = log.getvalue().splitlines()  # one line per epoch when not on a terminal, with its seconds
    epoch = re.compile(r"\] (train: epoch \d+/\d+) \(\d+\.\d s, 1/1 steps, loss ")
    ends = [m.group(1) for m in map(epoch.search, lines) if m]
    assert ends == ["train: epoch 1/2", "train: epoch 2/2"], lines


def test_bad_inputs_end_in_one_line(root, mobilesam, tmp_path):
    runner = CliRunner()
    base = ["train", "--checkpoint", str(mobilesam), "--out", str(tmp_path / "o"), "--workers", "0"]
    r = runner.invoke(app, [*base, "--data", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "data root not found" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, [*base, "--data", str(root), "--datasets", "COIFT"])
    assert r.exit_code == 2 and "unknown train data set 'COIFT'" in r.output
    r = runner.invoke(app, [*base, "--data", str(root), "--datasets", "DIS5K-TR", "--datasets", "FSS",
                            "--batch-size", "3"])
    assert r.exit_code == 1 and "no full batch" in r.output
    r = runner.invoke(app, [*base, "--data", str(root), "--backbone", "vit_b", "--datasets", "DIS5K-TR",
                            "--batch-size", "1"])
    assert r.exit_code == 1 and "use --backbone vit_tiny" in r.output


def test_torchrun_two_processes_on_gloo(root, mobilesam, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hqsam_edge.cli", "train", "--backbone", "vit_tiny", "--checkpoint", str(mobilesam),
           "--data", str(root), "--datasets", "DIS5K-TR", "--datasets", "FSS", "--out", str(out), "--batch-size", "1",
           "--epochs", "1", "--max-steps", "1", "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "on 2 process(es)" in r.stdout
    log = _log(out)
    assert [(x["step"], x["world_size"]) for x in log] == [(1, 2)]  # one log line: rank 0 writes, losses averaged
    ckpt = torch.load(out / "epoch_0.pth", weights_only=True)
    assert (ckpt["world_size"], ckpt["step"], ckpt["epoch_complete"]) == (2, 1, True)
    load_official("vit_tiny", "hq", out / "sam_hq_vit_tiny_trained.pth")
