"""The anomaly detectors beside the models: the baselines against scikit-learn, each method
against its unfitted self, the protocols, and one PCA baseline per size in the report."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.svm import OneClassSVM

from aevae.reporting import report
from aevae.config import validate
from aevae.data import load_or_prepare
from aevae.errors import ConfigError
from aevae.evaluation.anomaly import PROTOCOLS, Case, one_anomalous_cases, one_class_cases
from aevae.evaluation.complexity import total_variation
from aevae.evaluation.detectors import feature_scores
from aevae.models import build_model
from aevae.stages.anomaly import AnomalyProtocol, baseline_scores, model_scores
from conftest import TINY


def detectors_of(cfg) -> dict:
    return {name: instantiate(node, _partial_=True) for name, node in cfg.detectors.items()}


@pytest.fixture
def digits(make_config):
    """The anomaly config on digits, the normal (zero) training images, the test images and
    their one-class targets."""
    cfg = make_config(["model=ae"], config_name="anomaly")
    splits = load_or_prepare(cfg.data)
    normal = splits.scaled("train")[splits.labels["train"] == 0]
    return cfg, normal, splits.scaled("test"), (splits.labels["test"] != 0).long(), splits


@pytest.mark.fast
def test_baselines_agree_with_scikit_learn_and_separate_a_digit(digits):
    cfg, normal, test, targets, _ = digits
    scores = baseline_scores(normal, test, 8, cfg, detectors_of(cfg))
    flat = [x.flatten(1).double().numpy() for x in (normal, test)]
    pca = PCA(8, random_state=cfg.seed).fit(flat[0])
    projected = [pca.transform(x) for x in flat]
    expected = {"pca8": ((flat[1] - pca.inverse_transform(projected[1])) ** 2).sum(1)}
    for features, (fit, scored) in (("pixels", flat), ("pca8", projected)):
        expected[f"{features}_knn"] = NearestNeighbors(n_neighbors=5).fit(fit).kneighbors(scored)[0][:, -1]
        expected[f"{features}_lof"] = -LocalOutlierFactor(n_neighbors=20, novelty=True).fit(fit).score_samples(scored)
        expected[f"{features}_iforest"] = -IsolationForest(n_estimators=100, random_state=cfg.seed).fit(fit).score_samples(scored)
        expected[f"{features}_ocsvm"] = -OneClassSVM(kernel="rbf", nu=0.1, gamma="scale").fit(fit).score_samples(scored)
    assert scores.keys() == expected.keys()
    for method, values in expected.items():
        np.testing.assert_allclose(scores[method].numpy(), values, rtol=1e-6, atol=1e-9, err_msg=method)
        assert roc_auc_score(targets, values) > 0.9, method


@pytest.mark.fast
def test_a_baseline_fitted_on_other_images_does_not_detect(digits):
    cfg, normal, test, targets, splits = digits
    others = splits.scaled("train")[splits.labels["train"] != 0]  # the anomalies taken for normal
    flat = [x.flatten(1).double().numpy() for x in (others, test)]
    scores = feature_scores(detectors_of(cfg), ["knn", "lof", "iforest", "ocsvm"], "pixels", *flat)
    for method, values in scores.items():
        assert roc_auc_score(targets, values) < 0.5, method


def toy_images(n: int, shift: float, generator: torch.Generator, direction: torch.Tensor) -> torch.Tensor:
    """16x16 images: grey plus a strong factor along `direction` (normal: N(0, 1), anomalies:
    N(shift, 1)) and faint noise in every pixel. A trained encoder keeps the factor; a random
    one mixes it with the noise of 255 other directions."""
    factor = torch.randn(n, generator=generator) + shift
    images = 0.5 + 0.1 * factor[:, None] * direction + 0.032 * torch.randn(n, direction.numel(), generator=generator)
    return images.clamp(0, 1).reshape(n, 1, 16, 16)


def fit(model, images: torch.Tensor, steps: int, generator: torch.Generator) -> None:
    """Train `model` on `images` for `steps` Adam steps of 64 random images."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = images[torch.randint(0, len(images), (64,), generator=generator)]
        loss = model.loss_terms(batch, batch)["loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_latent_detectors_need_a_trained_encoder(make_config):
    cfg = validate(make_config([*TINY, "model=ae"], config_name="anomaly"))
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(256, generator=generator)
    direction /= direction.norm()
    normal = toy_images(1000, 0.0, generator, direction)
    test = torch.cat([toy_images(300, 0.0, generator, direction), toy_images(300, 4.0, generator, direction)])
    targets = torch.cat([torch.zeros(300), torch.ones(300)]).long()
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.net, (1, 16, 16)).eval()
    methods = [f"ae_latent_{name}" for name in cfg.features.latent]

    def auroc() -> dict[str, float]:
        scores = model_scores(model.eval(), test, normal, cfg, detectors_of(cfg))
        return {method: roc_auc_score(targets, scores[method]) for method in methods}

    before = auroc()
    fit(model, normal, 800, generator)
    after = auroc()
    assert all(value < 0.65 for value in before.values()), before  # near chance
    assert all(value > 0.93 for value in after.values()), after


