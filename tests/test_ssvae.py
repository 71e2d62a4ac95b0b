"""The semi-supervised VAE (M2): its loss with the class summed out, the labelled batches it trains
with, the capability protocol (and stages that ask for it rather than for a class), what training
buys: q(y|x) accuracy and samples of the digit asked for, and the evaluate and anomaly stages on it."""

import ast
import csv
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from aevae.config import validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.data.subsets import labelled_subset
from aevae.errors import ConfigError
from aevae.evaluation.anomaly import detection_metrics
from aevae.evaluation.conditional import accuracy, analogy_grid, conditional_grid, conditional_metrics, conditional_samples, fit_supervised
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.models import Capability, all_kinds, build_model, load_model, model_class
from aevae.models.classifier import load_classifier
from aevae.models.losses import gaussian_kl
from aevae.stages.anomaly import model_scores, run as run_anomaly
from aevae.stages.classifier import run as train_classifier
from aevae.stages.evaluate import run as evaluate
from aevae.stages.train import run as train
from conftest import CONF_DIR, REPO_ROOT, TINY, lr_keys

MLP = {"name": "mlp", "hidden_dims": [16], "activation": "relu"}
BASE = dict(likelihood="bernoulli", gaussian_std=0.1, corruption="none", corruption_level=0.0, **lr_keys(1e-3))
SSVAE = {"name": "ssvae", "label": "ssvae", "latent_dim": 3, "labels_per_class": 5, "alpha": 0.1, "balance": 2.0, "labelled_weight": 0.5, **BASE}
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
                minus_l = model.likelihood.nll(logits, x[b : b + 1]) + gaussian_kl(mu, logvar) + math.log(10)
                minus_u += q[b, y] * (minus_l + q[b, y].log())
            torch.testing.assert_close(terms["loss"][b : b + 1], minus_u)
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))


@pytest.mark.fast
def test_step_objective_adds_the_labelled_batch_its_weighted_cross_entropy_and_the_class_balance():
    model, x = tiny_model(), torch.rand(6, *SHAPE)
    y = torch.tensor([0, 3, 9])
    batch = {"labelled": (x[:3], y), "unlabelled": (x[3:], torch.full((3,), -1))}
    with torch.no_grad():
        torch.manual_seed(2)
        objective = model.training_terms(batch)["loss"].mean()
        torch.manual_seed(2)
        unlabelled = model.loss_terms(x[3:], x[3:])["loss"].mean()
        labelled = model.labelled_terms(x[:3], x[:3], y)
    q = model.classify(x[3:])
    balance = math.log(10) - float(-(q.mean(0) * q.mean(0).log()).sum())  # log 10 - H(mean q(y|x))
    expected = unlabelled + SSVAE["labelled_weight"] * labelled["nll"].mean() + SSVAE["alpha"] * labelled["ce"].mean() + SSVAE["balance"] * balance
    torch.testing.assert_close(objective, expected)
    assert balance > 0 and float(model.class_balance(torch.full((4, 10), 0.1))) == pytest.approx(0.0, abs=1e-6)
    assert float(model.class_balance(F.one_hot(torch.tensor([3, 3]), 10).float())) == pytest.approx(math.log(10))
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
    assert {c for c in Capability if model_class("ae").supports(c)} == set()
    assert {c for c in Capability if vae.supports(c)} == {Capability.sample, Capability.likelihood, Capability.posterior}
    assert all(model_class("ssvae").supports(c) for c in Capability)
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
def test_stages_ask_a_model_what_it_can_do_and_never_name_a_model_class():
    """A new model kind needs no stage edit: no stage module names a concrete model class (an
    `isinstance` branch, an import); they ask `supports(Capability...)` instead."""
    classes = {cls.__name__ for cls in all_kinds().values()}
    named = {
        (path.name, node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else node.name)
        for path in sorted((REPO_ROOT / "src" / "aevae" / "stages").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Name, ast.Attribute, ast.alias))
    }
    assert not {(module, name) for module, name in named if name in classes}


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
    common = ["logger=none", "trainer.progress=none"]
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
        "untrained": build_model(validate(model_cfg).model, validate(model_cfg).net, SHAPE).eval(),
        "judge": load_classifier(out / "judge" / "checkpoints" / "best.ckpt"),
        "data": datamodule.tensors,
        "cfg": model_cfg,
        "checkpoints": {name: out / name / "checkpoints" / "best.ckpt" for name in ("model", "judge")},
    }


