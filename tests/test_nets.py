"""Nets for any channels and sides, and vectors; the likelihoods' maths and their choice by data kind."""

import math

import pytest
import torch

from aevae.errors import ConfigError
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.models import build_model
from aevae.models.losses import LEVELS, build_likelihood, resolve_likelihood
from aevae.nets.conv import ConvConfig
from conftest import lr_keys

CONV = {"name": "conv", "channels": [4, 8, 8], "hidden_dim": 16}
MLP = {"name": "mlp", "hidden_dims": [16], "activation": "relu"}
CONV_NETS = ConvConfig(**CONV)
BASE = dict(gaussian_std=0.1, corruption="none", corruption_level=0.0, **lr_keys(1e-2))
VAE = {"name": "vae", "label": "vae", "latent_dim": 3, "beta": 1.0, "kl_warmup_epochs": 0, **BASE}


@pytest.mark.fast
@pytest.mark.parametrize("side", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_conv_round_trip_shapes(side, channels):
    """Three stride-2 layers on 28 (not divisible by 8), 32 and 64 pixels: the decoder gives back
    the image's shape, with as many channels per pixel as asked."""
    shape = (channels, side, side)
    encoder, decoder = CONV_NETS.encoder(shape, 6), CONV_NETS.decoder((2 * channels, side, side), 3)
    codes = encoder(torch.rand(5, *shape))
    assert codes.shape == (5, 6)
    assert decoder(codes[:, :3]).shape == (5, 2 * channels, side, side)


@pytest.mark.fast
def test_conv_non_square_and_too_small():
    encoder, decoder = CONV_NETS.encoder((3, 28, 40), 4), CONV_NETS.decoder((3, 28, 40), 4)
    assert decoder(encoder(torch.rand(2, 3, 28, 40))).shape == (2, 3, 28, 40)
    with pytest.raises(ConfigError, match="net.channels: 3 stride-2 layers need image sides >= 8"):
        CONV_NETS.encoder((1, 4, 4), 4)
    with pytest.raises(ConfigError, match="net.name: conv needs images"):
        CONV_NETS.encoder((30,), 4)


@pytest.mark.fast
def test_conv_divisible_sides_build_the_layers_as_before():
    """No output padding where the side halves evenly: the MNIST nets' layers are unchanged."""
    decoder = ConvConfig(name="conv", channels=[32, 64], hidden_dim=256).decoder((1, 28, 28), 16)
    transposed = [layer for layer in decoder.net if isinstance(layer, torch.nn.ConvTranspose2d)]
    assert [layer.output_padding for layer in transposed] == [(0, 0), (0, 0)]


@pytest.mark.parametrize(("net", "shape", "likelihood"), [(MLP, (12,), "gaussian_learned"), (CONV, (3, 28, 28), "logistic"), (CONV, (1, 32, 32), "bernoulli")])
def test_a_few_steps_lower_the_loss(net, shape, likelihood):
    torch.manual_seed(0)
    model = build_model({**VAE, "likelihood": likelihood}, net, shape)
    x = (torch.randn if len(shape) == 1 else torch.rand)(1, *shape).expand(4, *shape)  # one sample: quick to learn
    if likelihood == "bernoulli":
        x = x.round()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.loss_terms(x, x)["loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(2).shape == (2, *shape)
    assert losses[-1] < losses[0] - 0.05 * abs(losses[0])


@pytest.mark.fast
def test_auto_likelihood_follows_the_data_kind():
    assert resolve_likelihood("auto", (1, 28, 28)) == "bernoulli"
    assert resolve_likelihood("auto", (3, 32, 32)) == "logistic"
    assert resolve_likelihood("auto", (30,)) == "gaussian_learned"
    assert resolve_likelihood("gaussian", (3, 32, 32)) == "gaussian"  # an explicit choice wins
    with pytest.raises(ConfigError, match="model.likelihood: bernoulli needs images"):
        resolve_likelihood("bernoulli", (30,))
    assert build_model({**VAE, "likelihood": "auto"}, MLP, (3, 8, 8)).cfg.likelihood == "logistic"


@pytest.mark.fast
def test_discretised_logistic_is_a_distribution_over_the_256_levels():
    """The mass of every level k / 255 sums to 1 for any location and scale (edge bins included)."""
    torch.manual_seed(0)
    likelihood = build_likelihood("logistic", (1, 1, 1), 0.1)
    levels = torch.arange(LEVELS + 1, dtype=torch.float64) / LEVELS
    for location, log_scale in [(0.0, -1.0), (-4.0, -3.0), (3.0, 1.0), (-1.0, -7.0), (0.7, 3.0)]:
        output = torch.tensor([location, log_scale], dtype=torch.float64).view(1, 2, 1, 1).expand(len(levels), 2, 1, 1)
        mass = torch.exp(-likelihood.nll(output, levels.view(-1, 1, 1, 1)))
        assert float(mass.sum()) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.fast
def test_gaussians_match_torch_normal():
    torch.manual_seed(0)
    images, vectors = torch.rand(4, 3, 5, 5), torch.randn(4, 7)
    learned = build_likelihood("gaussian_learned", (3, 5, 5), 0.2)
    learned.log_std.data = torch.tensor([-1.0, 0.0, 0.5]).view(3, 1, 1)
    output = torch.randn(4, 3, 5, 5)
    expected = torch.distributions.Normal(torch.sigmoid(output), learned.log_std.exp()).log_prob(images).flatten(1).sum(1)
    torch.testing.assert_close(learned.nll(output, images), -expected)
    on_vectors = build_likelihood("gaussian_learned", (7,), 0.5)  # standardised features: the output is the mean
    output = torch.randn(4, 7)
    expected = torch.distributions.Normal(output, 0.5).log_prob(vectors).sum(1)
    torch.testing.assert_close(on_vectors.nll(output, vectors), -expected)


@pytest.mark.parametrize(("shape", "likelihood"), [((1, 2, 2), "bernoulli"), ((3, 2, 2), "logistic"), ((3, 2, 2), "gaussian_learned"), ((4,), "gaussian_learned")])
def test_importance_sampled_likelihood_approaches_the_exact_one(shape, likelihood):
    """With one latent dimension, log p(x) by dense quadrature: the IS estimate (k = 2000) lies
    close to it (a bound in expectation, so within Monte Carlo noise), the ELBO below both."""
    torch.manual_seed(0)
    model = build_model({**VAE, "latent_dim": 1, "likelihood": likelihood}, MLP, shape).eval()
    x = torch.randn(3, *shape) if len(shape) == 1 else (torch.rand(3, *shape) * LEVELS).round() / LEVELS
    grid = torch.linspace(-8, 8, 8001)
    with torch.no_grad():
        outputs = model.decoder(grid[:, None])
        log_px_z = -torch.stack([model.likelihood.nll(outputs, xi.expand(len(grid), *shape)) for xi in x])
        log_px = torch.logsumexp(log_px_z + torch.distributions.Normal(0.0, 1.0).log_prob(grid), dim=1) + math.log(grid[1] - grid[0])
        bounds = likelihood_bounds(model, x, k=2000, batch_size=3, generator=torch.Generator().manual_seed(0))
    assert torch.all((log_px - bounds["log_px"]).abs() < 0.02 * log_px.abs() + 0.05)
    assert torch.all(bounds["elbo"] <= bounds["log_px"] + 1e-4)
    assert torch.all(bounds["elbo"] <= log_px + 1e-2)


@pytest.mark.fast
def test_mnist_defaults_run_with_the_same_config_as_before():
    """`model.likelihood: auto` on grey MNIST images becomes bernoulli in the config the train stage
    writes and logs: the same config as with bernoulli written out (the default before `auto`)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from aevae.io import plain
    from conftest import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        auto = compose(config_name="train", overrides=["data=mnist", "model=vae", "net=mlp"])
        explicit = compose(config_name="train", overrides=["data=mnist", "model=vae", "net=mlp", "model.likelihood=bernoulli"])
    for cfg in (auto, explicit):
        cfg.output_dir = "models/vae"
    assert auto.model.likelihood == "auto"
    auto.model.likelihood = str(resolve_likelihood(auto.model.likelihood, (1, 28, 28)))  # as the train stage does
    assert OmegaConf.to_yaml(plain(auto)) == OmegaConf.to_yaml(plain(explicit))
