"""The classifier stage and the sample-quality numbers it makes possible (Fréchet distance in its
feature space, class coverage of samples)."""

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from aevae.evaluation.sample_quality import class_histogram, coverage, frechet_distance
from aevae.models.classifier import N_CLASSES, load_classifier
from aevae.stages.classifier import run as train_classifier
from conftest import CONF_DIR


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("classifier", ["logger=none", "trainer.max_epochs=3", "trainer.progress=none", "data.batch_size=32"])
    with open_dict(cfg):
        cfg.output_dir = str(out)
    return out, train_classifier(cfg)


def test_classifier_stage_writes_a_checkpoint_that_classifies_digits(classifier_dir):
    out, metrics = classifier_dir
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics.keys() == {"classifier/val/accuracy", "classifier/test/accuracy"}
    assert metrics["classifier/test/accuracy"] > 0.8  # digits, 3 epochs of an MLP (an untrained one: about 0.1)
    model = load_classifier(out / "checkpoints" / "best.ckpt")
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, model.num_features)
    assert model.predict(torch.rand(5, 1, 8, 8)).dtype == torch.int64


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift(classifier_dir):
    model = load_classifier(classifier_dir[0] / "checkpoints" / "best.ckpt")
    images = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    same = frechet_distance(model, images, images, batch_size=64)
    assert abs(same) < 1e-3
    darker = frechet_distance(model, images, images * 0.5, batch_size=64)
    darkest = frechet_distance(model, images, images * 0.1, batch_size=64)
    assert 0 < darker < darkest


@pytest.mark.fast
def test_coverage_of_uniform_and_single_class_samples():
    uniform = coverage(torch.full((N_CLASSES,), 100))
    assert uniform["classes_covered"] == 10 and uniform["class_entropy"] == pytest.approx(math.log(10))
    single = coverage(torch.tensor([0, 0, 500, 0, 0, 0, 0, 0, 0, 0]))
    assert single == {"classes_covered": 1.0, "class_entropy": 0.0}
    # a class with under half of its uniform share (5%) is not covered
    assert coverage(torch.tensor([4, 96] + [100] * 8))["classes_covered"] == 9


@pytest.mark.fast
def test_class_histogram_counts_predictions():
    predict = lambda x: x.flatten(1)[:, 0].long()  # noqa: E731  the first pixel is the class
    images = torch.tensor([0, 3, 3, 9], dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    assert class_histogram(predict, images, batch_size=3, n_classes=N_CLASSES).tolist() == [1, 0, 0, 2, 0, 0, 0, 0, 0, 1]
