"""Convolutional encoder and decoder: stride-2 convolutions halve the image side per layer."""

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import MISSING
from torch import Tensor, nn

from aevae.errors import ConfigError
from aevae.nets.base import NetConfig, check_sizes


@dataclass
class ConvConfig(NetConfig):
    channels: list[int] = MISSING  # output channels of each stride-2 conv layer
    hidden_dim: int = MISSING  # width of the linear layer between the convs and the code

    def __post_init__(self) -> None:
        check_sizes("net.channels", [*self.channels, self.hidden_dim])


def _reduced_side(image_shape: Sequence[int], n_layers: int) -> int:
    side = image_shape[-1]
    if image_shape[-2] != side or side % (2**n_layers):
        raise ConfigError(f"net.channels: {n_layers} stride-2 layers need a square image side divisible by {2**n_layers}, got {tuple(image_shape)}")
    return side // 2**n_layers


class ConvEncoder(nn.Module):
    """Conv layers (kernel 4, stride 2), then a hidden linear layer to `out_features`."""

    def __init__(self, image_shape: Sequence[int], out_features: int, channels: Sequence[int], hidden_dim: int) -> None:
        super().__init__()
        side = _reduced_side(image_shape, len(channels))
        layers: list[nn.Module] = []
        for c_in, c_out in zip([image_shape[0], *channels[:-1]], channels):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        layers += [nn.Flatten(), nn.Linear(channels[-1] * side * side, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_features)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """The mirror of `ConvEncoder`: linear layers, then transposed convs up to pixel logits."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int], hidden_dim: int) -> None:
        super().__init__()
        side = _reduced_side(image_shape, len(channels))
        widths = list(reversed(channels))
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, widths[0] * side * side),
            nn.ReLU(),
            nn.Unflatten(1, (widths[0], side, side)),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], image_shape[0], kernel_size=4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
