"""The schema every `net` config extends, and the layer-size check the nets share."""

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import MISSING

from aevae.errors import ConfigError


@dataclass
class NetConfig:
    """A network family: `name` picks the encoder/decoder pair in `aevae.nets.NETS`."""

    name: str = MISSING


def check_sizes(key: str, sizes: Sequence[int]) -> None:
    """Raise ConfigError unless `sizes` is a non-empty list of positive layer sizes."""
    if len(sizes) == 0 or any(size <= 0 for size in sizes):
        raise ConfigError(f"{key}: layer sizes must be > 0, got {list(sizes)}")
