"""The semi-supervised VAE (M2): its loss with the class summed out, the labelled batches it trains
with, the capability protocol, and what training buys: q(y|x) accuracy and samples of the digit
asked for."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.data.subsets import labelled_subset
from aevae.errors import ConfigError
from aevae.evaluation.conditional import accuracy, analogy_grid, conditional_grid, conditional_metrics, fit_supervised
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.models import MODELS, Capability, build_model, load_model
from aevae.models.classifier import load_classifier
from aevae.models.losses import gaussian_kl, reconstruction_nll
from aevae.stages.classifier import run as train_classifier
from aevae.stages.train import run as train
from conftest import CONF_DIR, REPO_ROOT

MLP = {"name": "mlp", "hidden_dims": [16], "activation": "relu"}
BASE = dict(likelihood="bernoulli", gaussian_std=0.1, corruption="none", corruption_level=0.0, lr=1e-3, lr_schedule="constant", adam_eps=1e-8, weight_decay=0.0)
SSVAE = {"name": "ssvae", "label": "ssvae", "latent_dim": 3, "labels_per_class": 5, "alpha": 0.1, **BASE}
SHAPE = (1, 8, 8)


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(SSVAE, MLP, SHAPE).eval()


@pytest.mark.fast
def test_unlabelled_loss_is_the_hand_summed_elbo():
    """-U(x) = sum_y q(y|x) (recon + KL_z - log p(y)) + sum_y q(y|x) log q(y|x), one class at a time."""
    model, x = tiny_model(), torch.rand(2, *SHAPE).round()
    with torch.no_grad():
        torch.manual_seed(1)
        terms = model.loss_terms(x, x)
        torch.manual_seed(1)
        noise = torch.randn(10 * len(x), SSVAE["latent_dim"])  # the same draw, class-major
        q = model.classify(x)
        for b in range(len(x)):
            minus_u = 0.0
            for y in range(10):
                mu, logvar = model.encode_given(x[b : b + 1], torch.tensor([y]))
                z = mu + noise[y * len(x) + b] * (0.5 * logvar).exp()
                logits = model.decoder(torch.cat([z, F.one_hot(torch.tensor([y]), 10).float()], 1))
                minus_l = reconstruction_nll(logits, x[b : b + 1], "bernoulli") + gaussian_kl(mu, logvar) + math.log(10)
                minus_u += q[b, y] * (minus_l + q[b, y].log())
            torch.testing.assert_close(terms["loss"][b : b + 1], minus_u)
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))


@pytest.mark.fast
def test_step_objective_adds_the_labelled_batch_and_its_weighted_cross_entropy():
    model, x = tiny_model(), torch.rand(6, *SHAPE)
    y = torch.tensor([0, 3, 9])
    batch = {"labelled": (x[:3], y), "unlabelled": (x[3:], torch.full((3,), -1))}
    with torch.no_grad():
        torch.manual_seed(2)
        objective = model.training_terms(batch)["loss"].mean()
        torch.manual_seed(2)
        unlabelled = model.loss_terms(x[3:], x[3:])["loss"].mean()
        labelled = model.labelled_terms(x[:3], x[:3], y)
    expected = unlabelled + labelled["nll"].mean() + SSVAE["alpha"] * labelled["ce"].mean()
    torch.testing.assert_close(objective, expected)
    torch.testing.assert_close(labelled["ce"], -model.classify(x[:3]).log()[torch.arange(3), y])


@pytest.mark.fast
def test_importance_bound_with_the_class_summed_out_is_above_the_elbo():
    """With one z per class, log sum_y p(y) w_y >= sum_y q(y) log(p(y) w_y / q(y)) image by image
    (Jensen); more samples tighten the bound."""
    model, x = tiny_model(), torch.rand(4, *SHAPE).round()
    generator = torch.Generator().manual_seed(0)
    one = likelihood_bounds(model, x, k=1, batch_size=3, generator=generator)
    assert one["log_px"].shape == one["elbo"].shape == (4,)
    assert torch.all(one["log_px"] >= one["elbo"] - 1e-4)
    many = torch.stack([likelihood_bounds(model, x, k=64, batch_size=4, generator=generator)["log_px"] for _ in range(5)]).mean(0)
    few = torch.stack([likelihood_bounds(model, x, k=1, batch_size=4, generator=generator)["log_px"] for _ in range(200)]).mean(0)
    assert torch.all(many >= few - 0.05)


@pytest.mark.fast
def test_capabilities_are_declared_and_the_rest_refused():
    x = torch.rand(4, *SHAPE)
    vae = build_model({"name": "vae", "label": "vae", "latent_dim": 3, "beta": 1.0, "kl_warmup_epochs": 0, **BASE}, MLP, SHAPE)
    assert {c for c in Capability if MODELS["ae"].supports(c)} == set()
    assert {c for c in Capability if vae.supports(c)} == {Capability.sample, Capability.likelihood, Capability.posterior}
    assert all(MODELS["ssvae"].supports(c) for c in Capability)
    with pytest.raises(NotImplementedError, match="given class"):
        vae.sample_given(torch.tensor([1]))
    with pytest.raises(NotImplementedError, match="no classifier"):
        vae.classify(x)
    model = tiny_model()
    assert model.sample(5).shape == (5, *SHAPE)
    assert model.sample_given(torch.tensor([0, 1, 2])).shape == (3, *SHAPE)
    assert model.embed(x).shape == (4, SSVAE["latent_dim"] + 10)
    torch.testing.assert_close(model.classify(x).sum(1), torch.ones(4))
    assert [row.shape for row in conditional_grid(model, 2)] == [(10, *SHAPE)] * 2
    assert [row.shape for row in analogy_grid(model, x[:3])] == [(11, *SHAPE)] * 3


@pytest.mark.fast
def test_labelled_batches_are_the_probes_subset_and_the_rest_comes_unlabelled(make_config):
    cfg = make_config(["data.batch_size=64"])
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=3)
    images, labels = datamodule.split("train")
    assert isinstance(datamodule.train_dataloader(), type(datamodule.batches("train")))  # plain until asked
    datamodule.serve_labels(5)
    steps = [batch for batch, _, _ in datamodule.train_dataloader()]
    subset = labelled_subset(labels.numpy(), 5, seed=3)
    (x_l, y_l), (x_u, y_u) = steps[0]["labelled"], steps[0]["unlabelled"]
    assert len(steps) == math.ceil((len(labels) - len(subset)) / 64)  # the labelled loader cycles
    assert sorted(map(tuple, x_l.flatten(1).tolist())) == sorted(map(tuple, images[subset].flatten(1).tolist()))
    assert np.bincount(y_l.numpy(), minlength=10).tolist() == [5] * 10
    assert torch.all(y_u == -1)
    assert sum(len(step["unlabelled"][0]) for step in steps) == len(labels) - len(subset)
    with pytest.raises(ConfigError, match="labels_per_class: 10000 labels per class exceed"):
        datamodule.serve_labels(10_000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An ssvae trained on digits for a few seconds, and a digit classifier to judge its samples."""
    out = tmp_path_factory.mktemp("ssvae")
    common = ["logger=none", "trainer.enable_progress_bar=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        model_cfg = compose("train", ["model=ssvae", "trainer.max_epochs=12", "model.latent_dim=4", "model.alpha=1.0", "model.lr=3e-3", "data.batch_size=64", *common])
        judge_cfg = compose("classifier", ["trainer.max_epochs=5", *common])
    for cfg, name in ((model_cfg, "model"), (judge_cfg, "judge")):
        with open_dict(cfg):
            cfg.output_dir = str(out / name)
    train(model_cfg)
    train_classifier(judge_cfg)
    datamodule = InMemoryDataModule(load_or_prepare(model_cfg.data), model_cfg.data, seed=0)
    datamodule.setup()
    return {
        "model": load_model(out / "model" / "checkpoints" / "best.ckpt"),
        "untrained": build_model(dict(model_cfg.model), dict(model_cfg.net), SHAPE).eval(),
        "judge": load_classifier(out / "judge" / "checkpoints" / "best.ckpt"),
        "data": datamodule.tensors,
        "cfg": model_cfg,
    }


def test_trained_samples_show_the_digit_asked_for_more_often_than_untrained(trained):
    test_images, test_labels = trained["data"]["test"]
    scores = {}
    for name in ("model", "untrained"):
        torch.manual_seed(0)
        scores[name] = conditional_metrics(trained[name], trained["judge"], test_images, test_labels, per_class=30, batch_size=512)
    assert scores["model"]["gen/accuracy"] > scores["untrained"]["gen/accuracy"] + 0.2
    assert scores["untrained"]["gen/accuracy"] < 0.35  # an untrained decoder ignores the class asked for
    assert {f"gen/fid/digit_{d}" for d in range(10)} <= scores["model"].keys()


def test_trained_classifier_beats_untrained_and_its_net_trained_on_the_labels_alone_is_the_baseline(trained):
    (train_images, train_labels), (test_images, test_labels) = trained["data"]["train"], trained["data"]["test"]
    predict = {name: (lambda model: lambda x: model.classify(x).argmax(1))(trained[name]) for name in ("model", "untrained")}
    model_acc, untrained_acc = (accuracy(predict[name], test_images, test_labels, 512) for name in ("model", "untrained"))
    assert model_acc > untrained_acc + 0.3
    subset = torch.from_numpy(labelled_subset(train_labels.numpy(), 5, seed=0))
    torch.manual_seed(0)
    cfg = trained["cfg"]
    net = fit_supervised(build_model(dict(cfg.model), dict(cfg.net), SHAPE).classifier, train_images[subset], train_labels[subset], 100, 3e-3)
    assert accuracy(lambda x: net(x).argmax(1), test_images, test_labels, 512) > 0.5  # 5 labels per class of 8x8 digits


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.alpha=-1", "model.alpha: must be >= 0"),
        ("model.labels_per_class=0", "model.labels_per_class: must be > 0"),
        ("net=conv", "net: ssvae is built on MLP nets"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(override, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", "model=ssvae", override, "logger=none", f"output_dir={tmp_path}", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
