"""DDP on CPU with 2 real processes (gloo): the same answers as one process, one run, one set of outputs.

Training differs between 1 and 2 processes (other batches per step), so the equality checks evaluate
ONE fixed checkpoint under both. The model is a deterministic AE trained on class 0 only, so its
test metrics do not depend on random draws. DDP runs Lightning's stock `ddp_spawn` strategy.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import DictConfig, open_dict

from aevae.records import tracking
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.models import load_model
from aevae.stages.train import build_trainer
from aevae.stages.train import run as train
from conftest import CONF_DIR, REPO_ROOT, TINY

EVAL_BATCH = 64  # 359 digits test images: not a multiple of 2 x 64, so the ranks' last batches differ
ANOMALY = ["model=ae", "data.train_classes=[0]", f"data.eval_batch_size={EVAL_BATCH}", "trainer.progress=none"]
# a real DDP training from the command line: 3 steps per epoch, the whole val split each epoch
CLI_TINY = ["trainer=ddp_cpu", "trainer.max_epochs=2", "trainer.limit_train_batches=3", *TINY[1:], *ANOMALY]


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
    return cfg


def evaluate(trainer_name: str, checkpoint: Path, stage: str):
    """Run `stage` ("test" or "validate") on `checkpoint` with the trainer config `trainer_name`."""
    cfg = compose_train([f"trainer={trainer_name}", *ANOMALY, "logger=none"], checkpoint.parent)
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
    trainer = build_trainer(cfg.trainer, cfg.output_dir, logger=False, callbacks=[], name=stage)
    return getattr(trainer, stage)(load_model(checkpoint), datamodule=datamodule, verbose=False)[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The last checkpoint of a tiny single-process AE trained on class 0."""
    out = tmp_path_factory.mktemp("ae")
    train(compose_train([*TINY, *ANOMALY, "logger=none"], out))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def test_split(checkpoint) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = compose_train(ANOMALY, checkpoint.parent)
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data)
    return datamodule.split("test")


def test_two_processes_give_the_single_process_test_metrics(checkpoint, test_split):
    images, _ = test_split
    assert len(images) % (2 * EVAL_BATCH) != 0
    with torch.no_grad():
        exact = {f"test/{name}": value.mean().item() for name, value in load_model(checkpoint).loss_terms(images, images).items()}

    one = evaluate("cpu", checkpoint, "test")
    two = evaluate("ddp_cpu", checkpoint, "test")

    assert one.keys() == two.keys() == exact.keys() == {"test/loss", "test/recon", "test/mse"}
    for name, value in exact.items():  # float32 sums in another order: 1e-5 relative is ample
        assert one[name] == pytest.approx(value, rel=1e-5), name
        assert two[name] == pytest.approx(value, rel=1e-5), name


def run_cli(cwd: Path, tracking_uri: str, *args: str) -> None:
    """Run `pipelines/train.py` with `args` (flags first) and the tiny DDP settings, in `cwd`."""
    command = [sys.executable, str(REPO_ROOT / "pipelines" / "train.py"), *args, *CLI_TINY, f"logger.tracking_uri={tracking_uri}"]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def training_runs(tracking_uri: str) -> list:
    """The training runs in the store (a sweep's group parent run does not train)."""
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    return [run for run in runs if run.data.tags.get(tracking.ROLE_TAG) != "parent"]


def output_files(root: Path, pattern: str) -> list[Path]:
    """Files under `root` matching `pattern`, outside the MLflow artifact store (which keeps copies)."""
    return [p for p in root.rglob(pattern) if "mlartifacts" not in p.relative_to(root).parts]


def assert_one_set_of_outputs(job_dir: Path, run) -> dict[str, float]:
    """The job's files exist once, and its metrics are finite and the ones in its MLflow run."""
    assert sorted(p.name for p in job_dir.glob("checkpoints/*.ckpt")) == ["best.ckpt", "last.ckpt"]
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and all(math.isfinite(value) for value in metrics.values())
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val/loss"] == pytest.approx(metrics["val/loss"])
    return metrics


def test_ddp_training_from_the_command_line_makes_one_run_and_one_output_dir(tmp_path, tracking_uri):
    run_cli(tmp_path, tracking_uri)

    (run,) = training_runs(tracking_uri)
    (job_dir,) = (tmp_path / "outputs" / "train").iterdir()
    assert [p.parent for p in output_files(tmp_path, "metrics.json")] == [job_dir]
    assert len(output_files(tmp_path, "*.ckpt")) == 2 and len(output_files(tmp_path, "*.log")) == 1
    metrics = assert_one_set_of_outputs(job_dir, run)
    # val/* are synced over both ranks: they equal one process validating the final weights
    single = evaluate("cpu", job_dir / "checkpoints" / "last.ckpt", "validate")
    for name in ("val/loss", "val/recon", "val/mse"):
        assert metrics[name] == pytest.approx(single[name], rel=1e-5), name


def test_ddp_multirun_makes_one_run_and_one_output_dir_per_job(tmp_path, tracking_uri):
    run_cli(tmp_path, tracking_uri, "-m", "seed=1,2")

    runs = training_runs(tracking_uri)
    assert sorted(run.data.params["seed"] for run in runs) == ["1", "2"]
    assert not (tmp_path / "outputs").exists()  # no rank fell back to a single-run directory
    (sweep_dir,) = (tmp_path / "multirun" / "train").iterdir()
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]
    assert sorted(str(p.parent.relative_to(sweep_dir)) for p in output_files(tmp_path, "metrics.json")) == ["0", "1"]
    assert len(output_files(tmp_path, "*.ckpt")) == 4 and len(output_files(tmp_path, "*.log")) == 2
    for run in runs:
        job_dir = sweep_dir / str(int(run.data.params["seed"]) - 1)
        assert_one_set_of_outputs(job_dir, run)


def test_ranks_started_by_torchrun_make_one_run_and_every_rank_exits_cleanly(tmp_path, tracking_uri):
    """One process per device started from outside (torchrun, as srun would): rank 0 writes the
    outputs and the MLflow run; the other rank agrees it has nothing to validate and exits 0.
    Run again with another seed, rank 0 alone removes the first run's checkpoints (the other rank
    only reads the folder) and every rank starts afresh."""
    torchrun = Path(sys.executable).parent / "torchrun"
    job_dir = tmp_path / "job"
    for seed in (1, 2):
        command = [
            str(torchrun), "--nproc_per_node=2", str(REPO_ROOT / "pipelines" / "train.py"), *CLI_TINY,
            "trainer.strategy=ddp", f"seed={seed}", f"logger.tracking_uri={tracking_uri}", f"hydra.run.dir={job_dir}",
        ]  # fmt: skip
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("train/") == 1  # the closing summary, from rank 0 only
    runs = {run.data.params["seed"]: run for run in training_runs(tracking_uri)}
    assert sorted(runs) == ["1", "2"]
    metrics = assert_one_set_of_outputs(job_dir, runs["2"])
    assert metrics["val/loss"] != pytest.approx(runs["1"].data.metrics["val/loss"])
