"""A model trained on another model's codes (data=codes): the codes are the lower model's posterior
of the images with their labels and split; a tiny M1+M2 stack on digits classifies better than
its classifier net on the labels alone and generates images through both models; the share of
samples that recall a labelled image; DVC re-runs the upper model exactly when the lower one's
checkpoint changes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from aevae.run.checkpoints import read_checkpoint, trained_data_config
from aevae.config import validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.data.subsets import labelled_subset
from aevae.errors import ConfigError, DataError
from aevae.evaluation.conditional import accuracy, fit_supervised
from aevae.evaluation.latent_stats import ACTIVE_UNIT_THRESHOLD, posterior_mean_variance
from aevae.evaluation.memorisation import memorisation_metrics, nearest_training_images
from aevae.models import build_model, load_model
from aevae.models.stack import StackedModel
from aevae.stages.codes import images_config, load_data
from aevae.stages.train import run as train
from conftest import CONF_DIR, REPO_ROOT, copy_project, run_command, study_env

COMMON = ["logger=none", "trainer.progress=none"]
M1 = ["model=vae", "trainer.max_epochs=20", "model.latent_dim=8", "net.hidden_dims=[64]", "model.lr=3e-3", "data.batch_size=64", *COMMON]
LABELS = 2  # labelled digits per class


def compose_train(overrides: list[str], output_dir: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides)
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
    return cfg


def m2_overrides(checkpoint: Path, *extra: str) -> list[str]:
    return [
        "model=ssvae", "data=codes", f"data.path={checkpoint}", f"model.labels_per_class={LABELS}", "model.latent_dim=2",
        "model.lr=3e-3", "data.batch_size=64", "net.hidden_dims=[64]", "trainer.max_epochs=40", *COMMON, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """M1, a VAE trained on digits; M2, an ssvae trained on its codes with 2 labels per class."""
    out = tmp_path_factory.mktemp("stack")
    train(compose_train(M1, out / "m1"))
    checkpoint = out / "m1" / "checkpoints" / "best.ckpt"
    m2_cfg = compose_train(m2_overrides(checkpoint), out / "m2")
    train(m2_cfg)
    return {"checkpoint": checkpoint, "m2_cfg": m2_cfg, "m2": load_model(out / "m2" / "checkpoints" / "best.ckpt"), "m1": load_model(checkpoint)}


def codes_config(checkpoint: Path, codes: str = "mean"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", ["data=codes", f"data.path={checkpoint}", f"data.codes={codes}", *COMMON]).data


def test_codes_are_the_lower_models_posterior_means_of_the_images_with_their_labels_and_split(stack):
    images_cfg = images_config(stack["checkpoint"])
    images = InMemoryDataModule(load_or_prepare(images_cfg), images_cfg)
    images.setup()
    codes = load_data(codes_config(stack["checkpoint"]))
    means = {split: stack["m1"].encode(x)[0].detach() for split, (x, _) in images.tensors.items()}
    units = torch.nonzero(posterior_mean_variance(means["train"]) > ACTIVE_UNIT_THRESHOLD).flatten()
    assert 0 < len(units) <= 8 and torch.equal(codes.code_units, units)
    for split, (_, labels) in images.tensors.items():
        assert torch.equal(codes.labels[split], labels)  # each image's label and split, in the images' order
        expected = (means[split][:, units] - codes.feature_mean) / codes.feature_std
        torch.testing.assert_close(codes.images[split], expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(codes.images["train"].mean(0), torch.zeros(len(units)), atol=1e-4, rtol=0)
    torch.testing.assert_close(codes.images["train"].std(0, correction=0), torch.ones(len(units)), atol=1e-4, rtol=0)
    assert codes.is_vectors and codes.noise_std == {}


def test_sampled_codes_are_drawn_afresh_for_each_training_batch_once_for_validation_and_test_keeps_the_means(stack):
    data_cfg = codes_config(stack["checkpoint"], "sample")
    codes = load_data(data_cfg)
    logvar = stack["m1"].encode(InMemoryDataModule(load_or_prepare(images_config(stack["checkpoint"])), data_cfg).split("train")[0])[1]
    torch.testing.assert_close(codes.noise_std["train"], (0.5 * logvar.detach()).exp()[:, codes.code_units] / codes.feature_std, atol=1e-4, rtol=1e-4)
    datamodule = InMemoryDataModule(codes, data_cfg)
    draws = [torch.cat([x for x, _ in datamodule.batches("train", shuffle=True)]) for _ in range(2)]
    assert not torch.equal(draws[0], draws[1])  # the same order (one epoch's shuffle), a fresh draw
    means = datamodule.split("train")[0][datamodule.batches("train", shuffle=True).indices()]
    assert float((draws[0] - means).std()) == pytest.approx(float(codes.noise_std["train"].square().mean().sqrt()), rel=0.1)
    val = torch.cat([x for x, _ in datamodule.batches("val")])
    assert not torch.equal(val, codes.images["val"]) and torch.equal(val, InMemoryDataModule(codes, data_cfg).split("val")[0])  # one fixed draw
    assert torch.equal(torch.cat([x for x, _ in datamodule.batches("test")]), codes.images["test"])


def test_codes_of_a_model_without_a_posterior_or_an_unreadable_checkpoint_are_one_line(stack, tmp_path):
    train(compose_train(["model=ae", "trainer=debug", "net.hidden_dims=[16]", *COMMON], tmp_path / "ae"))
    with pytest.raises(DataError, match=r"needs a model with a posterior q\(z\|x\) \(vae, beta_vae\); this one is a ae$"):
        load_data(codes_config(tmp_path / "ae" / "checkpoints" / "best.ckpt"))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(stack["checkpoint"].read_bytes()[:1000])
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", "model=ssvae", "data=codes", f"data.path={truncated}", f"output_dir={tmp_path / 'm2'}", f"hydra.run.dir={tmp_path / 'h'}", *COMMON],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and result.stderr.strip() == f"error: {truncated}: not a readable checkpoint (truncated, corrupt or not written by aevae); train it again"
    assert not (tmp_path / "m2" / "checkpoints").exists()  # refused before any training


@pytest.mark.fast
def test_codes_settings_apply_to_codes_only(make_config):
    with pytest.raises(ConfigError, match=r"^data\.codes: applies to data=codes"):
        validate(make_config(["data.codes=sample"]))
    with pytest.raises(ConfigError, match=r"^data\.prepared: data=codes are read from the model's checkpoint"):
        validate(make_config(["data=codes", "data.path=m.ckpt", "data.prepared=codes.pt"]))


def test_a_tiny_stack_classifies_better_than_its_classifier_net_on_the_labels_alone(stack):
    """M2's q(y|x) on M1's codes beats the same net trained on the 20 labelled codes alone (the
    test's failure mode: an untrained M2, which is at chance)."""
    cfg, m2 = stack["m2_cfg"], stack["m2"]
    codes = InMemoryDataModule(load_data(cfg.data), cfg.data, seed=cfg.seed)
    (train_codes, train_labels), (test_codes, test_labels) = codes.split("train"), codes.split("test")
    subset = torch.from_numpy(labelled_subset(train_labels.numpy(), LABELS, cfg.seed))
    torch.manual_seed(0)
    typed = validate(cfg)
    fresh = build_model(typed.model, typed.net, m2.image_shape)
    alone = fit_supervised(fresh.classifier, train_codes[subset], train_labels[subset], 300, cfg.model.lr)
    scores = {
        "m2": accuracy(lambda x: m2.classify(x).argmax(1), test_codes, test_labels, 512),
        "alone": accuracy(lambda x: alone(x).argmax(1), test_codes, test_labels, 512),
        "untrained": accuracy(lambda x: build_model(typed.model, typed.net, m2.image_shape).classify(x).argmax(1), test_codes, test_labels, 512),
    }
    assert scores["m2"] > scores["alone"] + 0.02 and scores["untrained"] < 0.3, scores


def test_the_stack_classifies_and_generates_images_through_both_models(stack):
    m2_cfg = stack["m2_cfg"]
    codes = load_data(m2_cfg.data)
    model = StackedModel(stack["m2"], stack["m1"], codes).eval()
    images_cfg = images_config(stack["checkpoint"])
    images = InMemoryDataModule(load_or_prepare(images_cfg), images_cfg)
    test_images = images.split("test")[0]
    torch.testing.assert_close(model.classify(test_images), stack["m2"].classify(codes.images["test"]), atol=1e-5, rtol=1e-4)
    asked = torch.arange(10).repeat(3)
    torch.manual_seed(0)
    samples = model.sample_given(asked)
    assert samples.shape == (30, 1, 8, 8) and 0 <= float(samples.min()) and float(samples.max()) <= 1
    torch.manual_seed(0)
    z = torch.randn(30, m2_cfg.model.latent_dim)
    code = stack["m2"].decode_given(z, asked) * codes.feature_std + codes.feature_mean
    full = torch.zeros(30, 8)
    full[:, codes.code_units] = code
    torch.testing.assert_close(samples, stack["m1"].decode(full))  # M2's code, back in M1's units, decoded by M1
    assert model.supports("classify") and model.supports("sample_given") and not model.supports("likelihood")


@pytest.mark.fast
def test_samples_that_are_the_labelled_images_all_recall_them_and_random_ones_do_so_by_chance():
    generator = torch.Generator().manual_seed(0)
    train_images = torch.rand(600, 1, 4, 4, generator=generator)
    train_labels = torch.arange(10).repeat(60)
    labelled = labelled_subset(train_labels.numpy(), 2, seed=0)
    copies = train_images[labelled].repeat(5, 1, 1, 1) + 0.01 * torch.randn(100, 1, 4, 4, generator=generator)
    assert torch.equal(nearest_training_images(copies, train_images, 7), torch.as_tensor(labelled).repeat(5))
    recalled = memorisation_metrics(copies, train_images, train_labels, labelled, draws=20, seed=0, batch_size=64)
    assert recalled["gen/nearest_labelled"] == 1.0 and recalled["gen/nearest_random"] < 0.2
    others = train_images[torch.randperm(600, generator=generator)[:300]] + 0.01 * torch.randn(300, 1, 4, 4, generator=generator)
    fresh = memorisation_metrics(others, train_images, train_labels, labelled, draws=200, seed=0, batch_size=64)
    assert fresh["gen/nearest_random"] == pytest.approx(20 / 600, abs=0.01)  # as many images as are labelled, of 600
    assert fresh["gen/nearest_labelled"] < 0.1


STACK_DVC = {
    "stages": {
        "m1": {
            "cmd": "python pipelines/train.py model=vae trainer=debug net.hidden_dims=[16] model.latent_dim=4 seed=${m1_seed} logger=none output_dir=models/m1 hydra.run.dir=outputs/m1",
            "deps": ["pipelines/train.py"],
            "params": ["m1_seed"],
            "outs": ["models/m1/checkpoints", "models/m1/config.yaml"],
        },
        "m2": {
            "cmd": "python pipelines/train.py model=ssvae data=codes data.path=models/m1/checkpoints/best.ckpt model.labels_per_class=3 trainer=debug net.hidden_dims=[16] logger=none output_dir=models/m2 hydra.run.dir=outputs/m2",
            "deps": ["pipelines/train.py", "models/m1/checkpoints/best.ckpt"],
            "outs": ["models/m2/checkpoints"],
        },
        "other": {
            "cmd": "python pipelines/train.py model=ae trainer=debug net.hidden_dims=[16] logger=none output_dir=models/other hydra.run.dir=outputs/other",
            "deps": ["pipelines/train.py"],
            "outs": ["models/other/checkpoints"],
        },
    }
}


@pytest.mark.slow
def test_dvc_reruns_the_upper_model_exactly_when_the_lower_models_checkpoint_changes(tmp_path):
    """The upper model's stage depends on the lower model's checkpoint (its data.path): a new M1
    re-runs M2 and nothing else; nothing changed re-runs nothing."""
    repo, env = tmp_path / "repo", study_env()
    copy_project(repo)
    (repo / "dvc.lock").unlink()
    (repo / "dvc.yaml").write_text(yaml.safe_dump(STACK_DVC, sort_keys=False))
    (repo / "params.yaml").write_text("m1_seed: 0\n")
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "stack"]):
        run_command(args, repo, env)
    first = run_command(["dvc", "repro"], repo, env)
    assert all(f"Running stage '{stage}'" in first for stage in ("m1", "m2", "other"))
    assert "Running stage" not in run_command(["dvc", "repro"], repo, env)
    (repo / "params.yaml").write_text("m1_seed: 1\n")  # another M1: another checkpoint
    again = run_command(["dvc", "repro"], repo, env)
    assert "Running stage 'm1'" in again and "Running stage 'm2'" in again and "Running stage 'other'" not in again
    trained_on = trained_data_config(read_checkpoint(repo / "models" / "m2" / "checkpoints" / "best.ckpt"))
    assert (trained_on["name"], trained_on["path"]) == ("codes", "models/m1/checkpoints/best.ckpt")
