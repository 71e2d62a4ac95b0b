"""The maths of the models: KL, ELBO bound, likelihoods, corruption, the shared API."""

import math

import pytest
import torch

from aevae.models import build_model
from aevae.models.losses import build_likelihood, corrupt, gaussian_kl
from conftest import lr_keys

pytestmark = pytest.mark.fast  # every test here is a quick unit test (`make test-fast`)

MLP = {"name": "mlp", "hidden_dims": [16], "activation": "relu"}
CONV = {"name": "conv", "channels": [4, 8], "hidden_dim": 16}
BASE = dict(likelihood="bernoulli", gaussian_std=0.1, corruption="none", corruption_level=0.0, **lr_keys(1e-3))
AE = {"name": "ae", "label": "ae", "latent_dim": 3, **BASE}
VAE = {"name": "vae", "label": "vae", "latent_dim": 3, "beta": 1.0, "kl_warmup_epochs": 0, **BASE}


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3) * 0.5
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(gaussian_kl(mu, logvar), mc, atol=0.02, rtol=0.01)
    assert torch.all(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_reconstruction_nll_is_per_sample_sum_in_nats():
    logits, target = torch.randn(5, 1, 8, 8), torch.rand(5, 1, 8, 8).round()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(target).flatten(1).sum(1)
    torch.testing.assert_close(build_likelihood("bernoulli", (1, 8, 8), 0.1).nll(logits, target), -expected)
    std = 0.3
    expected = torch.distributions.Normal(torch.sigmoid(logits), std).log_prob(target).flatten(1).sum(1)
    torch.testing.assert_close(build_likelihood("gaussian", (1, 8, 8), std).nll(logits, target), -expected)


def test_elbo_is_below_exact_log_likelihood():
    """For a tiny latent space, log p(x) by dense quadrature must upper-bound every ELBO estimate."""
    torch.manual_seed(0)
    model = build_model({**VAE, "latent_dim": 1}, MLP, (1, 8, 8)).eval()
    x = torch.rand(3, 1, 8, 8).round()
    grid = torch.linspace(-8, 8, 4001)
    with torch.no_grad():
        logits = model.decoder(grid[:, None])
        log_px_z = -torch.stack([model.likelihood.nll(logits, xi.expand_as(logits)) for xi in x])
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(grid)
        log_px = torch.logsumexp(log_px_z + log_pz, dim=1) + math.log(grid[1] - grid[0])
        elbo = torch.stack([model.loss_terms(x, x)["elbo"] for _ in range(200)]).mean(0)
    assert torch.all(elbo <= log_px + 1e-3)
    assert torch.all(log_px - elbo < 200)  # a sign or reduction bug would break this


@pytest.mark.parametrize("net", [MLP, CONV])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_shared_api_shapes(net, shape):
    x = torch.rand(6, *shape)
    for cfg in (AE, VAE):
        model = build_model(cfg, net, shape).eval()
        assert model.embed(x).shape == (6, 3)
        recon = model.reconstruct(x)
        assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1
        assert model.score_anomaly(x).shape == (6,)
        terms = model.loss_terms(x, x)
        assert all(t.shape == (6,) for t in terms.values())
    vae = build_model(VAE, net, shape)
    assert vae.sample(4).shape == (4, *shape)
    mu, _ = vae.encode(x)
    torch.testing.assert_close(vae.embed(x), mu)  # embed is the posterior mean, not a sample
    with pytest.raises(NotImplementedError, match="no prior"):
        build_model(AE, net, shape).sample(2)


def test_vae_terms_are_consistent():
    model = build_model({**VAE, "beta": 4.0}, MLP, (1, 8, 8)).eval()
    x = torch.rand(5, 1, 8, 8)
    terms = model.loss_terms(x, x)
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    torch.testing.assert_close(terms["loss"], terms["recon"] + 4.0 * terms["kl"])


def test_corruptions():
    torch.manual_seed(0)
    x = torch.full((100, 1, 8, 8), 0.5)
    assert torch.equal(corrupt(x, "none", 0.3), x)
    masked = corrupt(x, "mask", 0.25)
    assert abs((masked == 0).float().mean().item() - 0.25) < 0.02
    noisy = corrupt(x, "gaussian", 0.1)
    assert 0.08 < (noisy - x).std().item() < 0.12 and noisy.min() >= 0 and noisy.max() <= 1
