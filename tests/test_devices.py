"""Devices: a GPU asked for where none is usable stops every stage in one line (exit 2); on a
machine with CUDA, the `gpu` tests run training, evaluation, anomaly detection and the probe on
the GPU and compare bf16-mixed with fp32 results."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT

NO_CUDA = not torch.cuda.is_available()
GPU_TOLERANCE = 0.05  # relative: bf16 autocast vs fp32 training of the same tiny model


def cli(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    where = [f"output_dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/hydra", "logger=none"]
    return subprocess.run([sys.executable, *args, *where], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is usable here")
@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["pipelines/train.py", "trainer=gpu"], "trainer.accelerator"),
        (["pipelines/train.py", "trainer=ddp"], "trainer.accelerator"),
        (["pipelines/anomaly.py", "trainer=gpu"], "trainer.accelerator"),
        (["pipelines/classifier.py", "trainer=gpu"], "trainer.accelerator"),
        (["pipelines/evaluate.py", "+models.ae=x.ckpt", "device=cuda"], "device"),
        (["pipelines/probe.py", "+models.ae=x.ckpt", "device=cuda:0"], "device"),
    ],
)
def test_a_gpu_without_cuda_is_one_line_and_exit_2(args, key, tmp_path):
    result = cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {key}:") and "no CUDA device" in line
    assert not (tmp_path / "out").exists()


def train_and_evaluate(tmp_path, precision: str) -> dict[str, float]:
    run = tmp_path / precision
    common = ["model=vae", "trainer=gpu", f"trainer.precision={precision}", "trainer.max_epochs=3", "trainer.progress=none"]
    assert cli(["pipelines/train.py", *common], run).returncode == 0
    checkpoint = run / "out" / "checkpoints" / "best.ckpt"
    evaluated = run / "evaluated"
    evaluated.mkdir()
    result = cli(["pipelines/evaluate.py", f"+models.vae={checkpoint}", "device=cuda", "likelihood.samples=100"], evaluated)
    assert result.returncode == 0, result.stderr
    probed = run / "probed"
    probed.mkdir()
    result = cli(["pipelines/probe.py", f"+models.vae={checkpoint}", "device=cuda", "labels_per_class=[10]", "repeats=2"], probed)
    assert result.returncode == 0, result.stderr
    return json.loads((evaluated / "out" / "metrics.json").read_text()) | json.loads((probed / "out" / "metrics.json").read_text())


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_gpu_stages_run_and_bf16_matches_fp32(tmp_path):
    fp32, bf16 = train_and_evaluate(tmp_path, "32-true"), train_and_evaluate(tmp_path, "bf16-mixed")
    for key in ("vae/test/mse", "vae/test/elbo", "vae/test/nll_iwae", "probe/vae/n10/acc_mean"):
        assert bf16[key] == pytest.approx(fp32[key], rel=GPU_TOLERANCE), key
    anomaly = cli(["pipelines/anomaly.py", "model=vae", "trainer=gpu", "trainer.max_epochs=2", "normal_classes=[0]", "likelihood.samples=20"], tmp_path / "anomaly")
    assert anomaly.returncode == 0, anomaly.stderr