@pytest.mark.fast
def test_total_variation_sums_the_steps_between_neighbouring_pixels():
    images = torch.zeros(2, 2, 3, 3)
    images[0, 0, 1, 1] = 1.0  # one bright pixel: four steps of 1
    images[1, 1, :, 2] = 0.5  # a column of 0.5 at the edge: three steps of 0.5
    assert total_variation(images).tolist() == [4.0, 1.5]


def bars(n: int, vertical: bool, generator: torch.Generator) -> torch.Tensor:
    """16x16 images of one bar (a whole column, or a whole row) of random brightness at a random
    place on black: the same ink and the same total variation either way."""
    line = torch.nn.functional.one_hot(torch.randint(1, 15, (n,), generator=generator), 16) * (0.5 + 0.5 * torch.rand(n, 1, generator=generator))
    images = line[:, None, :].expand(n, 16, 16)  # every row the same: a vertical bar
    return (images if vertical else images.transpose(1, 2)).reshape(n, 1, 16, 16).contiguous()


def test_the_error_per_complexity_needs_a_trained_model(make_config):
    cfg = validate(make_config([*TINY, "model=ae", "features.latent=[]", "features.residual=[]", "ensemble=[]"], config_name="anomaly"))
    generator = torch.Generator().manual_seed(0)
    normal = bars(1000, True, generator)
    test = torch.cat([bars(300, True, generator), bars(300, False, generator)])
    targets = torch.cat([torch.zeros(300), torch.ones(300)]).long()
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.net, (1, 16, 16))

    def auroc() -> float:
        return roc_auc_score(targets, model_scores(model.eval(), test, normal, cfg, detectors_of(cfg))["ae_error_per_tv"])

    before = auroc()
    fit(model, normal, 300, generator)
    after = auroc()
    assert 0.35 < before < 0.65 and after > 0.95, (before, after)  # 0.47 and 1.0 here


@pytest.mark.fast
def test_protocols_are_cases_of_normal_and_anomalous_labels():
    assert set(PROTOCOLS) == {protocol.value for protocol in AnomalyProtocol}
    classes = list(range(10))
    assert one_class_cases(classes, [3])[0] == Case("class_3", (3,), (0, 1, 2, 4, 5, 6, 7, 8, 9))
    (case,) = one_anomalous_cases(classes, [3])
    assert case == Case("anomalous_3", (0, 1, 2, 4, 5, 6, 7, 8, 9), (3,))
    labels = torch.tensor([3, 0, 3, 9, 5])
    assert case.targets(labels).tolist() == [1, 0, 1, 0, 0] and case.test_mask(labels).all()
    partial = Case("defect", (0,), (3,))  # a case may leave labels out of its test set
    assert partial.test_mask(labels).tolist() == [True, True, True, False, False]


@pytest.mark.fast
def test_one_anomalous_protocol_trains_on_the_other_classes(make_config):
    from aevae.stages.anomaly import class_config

    cfg = make_config(["model=ae", "cases=one_anomalous"], config_name="anomaly")
    (case,) = PROTOCOLS[cfg.cases](list(range(10)), [4])
    class_cfg = class_config(validate(cfg), case)
    assert class_cfg.data.train_classes == [0, 1, 2, 3, 5, 6, 7, 8, 9] and class_cfg.output_dir.endswith("anomalous_4")


@pytest.mark.parametrize(
    ("override", "key"),
    [("cases=two_class", "cases"), ("features.pixels=[knn,svdd]", "features.pixels"),
     ("ensemble=[score,latent_svdd]", "ensemble"), ("+detectors.bad={n_neighbors:3}", "detectors.bad"),
     ("+complexity.bad={scale:2}", "complexity.bad"), ("ensemble=[error_per_png]", "ensemble")],
)  # fmt: skip
@pytest.mark.fast
def test_invalid_detector_config_names_the_key(make_config, override, key):
    with pytest.raises(Exception, match=key.replace(".", r"\.")) as error:
        validate(make_config([override], config_name="anomaly"))
    assert error.type is ConfigError or "cases" in key  # an unknown protocol: Hydra's own one line


@pytest.mark.fast
def test_pca_baselines_of_two_latent_sizes_are_both_reported():
    ae = {"anomaly/ae/auroc/class_0": 0.90, "anomaly/ae/auroc/mean": 0.90, "anomaly/pca4/auroc/class_0": 0.95, "anomaly/pca4/auroc/mean": 0.95}
    vae = {"anomaly/vae/auroc/class_0": 0.97, "anomaly/vae/auroc/mean": 0.97, "anomaly/pca8/auroc/class_0": 0.96, "anomaly/pca8/auroc/mean": 0.96}
    table = report.ranking_table(ae | vae)
    lines = table.splitlines()
    assert [line.split(" | ")[1] for line in lines[2:6]] == ["vae", "pca8", "pca4", "ae"]
    assert lines[-1].startswith("|  | best | vae | vae |")
