"""A model trained on another model's codes (data=codes), seen as one model of the images: Kingma
et al. (2014)'s stacked M1+M2 when the upper model is an ssvae and the lower one a VAE."""

from typing import Any

import torch
from torch import Tensor, nn

from aevae.data import Splits
from aevae.models.base import BaseAutoencoder, Capability


class StackedModel(nn.Module):
    """The upper model on the lower model's codes: an image's code is the lower model's posterior
    mean of the units the codes hold, standardised as the codes were (`Splits.feature_mean`,
    `feature_std`); generation runs the other way: the upper model's mean code, back in the lower
    model's units (the units the codes leave out at 0, their prior mean), decoded to an image.

    It offers the upper model's class-conditional capabilities on images: `classify` (q(y|x) of
    the image's code), `encode` (the upper posterior of the image's code), `decode_given` and
    `sample_given` (z and y decoded through both models), so the functions that judge a
    class-conditional model take it as they take M2 on pixels.
    """

    def __init__(self, upper: BaseAutoencoder, lower: BaseAutoencoder, codes: Splits) -> None:
        super().__init__()
        self.upper, self.lower = upper, lower
        self.register_buffer("units", codes.code_units.clone())
        self.register_buffer("mean", codes.feature_mean.clone())
        self.register_buffer("std", codes.feature_std.clone())
        self.image_shape = lower.image_shape

    @property
    def cfg(self) -> Any:
        """The upper model's config (its `latent_dim` is the stack's)."""
        return self.upper.cfg

    @property
    def device(self) -> torch.device:
        return self.units.device

    def supports(self, capability: Capability | str) -> bool:
        return Capability(capability) in (Capability.classify, Capability.sample_given, Capability.posterior) and self.upper.supports(capability)

    def codes(self, x: Tensor) -> Tensor:
        """The standardised codes of images `x`: what the upper model was trained on."""
        return (self.lower.embed(x)[:, self.units] - self.mean) / self.std

    def classify(self, x: Tensor) -> Tensor:
        return self.upper.classify(self.codes(x))

    def encode(self, x: Tensor) -> Any:
        return self.upper.encode(self.codes(x))

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Mean images of the lower model for standardised codes (N, units)."""
        z = torch.zeros(len(codes), self.lower.cfg.latent_dim, device=codes.device, dtype=codes.dtype)
        z[:, self.units] = codes * self.std + self.mean
        return self.lower.decode(z)

    def decode_given(self, z: Tensor, y: Tensor) -> Tensor:
        return self.decode_codes(self.upper.decode_given(z, y))

    def sample_given(self, y: Tensor) -> Tensor:
        return self.decode_codes(self.upper.sample_given(y))
