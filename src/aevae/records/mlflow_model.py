"""Trained models as MLflow models (pyfunc flavour): a training logs its best checkpoint as
`runs:/<run id>/model`, the report stage registers the study's models, and `open_model` opens one
again from a `runs:/` or `models:/` URI or from a checkpoint file.

`predict(images, params={"result": ...})` takes float32 images (N, C, H, W) in [0, 1] and returns
one result per image, as a NumPy array:
- an autoencoder (ae, dae, vae, beta_vae): `score` (the default), the anomaly stage's score
  (`score_anomaly`: an AE's reconstruction loss, a VAE's negative ELBO at the posterior mean),
  nats, (N,); `embedding`, the deterministic code (a VAE's posterior mean), (N, latent_dim);
  `reconstruction`, the mean reconstruction, (N, C, H, W); one that supports `classify` (the
  semi-supervised VAE) also `class`, the most probable digit, (N,);
- the digit classifier: `class` (the default), the predicted digit, (N,); `features`, its last
  hidden layer, (N, F).
`batch_size` (default: the training's `data.eval_batch_size`) is the images per forward pass.
"""

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec
from torch import Tensor

from aevae.records import tracking
from aevae.run.checkpoints import read_checkpoint
from aevae.errors import ConfigError, DataError
from aevae.evaluation.batches import map_batches
from aevae.io import save_tensors

MODEL_NAME = "model"  # a training's model: runs:/<run id>/model
WEIGHTS = "weights"  # the artifact with the weights and the small config (no optimizer state)
CHECKPOINT_TAG = "aevae.checkpoint_md5"  # on a logged model: the checkpoint it was logged from
EXAMPLE_IMAGES = 2  # images in a model's input example
REQUIREMENTS = ("torch", "lightning", "torchmetrics", "omegaconf", "mlflow")  # besides aevae itself
URI_SCHEMES = ("runs:/", "models:/")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download progress bars in stage logs

log = logging.getLogger(__name__)


