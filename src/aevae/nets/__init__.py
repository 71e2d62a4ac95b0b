"""Encoders and decoders as plain `nn.Module`s, built from a `net` config."""

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from aevae.nets.conv import ConvDecoder, ConvEncoder
from aevae.nets.mlp import MLPDecoder, MLPEncoder

NETS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (MLPEncoder, MLPDecoder),
    "conv": (ConvEncoder, ConvDecoder),
}


def build_nets(net_cfg: Mapping[str, Any], image_shape: Sequence[int], encoder_out: int, latent_dim: int) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair named by `net_cfg["name"]`, sized by the rest of `net_cfg`."""
    sizes = {key: value for key, value in net_cfg.items() if key != "name"}
    encoder_cls, decoder_cls = NETS[net_cfg["name"]]
    return encoder_cls(image_shape, encoder_out, **sizes), decoder_cls(image_shape, latent_dim, **sizes)


__all__ = ["NETS", "build_nets"]
