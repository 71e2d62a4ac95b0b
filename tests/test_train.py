"""Training runs for every model x net x data set, each logged to a real MLflow store."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from aevae.models import load_model
from aevae.stages.train import run as train
from conftest import TINY
from untrained import IMPROVED, untrained_model, validation_metrics

CONV_TINY = ["net=conv", "net.channels=[4,8]", "net.hidden_dim=16"]


def tiny(net: str) -> list[str]:
    """TINY settings for the given net."""
    return [o for o in TINY if not o.startswith("net.")] + CONV_TINY if net == "conv" else TINY


def read_run(tracking_uri: str):
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("aevae")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


@pytest.mark.parametrize("model", ["ae", "dae", "vae", "beta_vae"])
@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_train_on_digits_logs_to_mlflow(make_config, tracking_uri, tmp_path, model, net):
    overrides = [*tiny(net), f"model={model}"]
    cfg = make_config(overrides)
    metrics = train(cfg)

    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    assert (out / "checkpoints" / "last.ckpt").exists() and (out / "checkpoints" / "best.ckpt").exists()
    expected = {"val/loss", "val/recon", "val/mse"} | ({"val/kl", "val/elbo"} if "vae" in model else set())
    assert expected <= metrics.keys()

    client, run = read_run(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"train/{model}" and run.data.tags["aevae.model"] == model
    assert run.data.params["model.latent_dim"] == "4"
    assert not any("/" in name for name in run.data.params)  # the config once, not again as Lightning's hparams
    assert run.data.params["net.name"] == net
    assert run.data.tags["aevae.dataset"] == "digits"
    assert run.data.metrics["val/loss"] == pytest.approx(metrics["val/loss"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "history.csv", "reconstructions.png"} <= artifacts

    restored = load_model(out / "checkpoints" / "last.ckpt")
    assert type(restored).__name__ == ("VariationalAutoencoder" if "vae" in model else "Autoencoder")
    assert restored.cfg.corruption == cfg.model.corruption


@pytest.mark.parametrize("model", ["ae", "vae"])
@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_train_on_mnist(make_config, tracking_uri, tmp_path, mnist_root, model, net):
    brief = ["trainer.limit_train_batches=40", "model.lr=3e-3"]  # 1,280 images: enough to learn something
    cfg = make_config([*tiny(net), "data=mnist", f"data.path={mnist_root}", f"model={model}", *brief])
    metrics = train(cfg)
    # against the same model before training, on the same validation images: an untrained net
    # already scores val/mse 0.20-0.24 here, so a fixed bound such as 0.3 shows nothing
    untrained = validation_metrics(untrained_model(load_model(tmp_path / "out" / "checkpoints" / "last.ckpt"), cfg.seed), cfg)
    for term in ("loss", "mse"):
        assert metrics[f"val/{term}"] <= IMPROVED * untrained[f"val/{term}"], (term, metrics, untrained)
    _, run = read_run(tracking_uri)
    assert run.data.tags["aevae.dataset"] == "mnist"
    assert run.data.params["data.name"] == "mnist"


def test_training_improves_the_elbo(make_config):
    cfg = make_config(["trainer.max_epochs=3", "trainer.progress=none", "logger=none", "data.binarize=static"])
    train(cfg)
    history = (cfg.output_dir + "/history.csv")
    rows = [line.split(",") for line in open(history).read().splitlines()]
    column = rows[0].index("val/elbo")
    elbos = [float(row[column]) for row in rows[1:]]
    assert len(elbos) == 3 and elbos[-1] > elbos[0]


@pytest.mark.fast
def test_loss_drop_per_epoch_says_whether_validation_loss_levelled_off():
    from aevae.run.callbacks import loss_drop_per_epoch

    assert loss_drop_per_epoch([10.0]) == 0.0
    assert loss_drop_per_epoch([10.0, 8.0]) == 2.0
    assert loss_drop_per_epoch([20.0, 10.0, 7.0, 6.0, 6.0]) == pytest.approx(4.0 / 3)  # the last 3 epochs
    assert loss_drop_per_epoch([5.0, 5.0, 5.0, 5.5]) < 0  # rising again


@pytest.mark.fast
def test_plateau_metrics_tell_a_levelled_off_loss_from_a_falling_one():
    from aevae.run.callbacks import LEVELLED_OFF_PERCENT, plateau_metrics

    falling = plateau_metrics([120.0, 112.0, 111.0, 110.0, 109.0])  # 1 nat per epoch at 109: 0.92%
    assert falling["val/loss_drop_percent_per_epoch"] == pytest.approx(100 / 109)
    assert falling["val/levelled_off"] == 0.0
    flat = plateau_metrics([120.0, 104.6, 104.55, 104.5, 104.45])  # 0.05 nats per epoch: 0.048%
    assert flat["val/loss_drop_percent_per_epoch"] < LEVELLED_OFF_PERCENT
    assert flat["val/levelled_off"] == 1.0
    assert plateau_metrics([-50.0, -60.0, -61.0, -61.0])["val/loss_drop_percent_per_epoch"] > 0  # a gaussian NLL below 0 still falling
    assert plateau_metrics([5.0, 5.0, 5.0, 5.5])["val/levelled_off"] == 1.0  # rising again: not falling
    assert plateau_metrics([140.0])["val/levelled_off"] == 0.0  # one epoch shows no trend


def test_checkpoints_are_the_same_bytes_wherever_the_run_lives(tmp_path):
    """DVC hashes the checkpoint directory: two runs of one config in different directories (two
    clones) must write identical files, with no absolute path or MLflow run id inside."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    def run_in(where):
        args = [sys.executable, str(REPO_ROOT / "pipelines/train.py"), *TINY, "model=vae", "logger=none", "output_dir=out", "hydra.run.dir=hydra"]
        where.mkdir()
        result = subprocess.run(args, cwd=where, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return {p.name: p.read_bytes() for p in sorted((where / "out" / "checkpoints").iterdir())}

    first, second = run_in(tmp_path / "clone_a"), run_in(tmp_path / "clone_b")
    assert set(first) == {"best.ckpt", "last.ckpt", "run.json"}
    assert first == second
    assert b"clone_a" not in first["last.ckpt"] and json.loads(first["run.json"])["mlflow_run_id"] is None


def test_validation_draws_the_same_noise_every_epoch(make_config):
    """A VAE that does not change (a learning rate of 1e-12) has the same validation loss every
    epoch: each validation draws the same reparameterization noise, so a change of `val/loss`
    is the model's, not the sampling's (without that it moves by about 0.1% here)."""
    cfg = make_config([*TINY, "model=vae", "trainer.max_epochs=3", "trainer.limit_train_batches=2", "model.lr=1e-12", "logger=none"])
    train(cfg)
    history = [line.split(",") for line in (Path(cfg.output_dir) / "history.csv").read_text().splitlines()]
    losses = [float(row[history[0].index("val/loss")]) for row in history[1:]]
    assert len(losses) == 3 and max(losses) - min(losses) < 1e-4 * abs(losses[0]), losses


def test_compile_trains_at_the_study_batch_size(make_config, tmp_path):
    """`compile=true` compiles the loss, not the module's logging (a compiled module failed inside
    `log_dict` at batch 512): it trains to the eager run's numbers, in checkpoints eager code reads."""
    metrics = {}
    for compiled in (False, True):
        cfg = make_config(["net.hidden_dims=[32]", "model.latent_dim=4", "data.batch_size=512", "trainer.max_epochs=1",
                           "trainer.progress=none", "logger=none", f"compile={str(compiled).lower()}"])
        cfg.output_dir = str(tmp_path / str(compiled))
        metrics[compiled] = train(cfg)
    assert metrics[True]["val/loss"] == pytest.approx(metrics[False]["val/loss"], rel=5e-3)  # fused kernels round differently
    restored = load_model(tmp_path / "True" / "checkpoints" / "best.ckpt")
    assert "loss_terms" not in vars(restored)  # an eager model
