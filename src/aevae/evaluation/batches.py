"""Apply a model function to a large tensor in batches, without gradients."""

from collections.abc import Callable

import torch
from torch import Tensor


@torch.no_grad()
def map_batches(fn: Callable[[Tensor], Tensor], inputs: Tensor, batch_size: int) -> Tensor:
    """`fn` applied to consecutive slices of `inputs`, concatenated along the first dimension."""
    return torch.cat([fn(batch) for batch in inputs.split(batch_size)])
