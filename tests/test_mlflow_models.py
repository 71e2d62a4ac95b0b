"""Trained models as MLflow models: loaded in a fresh process, served over HTTP by
`mlflow models serve`, registered, and applied to new images by `pipelines/score.py`; each gives
the anomaly stage's scores."""

import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from matplotlib.image import imsave
from mlflow import MlflowClient
from omegaconf import DictConfig, open_dict

from aevae.records import tracking
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.errors import AevaeError
from aevae.records.mlflow_model import CHECKPOINT_TAG, TrainedModel, open_model, register_models
from aevae.models import build_model, load_model
from aevae.models.classifier import DigitClassifier
from aevae.stages import classifier, score, train
from aevae.evaluation.anomaly import one_class_cases
from aevae.evaluation.batches import map_batches
from aevae.stages.anomaly import class_config
from aevae.config import validate
from conftest import CONF_DIR, REPO_ROOT, TINY, free_port, stop_process_group

N_IMAGES = 100  # the test split's first images
SERVE_START_TIMEOUT_S = 120


class Trained(NamedTuple):
    uri: str  # the MLflow store
    run: tracking.Run  # the training run
    checkpoint: Path
    images: np.ndarray  # the test split's first N_IMAGES, (N, 1, 8, 8) float32
    scores: np.ndarray  # the anomaly stage's scores of them


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny VAE trained on one normal class (as the anomaly stage does, in a temporary store)
    and the anomaly stage's scores of the first test images."""
    tmp = tmp_path_factory.mktemp("mlflow_models")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="anomaly", overrides=[*TINY, "model=vae", "normal_classes=[0]"])
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with open_dict(cfg):
        cfg.output_dir, cfg.logger.tracking_uri = str(tmp / "out"), uri
    class_cfg = class_config(validate(cfg), one_class_cases(range(10), [0])[0])
    train.run(class_cfg)
    checkpoint = Path(class_cfg.output_dir) / "checkpoints" / "best.ckpt"
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
    datamodule.setup()
    images = datamodule.tensors["test"][0][:N_IMAGES]
    scores = map_batches(load_model(checkpoint).score_anomaly, images, cfg.data.eval_batch_size).numpy()  # the stage's `<model>` method
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id
    (run,) = client.search_runs([experiment], filter_string="tags.`aevae.stage` = 'anomaly'")
    return Trained(uri, tracking.Run(client, run.info.run_id, experiment, uri), checkpoint, images.numpy(), scores)