class TrainedModel:
    """A trained model read from a checkpoint (Lightning's, or the weights of a logged model)."""

    def __init__(self, checkpoint: str | Path) -> None:
        from aevae.models import load_model  # Lightning: only once a model is opened
        from aevae.models.classifier import load_classifier

        hparams = read_checkpoint(checkpoint)["hyper_parameters"]  # DataError naming an unreadable one
        self.kind = "classifier" if "classifier" in hparams else "autoencoder"
        self.module = load_classifier(checkpoint) if self.kind == "classifier" else load_model(checkpoint)
        self.image_shape = tuple(hparams["image_shape"])
        self.functions = self.result_functions()
        self.results = tuple(self.functions)

    def result_functions(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """The module's function of each result it gives, the default first."""
        module = self.module
        if self.kind == "classifier":
            return {"class": module.predict, "features": module}
        functions = {"score": module.score_anomaly, "embedding": module.embed, "reconstruction": module.reconstruct}
        if module.supports("classify"):  # class probabilities (N, classes)
            functions["class"] = lambda x: module.classify(x).argmax(1)
        return functions

    def predict(self, images: np.ndarray, result: str, batch_size: int) -> np.ndarray:
        """`result` of each image, over batches of `batch_size` (as the anomaly stage scores)."""
        check_images(images, self.image_shape)
        check_result(result, self.results)
        return map_batches(self.functions[result], torch.from_numpy(images.astype(np.float32, copy=False)), batch_size).numpy()


def check_images(images: np.ndarray, image_shape: tuple[int, ...]) -> None:
    """DataError unless `images` is a float array (N, *image_shape) of finite values in [0, 1]."""
    if images.ndim != 1 + len(image_shape) or tuple(images.shape[1:]) != tuple(image_shape):
        raise DataError(f"images: the model takes (N, {', '.join(map(str, image_shape))}) images, got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"images: expected float values in [0, 1], got {images.dtype}")
    if images.size and not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
        raise DataError(f"images: values must be in [0, 1], got [{np.nanmin(images):g}, {np.nanmax(images):g}]; scale the pixel levels into [0, 1]")


def check_result(result: str, results: tuple[str, ...]) -> None:
    """ConfigError unless `result` is one of the model's `results`."""
    if result not in results:
        raise ConfigError(f"result: the model gives {', '.join(results)}; got {result!r}")


class ImagePyfunc(mlflow.pyfunc.PythonModel):
    """The pyfunc flavour of a `TrainedModel` (the module docstring lists what it returns)."""

    def load_context(self, context: Any) -> None:
        self.model = TrainedModel(context.artifacts[WEIGHTS])

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        return self.model.predict(model_input, params["result"], params["batch_size"])


class LoadedPyfunc:
    """A model logged by `log_trained_model`, loaded from a URI, with the interface of `TrainedModel`."""

    def __init__(self, pyfunc: Any, results: list[str]) -> None:
        self.pyfunc = pyfunc
        self.results = tuple(results)
        self.image_shape = tuple(pyfunc.metadata.get_input_schema().inputs[0].shape[1:])

    def predict(self, images: np.ndarray, result: str, batch_size: int) -> np.ndarray:
        """`result` of each image, by the pyfunc (checked first, to name a mistake in one line)."""
        check_images(images, self.image_shape)
        check_result(result, self.results)
        return self.pyfunc.predict(images.astype(np.float32), params={"result": result, "batch_size": batch_size})


@contextmanager
def use_store(uri: str) -> Iterator[None]:
    """MLflow's fluent API on the store `uri` inside the block. (`mlflow.set_tracking_uri` also
    sets $MLFLOW_TRACKING_URI, which is put back as it was afterwards.)"""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def file_md5(path: str | Path) -> str:
    """The hex MD5 of a file's bytes."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def log_trained_model(run: tracking.Run, checkpoint: str | Path, images: Tensor, batch_size: int) -> None:
    """Log the model of `checkpoint` to the open `run` as its pyfunc model `model` (weights and
    small config only), tagged with the checkpoint's MD5, its input example the first of
    `images`, its default `batch_size`. Nothing when tracking is off."""
    if not run.client:
        return
    md5 = file_md5(checkpoint)
    if any(model.source_run_id == run.run_id for model in logged_models(run, md5)):
        return  # a finished training run again: its model is there
    with tempfile.TemporaryDirectory() as tmp:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        weights = save_tensors(Path(tmp) / "weights.pt", {key: state[key] for key in ("hyper_parameters", "state_dict")})
        model = TrainedModel(weights)
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *model.image_shape))]),
            params=ParamSchema([ParamSpec("result", "string", model.results[0]), ParamSpec("batch_size", "long", batch_size)]),
        )
        # created here, in the run's experiment (MLflow's fluent API would pick the active one)
        logged = run.client.create_logged_model(run.experiment_id, name=MODEL_NAME, source_run_id=run.run_id, tags={CHECKPOINT_TAG: md5})
        with use_store(run.uri):
            Model.log(
                artifact_path=None,
                name=MODEL_NAME,
                flavor=mlflow.pyfunc,
                run_id=run.run_id,
                model_id=logged.model_id,
                python_model=Path(__file__).with_name("mlflow_model_code.py"),
                artifacts={WEIGHTS: str(weights)},
                signature=signature,
                input_example=images[:EXAMPLE_IMAGES].float().cpu().numpy(),
                pip_requirements=[f"{name}=={version(name)}" for name in REQUIREMENTS],
                metadata={"kind": model.kind, "results": list(model.results)},
            )


def logged_models(run: tracking.Run, md5: str) -> list[Any]:
    """The models logged from the checkpoint of MD5 `md5` in `run`'s experiment, newest first."""
    query = f"tags.`{CHECKPOINT_TAG}` = '{md5}' AND name = '{MODEL_NAME}'"
    return list(run.client.search_logged_models([run.experiment_id], filter_string=query, order_by=[{"field_name": "creation_timestamp", "ascending": False}]))


def open_model(model: str, tracking_uri: str) -> TrainedModel | LoadedPyfunc:
    """The model that `model` names: a `runs:/` or `models:/` URI in the store `tracking_uri`, or a
    checkpoint file. ConfigError (naming it) for an unknown URI or one that does not load."""
    if model.startswith(URI_SCHEMES):
        tracking.check_reachable(tracking_uri)
        if tracking_uri.startswith(tracking.SQLITE) and not Path(tracking_uri.removeprefix(tracking.SQLITE)).is_file():
            raise ConfigError(f"model_uri: {model} names a model in MLflow, but there is no store at {tracking_uri} (set tracking_uri)")
        try:
            with use_store(tracking_uri):
                pyfunc = mlflow.pyfunc.load_model(model)
        except MlflowException as exc:
            raise ConfigError(f"model_uri: cannot load {model}: {exc.message.splitlines()[0]}") from exc
        results = (pyfunc.metadata.metadata or {}).get("results")
        if not results:
            raise ConfigError(f"model_uri: {model} is not an image model of aevae (its metadata names no results)")
        return LoadedPyfunc(pyfunc, results)
    if URI.match(model):
        raise ConfigError(f"model_uri: unknown model URI {model!r}; expected runs:/<run id>/model, models:/<name>/<version> or a checkpoint file")
    if not Path(model).is_file():
        raise ConfigError(f"model_uri: no checkpoint file {model}")
    return TrainedModel(model)


def register_model(run: tracking.Run, name: str, checkpoint: str | Path, tags: dict[str, str]) -> str | None:
    """Register the newest model logged from `checkpoint` in `run`'s experiment as a version of
    `name`, tagged with `tags`, its training run's id and git commit; a version of that model
    already there is kept, not repeated. Returns the version, or None when no model in the store
    was logged from the checkpoint (one restored from a DVC cache, say)."""
    found = logged_models(run, file_md5(checkpoint))
    if not found:
        return None
    model = found[0]
    existing = run.client.search_model_versions(f"name = '{name}' and run_id = '{model.source_run_id}'")
    if existing:
        return str(existing[0].version)
    try:
        run.client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    commit = run.client.get_run(model.source_run_id).data.tags.get("mlflow.source.git.commit", "unknown")
    tags = {**tags, "run_id": model.source_run_id, "git_commit": commit}
    with use_store(run.uri):  # a SQL registry reads the logged model through MLflow's global store
        version = run.client.create_model_version(name, f"models:/{model.model_id}", run_id=model.source_run_id, tags=tags, model_id=model.model_id)
    return str(version.version)


def register_models(run: tracking.Run, dataset: str, checkpoints: dict[str, Path]) -> dict[str, str]:
    """Register each model of `checkpoints` (model name -> its checkpoint) as
    `aevae-<dataset>-<model>` (see `register_model`) in the store of the open `run`; returns
    registered name -> version."""
    if not run.client:
        return {}
    versions = {}
    for key, checkpoint in checkpoints.items():
        name = f"aevae-{dataset}-{key}"
        number = register_model(run, name, checkpoint, {"aevae.dataset": dataset, "aevae.model": key})
        if number is None:
            log.warning("%s not registered: no MLflow run in this store logged %s", name, checkpoint)
        else:
            versions[name] = number
    return versions