def test_trained_samples_show_the_digit_asked_for_more_often_than_untrained(trained):
    test_images, test_labels = trained["data"]["test"]
    scores = {}
    for name in ("model", "untrained"):
        torch.manual_seed(0)
        scores[name] = conditional_metrics(*conditional_samples(trained[name], 30, 512), trained["judge"], test_images, test_labels, batch_size=512)
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
    cfg = validate(trained["cfg"])
    net = fit_supervised(build_model(cfg.model, cfg.net, SHAPE).classifier, train_images[subset], train_labels[subset], 100, 3e-3)
    assert accuracy(lambda x: net(x).argmax(1), test_images, test_labels, 512) > 0.5  # 5 labels per class of 8x8 digits


def test_evaluate_stage_measures_what_the_ssvae_can_do(trained, tmp_path):
    """Likelihood with y summed out, posterior statistics, q(y|x) accuracy, samples of the class
    asked for and the conditional figures, all found by asking the model what it supports."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("evaluate", [f"+models.ssvae={trained['checkpoints']['model']}", "likelihood.samples=10", "logger=none",
                                   f"generation.classifier={trained['checkpoints']['judge']}", "generation.samples=300"])  # fmt: skip
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "eval")
    metrics = evaluate(cfg)
    capable = {f"ssvae/{key}" for key in ("test/elbo", "test/nll_iwae", "latent/kl", "latent/active_units", "test/accuracy", "gen/fid", "gen/accuracy_given")}
    assert capable <= metrics.keys()
    assert metrics["ssvae/test/nll_iwae"] <= -metrics["ssvae/test/elbo"] + 1e-3  # the IS bound is above the ELBO
    test_images, test_labels = trained["data"]["test"]
    assert metrics["ssvae/test/accuracy"] == pytest.approx(accuracy(lambda x: trained["model"].classify(x).argmax(1), test_images, test_labels, 512))
    generator = torch.Generator().manual_seed(cfg.seed)
    bounds = likelihood_bounds(trained["model"], test_images, 10, cfg.likelihood.batch_size, generator)
    assert metrics["ssvae/test/nll_iwae"] == pytest.approx(-float(bounds["log_px"].mean()), rel=1e-5)
    assert metrics["ssvae/gen/accuracy_given"] > 0.4  # an untrained decoder: about 0.1 (the test above)
    figures = {path.name for path in (tmp_path / "eval" / "figures").iterdir()}
    assert {"ssvae_samples.png", "ssvae_conditional_samples.png", "ssvae_analogies.png"} <= figures
    rows = list(csv.DictReader((tmp_path / "eval" / "latent_kl.csv").open()))
    assert [row["dim"] for row in rows] == [str(d) for d in range(trained["cfg"].model.latent_dim)]


def test_anomaly_stage_scores_an_ssvae_also_by_its_likelihood_with_the_class_summed_out(make_config, tmp_path):
    brief = ["trainer.limit_train_batches=null", "trainer.max_epochs=5", "model.lr=3e-3", "model.labels_per_class=5"]
    cfg = make_config([*TINY, *brief, "model=ssvae", "normal_classes=[7]", "likelihood.samples=5", "logger=none"], config_name="anomaly")
    metrics = run_anomaly(cfg)
    methods = {"ssvae", "ssvae_iwae", "ssvae_latent_lof", "ssvae_ensemble", "pca4"}
    expected = {f"anomaly/{m}/{s}/{c}" for m in methods for s in ("auroc", "auprc") for c in ("class_7", "mean")}
    assert expected | {"anomaly/ssvae/levelled_off/class_7", "anomaly/ssvae/levelled_off/mean"} <= metrics.keys()
    model = load_model(tmp_path / "out" / "classes" / "class_7" / "checkpoints" / "best.ckpt")
    datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
    datamodule.setup()
    test_images, test_labels = datamodule.tensors["test"]
    (train_images, train_labels) = datamodule.tensors["train"]
    detectors = {name: instantiate(node, _partial_=True) for name, node in cfg.detectors.items()}
    scores = model_scores(model, test_images, train_images[train_labels == 7], cfg, detectors)
    bounds = likelihood_bounds(model, test_images, 5, cfg.likelihood.batch_size, torch.Generator().manual_seed(cfg.seed))
    torch.testing.assert_close(scores["ssvae_iwae"], -bounds["log_px"].double())
    for method in ("ssvae", "ssvae_iwae"):
        rescored = detection_metrics(scores[method], (test_labels != 7).long())["auroc"]
        assert metrics[f"anomaly/{method}/auroc/class_7"] == pytest.approx(rescored, abs=1e-3)  # kernels of other batch shapes may swap a near-tie
        assert metrics[f"anomaly/{method}/auroc/class_7"] > 0.75, method


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.alpha=-1", "model.alpha: must be >= 0"),
        ("model.balance=-1", "model.balance: must be >= 0"),
        ("model.labelled_weight=-1", "model.labelled_weight: must be >= 0"),
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
