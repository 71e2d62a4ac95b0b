"""Encoders and decoders as plain `nn.Module`s, built from a `net` config; the registry of families."""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from torch import nn

from aevae.nets.base import NetConfig
from aevae.nets.conv import ConvConfig, ConvDecoder, ConvEncoder
from aevae.nets.mlp import MLPConfig, MLPDecoder, MLPEncoder


class NetFamily(NamedTuple):
    config: type[NetConfig]
    encoder: type[nn.Module]
    decoder: type[nn.Module]


NETS: dict[str, NetFamily] = {
    "mlp": NetFamily(MLPConfig, MLPEncoder, MLPDecoder),
    "conv": NetFamily(ConvConfig, ConvEncoder, ConvDecoder),
}


def build_nets(
    net_cfg: Mapping[str, Any], image_shape: Sequence[int], encoder_out: int, latent_dim: int, decoder_shape: Sequence[int] | None = None
) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair named by `net_cfg["name"]`, sized by the rest of `net_cfg`: the
    encoder reads `image_shape` (C, H, W) or vectors (D,); the decoder writes `decoder_shape`
    (default `image_shape`; more channels where the likelihood has several parameters per pixel)."""
    sizes = {key: value for key, value in net_cfg.items() if key != "name"}
    family = NETS[net_cfg["name"]]
    return family.encoder(image_shape, encoder_out, **sizes), family.decoder(decoder_shape or image_shape, latent_dim, **sizes)


__all__ = ["NETS", "NetConfig", "NetFamily", "build_nets"]