def test_a_logged_model_loads_in_a_fresh_process_outside_the_checkout(trained, tmp_path):
    """`mlflow.pyfunc.load_model("runs:/<id>/model")` with nothing of the project's workspace."""
    np.save(tmp_path / "images.npy", trained.images)
    script = (
        "import sys, mlflow, numpy as np\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "model = mlflow.pyfunc.load_model(sys.argv[2])\n"
        "images = np.load('images.npy')\n"
        "np.save('scores.npy', model.predict(images))\n"
        "np.save('embeddings.npy', model.predict(images, params={'result': 'embedding'}))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    subprocess.run([sys.executable, "-c", script, trained.uri, f"runs:/{trained.run.run_id}/model"], cwd=tmp_path, env=env, check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), trained.scores, rtol=1e-6)
    assert np.load(tmp_path / "embeddings.npy").shape == (N_IMAGES, 4)


def test_a_logged_model_holds_weights_and_config_only(trained):
    run = trained.run.client.get_run(trained.run.run_id)
    (model,) = trained.run.client.search_logged_models([trained.run.experiment_id], filter_string="name = 'model'")
    assert model.source_run_id == run.info.run_id and model.tags[CHECKPOINT_TAG]
    weights = Path(model.artifact_location.removeprefix("file://")) / "artifacts" / "weights.pt"
    assert weights.stat().st_size < trained.checkpoint.stat().st_size / 2  # no optimizer state


@pytest.mark.parametrize(
    ("overrides", "results"),
    [
        (["model=ae"], ("score", "embedding", "reconstruction")),
        (["model=ssvae"], ("score", "embedding", "reconstruction", "class")),
        (None, ("class", "features")),
    ],
    ids=["ae", "ssvae", "classifier"],
)
def test_each_kind_of_model_gives_its_results(make_config, tmp_path, trained, overrides, results):
    if overrides is None:
        cfg = make_config(config_name="classifier")
        module = DigitClassifier(validate(cfg).classifier, [1, 8, 8])
    else:
        cfg = make_config([*TINY, *overrides])
        module = build_model(validate(cfg).model, validate(cfg).net, [1, 8, 8])
    checkpoint = tmp_path / "untrained.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, checkpoint)
    model = TrainedModel(checkpoint)
    assert model.results == results
    for result in results:
        values = model.predict(trained.images[:5], result, batch_size=2)
        assert len(values) == 5 and np.isfinite(values).all()
    if "class" in results:
        assert set(model.predict(trained.images, "class", batch_size=64).tolist()) <= set(range(10))


def test_the_classifier_stage_logs_its_model(make_config, tracking_uri, trained):
    cfg = make_config(["trainer=debug", "classifier.hidden_dims=[16]"], config_name="classifier")
    classifier.run(cfg)
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aevae").experiment_id], filter_string="tags.`aevae.stage` = 'classifier'")
    model = open_model(f"runs:/{run.info.run_id}/model", tracking_uri)
    assert model.results == ("class", "features") and model.image_shape == (1, 8, 8)
    assert model.predict(trained.images, "features", batch_size=64).shape == (N_IMAGES, 16)


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_ready(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow models serve exited: {log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow models serve at {url} not ready after {SERVE_START_TIMEOUT_S}s")


def test_a_registered_model_is_served_over_http(trained, tmp_path):
    """The report stage's registration, then `mlflow models serve` of `models:/<name>/<version>`."""
    versions = register_models(trained.run, "digits", {"vae": trained.checkpoint})
    assert versions == {"aevae-digits-vae": "1"}
    assert register_models(trained.run, "digits", {"vae": trained.checkpoint}) == versions  # not repeated
    version = trained.run.client.get_model_version("aevae-digits-vae", "1")
    assert version.run_id == trained.run.run_id and version.tags["run_id"] == trained.run.run_id and "git_commit" in version.tags

    port = free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/aevae-digits-vae/1", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = tmp_path / "serve.log"
    with log.open("w") as log_file:
        env = {**os.environ, "MLFLOW_TRACKING_URI": trained.uri, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # the server runs the venv's uvicorn
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server, log)
        scores = post_json(f"{url}/invocations", {"inputs": trained.images.tolist()})["predictions"]
        np.testing.assert_allclose(np.asarray(scores, dtype=np.float32), trained.scores, rtol=1e-6)
        recon = post_json(f"{url}/invocations", {"inputs": trained.images[:3].tolist(), "params": {"result": "reconstruction"}})["predictions"]
        assert np.asarray(recon).shape == (3, 1, 8, 8)
    finally:
        stop_process_group(server)


def score_cli(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
    """`pipelines/score.py` with `args`, its Hydra run directory in `cwd`."""
    command = [sys.executable, str(REPO_ROOT / "pipelines" / "score.py"), *args, f"tracking_uri={uri}", f"hydra.run.dir={cwd / 'run'}"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def score_config(args: list[str], uri: str, output: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="score", overrides=[*args, f"tracking_uri={uri}", f"output={output}"])


def test_the_score_entry_point_reproduces_the_anomaly_scores(trained, tmp_path):
    np.save(tmp_path / "images.npy", trained.images[:, 0])  # (N, H, W): one channel, left out
    done = score_cli([f"model_uri=runs:/{trained.run.run_id}/model", "images=images.npy", "output=scores.npy"], tmp_path, trained.uri)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), trained.scores, rtol=1e-6)


def test_a_checkpoint_scores_a_folder_of_pngs_into_csv(trained, tmp_path):
    (tmp_path / "pngs").mkdir()
    for index, image in enumerate(trained.images[:3, 0]):  # 8-bit PNGs: the 17 levels, rounded
        imsave(tmp_path / "pngs" / f"{index}.png", image, cmap="gray", vmin=0, vmax=1)
    cfg = score_config([f"model_uri={trained.checkpoint}", f"images={tmp_path / 'pngs'}", "result=score"], trained.uri, tmp_path / "scores.csv")
    assert score.run(cfg) == {"images": 3.0}
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert [row["image"] for row in rows] == ["0.png", "1.png", "2.png"]
    np.testing.assert_allclose([float(row["score"]) for row in rows], trained.scores[:3], rtol=1e-2)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["model_uri=runs:/0123456789abcdef/model", "images=images.npy"], "model_uri: cannot load runs:/0123456789abcdef/model"),
        (["model_uri=s3://bucket/model", "images=images.npy"], "model_uri: unknown model URI 's3://bucket/model'"),
        (["model_uri={checkpoint}", "images=wide.npy"], "images: the model takes (N, 1, 8, 8) images, got shape (2, 1, 8, 9)"),
        (["model_uri={checkpoint}", "images=images.txt"], "images: expected an .npy or .npz file or a folder of PNG files"),
        (["model_uri={checkpoint}", "images=images.npy", "result=class"], "result: the model gives score, embedding, reconstruction; got 'class'"),
    ],
    ids=["unknown-run", "unknown-scheme", "wrong-shape", "not-an-array", "unknown-result"],
)
def test_bad_input_to_the_score_stage_is_named(trained, tmp_path, monkeypatch, args, error):
    monkeypatch.chdir(tmp_path)
    np.save("images.npy", trained.images[:2])
    np.save("wide.npy", np.zeros((2, 1, 8, 9), dtype=np.float32))
    cfg = score_config([arg.format(checkpoint=trained.checkpoint) for arg in args], trained.uri, tmp_path / "results.npy")
    with pytest.raises(AevaeError) as raised:
        score.run(cfg)
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value) and not (tmp_path / "results.npy").exists()


def test_images_out_of_range_are_one_line_and_exit_2(trained, tmp_path):
    np.save(tmp_path / "raw.npy", trained.images[:2] * 16)  # pixel levels, not scaled to [0, 1]
    done = score_cli([f"model_uri={trained.checkpoint}", "images=raw.npy"], tmp_path, trained.uri)
    assert done.returncode == 2 and done.stderr.strip() == "error: images: values must be in [0, 1], got [0, 16]; scale the pixel levels into [0, 1]", done.stderr
    assert not (tmp_path / "run" / "results.npy").exists()
