"""The semi-supervised probe: labelled subsets, the paired protocol, its errors and the stage."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import open_dict

from aevae.config import validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.errors import ConfigError
from aevae.data.subsets import labelled_subset, labelled_subsets
from aevae.evaluation.probe import logistic_probe, probe_runs, probe_table, resolve_pca_components, svm_probe
from aevae.stages.probe import run as run_probe
from aevae.models import build_model, load_model
from aevae.stages.train import run as train
from conftest import CONF_DIR, REPO_ROOT, TINY
from untrained import untrained_checkpoint

CHANCE = 0.1  # the accuracy of a guess among the 10 digits


def LOGREG():
    return logistic_probe(C=1.0, max_iter=200)


@pytest.fixture(scope="module")
def digits():
    """The digits splits as the probe sees them: flattened train/test images and labels."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="probe")
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data)
    datamodule.setup()
    (train_x, train_y), (test_x, test_y) = datamodule.tensors["train"], datamodule.tensors["test"]
    return train_x.flatten(1).numpy(), train_y.numpy(), test_x.flatten(1).numpy(), test_y.numpy()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny AE and VAE trained on digits for 5 epochs: feature name -> best checkpoint."""
    root = tmp_path_factory.mktemp("models")
    paths = {}
    brief = ["trainer.limit_train_batches=null", "trainer.max_epochs=5", "model.lr=3e-3"]
    for model in ("ae", "vae"):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[*TINY, *brief, f"model={model}", "logger=none"])
        with open_dict(cfg):
            cfg.output_dir = str(root / model)
        train(cfg)
        paths[model] = root / model / "checkpoints" / "best.ckpt"
    return paths


@pytest.mark.fast
def test_labelled_subsets_are_balanced_seeded_and_nested(digits):
    train_x, train_y, test_x, _ = digits
    test_images = {row.tobytes() for row in test_x}
    for budget in (1, 10, 100):
        subset = labelled_subset(train_y, budget, seed=3)
        assert np.bincount(train_y[subset]).tolist() == [budget] * 10
        assert len(np.unique(subset)) == len(subset) and subset.max() < len(train_y)
        assert not any(train_x[i].tobytes() in test_images for i in subset)  # digits has no duplicate images
        np.testing.assert_array_equal(subset, labelled_subset(train_y, budget, seed=3))
    assert set(labelled_subset(train_y, 10, seed=3)) <= set(labelled_subset(train_y, 100, seed=3))
    assert set(labelled_subset(train_y, 10, seed=0)) != set(labelled_subset(train_y, 10, seed=1))
    assert len(labelled_subset(train_y, None, seed=0)) == len(train_y)


@pytest.mark.fast
def test_every_feature_sees_the_same_subsets(digits):
    """Two copies of one feature get identical accuracies per seed (paired), different across seeds."""
    train_x, train_y, test_x, test_y = digits
    features = {"a": (train_x, test_x), "b": (train_x.copy(), test_x.copy())}
    runs = probe_runs(features, train_y, test_y, labelled_subsets(train_y, [1, None], seeds=[0, 1, 2]), make_classifier=LOGREG)
    by_key = {(run["feature"], run["budget"], run["seed"]): run["accuracy"] for run in runs}
    for budget, seeds in (("n1", [0, 1, 2]), ("all", [0])):
        for seed in seeds:
            assert by_key["a", budget, seed] == by_key["b", budget, seed]
    assert len({by_key["a", "n1", seed] for seed in (0, 1, 2)}) == 3
    assert len(runs) == 2 * (3 + 1)  # the `all` budget is fitted once


@pytest.mark.fast
def test_pixel_probe_with_all_labels_is_accurate(digits):
    train_x, train_y, test_x, test_y = digits
    (run,) = probe_runs({"pixels": (train_x, test_x)}, train_y, test_y, labelled_subsets(train_y, [None], seeds=[0]), make_classifier=LOGREG)
    assert run["accuracy"] > 0.93
    shuffled_y = np.random.default_rng(0).permutation(train_y)
    (shuffled,) = probe_runs({"pixels": (train_x, test_x)}, shuffled_y, test_y, labelled_subsets(shuffled_y, [None], [0]), LOGREG)
    assert shuffled["accuracy"] < 0.3  # labels that do not belong to their images carry no signal


@pytest.mark.fast
def test_probe_table_orders_budgets_numerically():
    metrics = {}
    for feature, accuracy in (("vae", 0.8), ("pixels", 0.9)):
        for budget, std in (("n100", 0.01), ("all", 0.0), ("n10", 0.02)):
            metrics[f"probe/{feature}/{budget}/acc_mean"] = accuracy
            metrics[f"probe/{feature}/{budget}/acc_std"] = std
    lines = probe_table({"test/mse": 0.1, **metrics}).splitlines()
    assert lines[0] == "| feature | 10 / class | 100 / class | all labels |"
    assert lines[2] == "| vae | 0.800 ± 0.020 | 0.800 ± 0.010 | 0.800 ± 0.000 |"
    assert lines[3].startswith("| pixels | 0.900 ± 0.020")


@pytest.mark.fast
def test_budget_above_the_smallest_class_is_rejected_before_models_load(make_config, tmp_path):
    cfg = make_config(["labels_per_class=[1,101]", "+models.ae=missing.ckpt"], config_name="probe")
    with pytest.raises(ConfigError, match=r"labels_per_class: a budget of 101 .* the 100 training images of class 2"):
        run_probe(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("labels_per_class=[0,10]", "labels_per_class"),
        ("labels_per_class=[10,10]", "labels_per_class"),
        ("labels_per_class=[]", "labels_per_class"),
        ("repeats=0", "repeats"),
        ("logreg.C=0", "logreg.C"),
        ("data.train_classes=[0,1]", "data.train_classes"),
        ("+models.pixels=x.ckpt", "models"),
        ("+logreg.tol=0.1", "logreg"),
    ],
)
@pytest.mark.fast
def test_bad_probe_config_is_rejected(make_config, override, key):
    """(An unknown baseline, an Enum choice, is already rejected while composing: test_config.)"""
    cfg = make_config([override, "all_labels=false"], config_name="probe")
    with pytest.raises(ConfigError, match=f"^{key}: "):
        validate(cfg)


def test_pca_size_comes_from_the_models_or_the_config(checkpoints):
    models = {name: load_model(path) for name, path in checkpoints.items()}
    assert resolve_pca_components(None, models) == 4
    models["large"] = build_model({**models["ae"].hparams["model"], "latent_dim": 6}, models["ae"].hparams["net"], (1, 8, 8))
    assert resolve_pca_components(None, models) == 6  # the largest code when the sizes differ
    assert resolve_pca_components(7, models) == 7
    with pytest.raises(ConfigError, match="^pca_components: "):
        resolve_pca_components(None, {})


@pytest.mark.slow
def test_probe_stage_end_to_end(checkpoints, tmp_path, tracking_uri):
    out = tmp_path / "probe"
    command = [
        sys.executable,
        str(REPO_ROOT / "pipelines" / "probe.py"),
        f"+models.ae={checkpoints['ae']}",
        f"+models.vae={checkpoints['vae']}",
        f"output_dir={out}",
        f"logger.tracking_uri={tracking_uri}",
        "labels_per_class=[1,5]",
        "repeats=2",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

    metrics = json.loads((out / "metrics.json").read_text())
    features, budgets = ("ae", "vae", "pixels", "pca"), ("n1", "n5", "all")
    assert set(metrics) == {f"probe/{f}/{b}/acc_{s}" for f in features for b in budgets for s in ("mean", "std")}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert metrics["probe/pixels/all/acc_mean"] > 0.93

    with open(out / "accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["feature"], row["budget"]) for row in rows[:4]] == [(f, "n1") for f in features]
    assert {float(row["labels_per_class"]) for row in rows} == {1.0, 5.0, 115.0}
    assert float(rows[0]["accuracy"]) == pytest.approx(metrics["probe/ae/n1/acc_mean"])
    with open(out / "accuracy_runs.csv") as f:
        assert len(list(csv.DictReader(f))) == len(features) * (2 + 2 + 1)
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["aevae.stage"] == "probe"
    assert run.data.params["pca_components"] == "4"
    assert run.data.metrics == pytest.approx(metrics)
    assert {"metrics.json", "accuracy.csv", "accuracy_runs.csv", "accuracy.png"} <= {a.path for a in client.list_artifacts(run.info.run_id)}

    # the learned codes beat chance (one class in ten) by far, and the same encoders before
    # training, whose random 4-d codes already reach 0.50 with every label
    untrained = {name: untrained_checkpoint(checkpoints[name], tmp_path / "untrained" / f"{name}.ckpt") for name in ("ae", "vae")}
    overrides = [*(f"+models.{name}={path}" for name, path in untrained.items()), "labels_per_class=[1,5]", "repeats=2", "baselines=[]"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="probe", overrides=[*overrides, "logger=none"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "untrained" / "probe")
    before = run_probe(cfg)
    for name in ("ae", "vae"):
        accuracy = {budget: metrics[f"probe/{name}/{budget}/acc_mean"] for budget in ("n5", "all")}
        assert accuracy["n5"] > CHANCE + 0.3 and accuracy["all"] > CHANCE + 0.4, (name, accuracy)
        assert accuracy["all"] > before[f"probe/{name}/all/acc_mean"] + 0.1, (name, accuracy, before)


@pytest.mark.fast
def test_unscaled_features_keep_near_constant_noise_dimensions_harmless():
    """Standardizing blows near-constant features (a VAE's inactive units) up to unit variance;
    the reference probe's `standardize: false` keeps them at their size."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    informative = labels[:, None] * 2.0 + rng.normal(size=(400, 2))
    features = np.hstack([informative, 1e-3 * rng.normal(size=(400, 100))])
    train, test = np.arange(0, 400, 20), np.setdiff1d(np.arange(400), np.arange(0, 400, 20))
    accuracy = {
        scaled: svm_probe(C=10.0, gamma="scale", standardize=scaled).fit(features[train], labels[train]).score(features[test], labels[test])
        for scaled in (True, False)
    }
    assert accuracy[False] > 0.8 and accuracy[False] > accuracy[True] + 0.1, accuracy
