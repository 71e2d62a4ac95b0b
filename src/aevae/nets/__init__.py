"""Encoders and decoders as plain `nn.Module`s; the registry of net families by config name, each
family's config building its encoder and decoder."""

from aevae.nets.base import NetConfig
from aevae.nets.conv import ConvConfig
from aevae.nets.mlp import MLPConfig

NETS: dict[str, type[NetConfig]] = {"mlp": MLPConfig, "conv": ConvConfig}

__all__ = ["NETS", "NetConfig"]
