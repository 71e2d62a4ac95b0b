"""The schema every `net` config extends, and the layer-size check the nets share."""

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import MISSING
from torch import nn

from aevae.errors import ConfigError


@dataclass
class NetConfig:
    """A network family: `name` picks its config in `aevae.nets.NETS`, which builds its encoder
    and decoder, sized by the rest of the config."""

    name: str = MISSING

    def encoder(self, image_shape: Sequence[int], out_features: int) -> nn.Module:
        """The encoder of images `image_shape` (C, H, W) or vectors (D,) to `out_features` numbers."""
        raise NotImplementedError

    def decoder(self, image_shape: Sequence[int], latent_dim: int) -> nn.Module:
        """The decoder of `latent_dim` codes to outputs of `image_shape` (the likelihood's
        parameters per pixel)."""
        raise NotImplementedError


def check_sizes(key: str, sizes: Sequence[int]) -> None:
    """Raise ConfigError unless `sizes` is a non-empty list of positive layer sizes."""
    if len(sizes) == 0 or any(size <= 0 for size in sizes):
        raise ConfigError(f"{key}: layer sizes must be > 0, got {list(sizes)}")
