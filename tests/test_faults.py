"""Faults: a killed training resumes to the same result, NaN stops cleanly, bad data exits early."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from aevae.errors import TrainingError
from aevae.io import write_atomic
from aevae.models import MODELS, Autoencoder
from aevae.stages.train import run as train
from conftest import REPO_ROOT

SLOW_ENOUGH_TO_KILL = ["data.batch_size=16", "net.hidden_dims=[64]", "trainer.max_epochs=4", "trainer.enable_progress_bar=false"]


def train_command(output_dir: Path, tracking_uri: str) -> list[str]:
    return [
        sys.executable, "pipelines/train.py", *SLOW_ENOUGH_TO_KILL,
        f"output_dir={output_dir}", f"logger.tracking_uri={tracking_uri}", f"hydra.run.dir={output_dir}/hydra",
    ]


def test_killed_training_resumes_into_the_same_run_and_ends_like_an_uninterrupted_one(tmp_path, tracking_uri):
    interrupted, uninterrupted = tmp_path / "interrupted", tmp_path / "uninterrupted"
    process = subprocess.Popen(train_command(interrupted, tracking_uri), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (interrupted / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    record = json.loads((interrupted / "checkpoints" / "run.json").read_text())
    assert not record["finished"], "the kill came too late to test resuming"

    resumed = subprocess.run(train_command(interrupted, tracking_uri), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr + resumed.stdout
    subprocess.run(train_command(uninterrupted, tracking_uri), cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)

    assert (interrupted / "metrics.json").read_text() == (uninterrupted / "metrics.json").read_text()
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    assert len(runs) == 2  # the resumed training logged into its first run
    assert {run.info.run_id for run in runs} >= {record["mlflow_run_id"]}
    assert all(run.info.status == "FINISHED" for run in runs)


class NaNAfterFirstEpoch(Autoencoder):
    """An autoencoder whose loss turns NaN in its second epoch."""

    def loss_terms(self, x_in, target):
        terms = super().loss_terms(x_in, target)
        if self.training and self.current_epoch >= 1:
            terms["loss"] = terms["loss"] * torch.nan
        return terms


def test_non_finite_loss_stops_with_the_step_keeps_the_checkpoint_and_fails_the_run(make_config, tracking_uri, monkeypatch, tmp_path):
    monkeypatch.setitem(MODELS, "nan_ae", NaNAfterFirstEpoch)
    cfg = make_config(["model=ae", "model.name=nan_ae", "trainer.max_epochs=3", "trainer.enable_progress_bar=false", "net.hidden_dims=[16]"])
    with pytest.raises(TrainingError, match=r"non-finite loss at step 18 \(epoch 1\): loss=nan, recon=[\d.]+"):
        train(cfg)
    checkpoint = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    assert run.info.status == "FAILED"


def test_same_seed_gives_identical_metrics_files(tmp_path):
    outputs = []
    for name in ("first", "second"):
        subprocess.run(
            [sys.executable, "pipelines/train.py", "trainer.max_epochs=2", "logger=none", "trainer.enable_progress_bar=false",
             f"output_dir={tmp_path / name}", f"hydra.run.dir={tmp_path / name}"],
            cwd=REPO_ROOT, check=True, capture_output=True, timeout=300,
        )
        outputs.append((tmp_path / name / "metrics.json").read_bytes())
    assert outputs[0] == outputs[1]


def test_corrupt_data_file_exits_early_with_one_line(tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"\x1f\x8b not really gzip")
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", "data=mnist", f"data.root={tmp_path}", "logger=none", f"output_dir={tmp_path / 'out'}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "md5" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_failed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def fail_halfway(tmp: Path) -> None:
        tmp.write_text('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(target, fail_halfway)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
