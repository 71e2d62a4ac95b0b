"""Fully connected encoder and decoder, for images (C, H, W) and vectors (D,) alike."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from omegaconf import MISSING
from torch import Tensor, nn

from aevae.nets.base import NetConfig, check_sizes


class Activation(StrEnum):
    relu = "relu"
    tanh = "tanh"  # the IWAE paper's nets (Burda et al. 2015)
    softplus = "softplus"  # the M1 model's nets (Kingma et al. 2014)


ACTIVATIONS: dict[Activation, type[nn.Module]] = {Activation.relu: nn.ReLU, Activation.tanh: nn.Tanh, Activation.softplus: nn.Softplus}


@dataclass
class MLPConfig(NetConfig):
    hidden_dims: list[int] = MISSING  # hidden layer widths of the encoder (the decoder mirrors them)
    activation: Activation = MISSING  # between the hidden layers

    def __post_init__(self) -> None:
        check_sizes("net.hidden_dims", self.hidden_dims)

    def encoder(self, image_shape: Sequence[int], out_features: int) -> nn.Module:
        return MLPEncoder(image_shape, out_features, self.hidden_dims, self.activation)

    def decoder(self, image_shape: Sequence[int], latent_dim: int) -> nn.Module:
        return MLPDecoder(image_shape, latent_dim, self.hidden_dims, self.activation)


def mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[Activation(activation)]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flattens an image (or takes a vector) and maps it to `out_features` numbers."""

    def __init__(self, image_shape: Sequence[int], out_features: int, hidden_dims: Sequence[int], activation: str) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), mlp([math.prod(image_shape), *hidden_dims, out_features], activation))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """Maps a latent vector to the decoder's output of `image_shape` (the likelihood's parameters)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, hidden_dims: Sequence[int], activation: str) -> None:
        super().__init__()
        self.net = nn.Sequential(
            mlp([latent_dim, *reversed(hidden_dims), math.prod(image_shape)], activation), nn.Unflatten(1, tuple(image_shape))
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
