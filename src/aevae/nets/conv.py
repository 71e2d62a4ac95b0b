"""Convolutional encoder and decoder: stride-2 convolutions halve the image side per layer.

Any image of C channels and sides H, W >= 2^layers works: each layer maps a side s to floor(s/2)
(kernel 4, stride 2, padding 1), and the decoder's transposed convolutions undo it exactly, an
odd side through an output padding of 1 (28 -> 14 -> 7 -> 3 and back for three layers). Sides
divisible by 2^layers build the same layers as before (no output padding)."""

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

    def encoder(self, image_shape: Sequence[int], out_features: int) -> nn.Module:
        return ConvEncoder(image_shape, out_features, self.channels, self.hidden_dim)

    def decoder(self, image_shape: Sequence[int], latent_dim: int) -> nn.Module:
        return ConvDecoder(image_shape, latent_dim, self.channels, self.hidden_dim)


def side_ladder(image_shape: Sequence[int], n_layers: int) -> list[tuple[int, int]]:
    """The (height, width) after 0, 1, ..., `n_layers` stride-2 layers; ConfigError for vectors or
    images too small for that many layers."""
    if len(image_shape) != 3:
        raise ConfigError(f"net.name: conv needs images (C, H, W), the data are vectors of shape {tuple(image_shape)}; use net=mlp")
    sides = [(int(image_shape[1]), int(image_shape[2]))]
    for _ in range(n_layers):
        sides.append((sides[-1][0] // 2, sides[-1][1] // 2))
    if min(sides[-1]) < 1:
        raise ConfigError(f"net.channels: {n_layers} stride-2 layers need image sides >= {2**n_layers}, got {tuple(image_shape)}")
    return sides


class ConvEncoder(nn.Module):
    """Conv layers (kernel 4, stride 2), then a hidden linear layer to `out_features`."""

    def __init__(self, image_shape: Sequence[int], out_features: int, channels: Sequence[int], hidden_dim: int) -> None:
        super().__init__()
        height, width = side_ladder(image_shape, len(channels))[-1]
        layers: list[nn.Module] = []
        for c_in, c_out in zip([image_shape[0], *channels[:-1]], channels):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        layers += [nn.Flatten(), nn.Linear(channels[-1] * height * width, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_features)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """The mirror of `ConvEncoder`: linear layers, then transposed convs up to `image_shape`
    (the decoder's output: per pixel, the likelihood's parameters)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int], hidden_dim: int) -> None:
        super().__init__()
        sides = side_ladder(image_shape, len(channels))[::-1]  # smallest first
        widths = list(reversed(channels))
        height, width = sides[0]
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, widths[0] * height * width),
            nn.ReLU(),
            nn.Unflatten(1, (widths[0], height, width)),
        ]
        outs = [*widths[1:], image_shape[0]]
        for i, (c_in, c_out) in enumerate(zip(widths, outs)):
            (h_in, w_in), (h_out, w_out) = sides[i], sides[i + 1]
            padding = (h_out - 2 * h_in, w_out - 2 * w_in)  # 1 where the encoder dropped an odd row or column
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, output_padding=padding))
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
