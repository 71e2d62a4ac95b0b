"""A trained model's codes of its images as a vector data set (data=codes, docs/your-data.md).

`data.path` names the model's checkpoint. The codes of each split (the images' own split) with
the images' labels go through the array file's reader of vectors (`arrays_source`), so they are
checked, split and standardised as any vectors (N, D) are. The model and its images are opened
above this layer (`aevae.stages.codes`); this module holds what the data set is made of.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from aevae.data.arrays import arrays_source
from aevae.data.images import Shape
from aevae.data.source import Source


def codes_source(
    checkpoint: Path,
    means: Mapping[str, Tensor],
    stds: Mapping[str, Tensor] | None,
    labels: Mapping[str, Tensor],
    class_names: tuple[str, ...],
    units: Tensor,
) -> Source:
    """The vectors of the code `units` (indices) of `means` (split -> (N, D) posterior means),
    labelled with `labels` (split -> (N,), -1 where the images have none), each split kept; with
    `stds` (the posterior stds, same shapes), each value's std to draw codes from (`noise_std`)."""
    names = list(means)
    arrays = {
        "x": torch.cat([means[name][:, units] for name in names]).numpy(),
        "split": np.concatenate([np.full(len(means[name]), name) for name in names]),
    }
    y = torch.cat([labels[name] for name in names]).numpy()
    if (y >= 0).all():
        arrays["y"] = y
    source = arrays_source(checkpoint, arrays, Shape(None, None, "lanczos"), str(checkpoint))
    source.class_names, source.code_units = class_names, units
    if stds is not None:
        source.noise_std = {name: stds[name][:, units].float().contiguous() for name in names}
    return source
