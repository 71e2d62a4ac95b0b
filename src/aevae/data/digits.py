"""sklearn's bundled 8x8 digits (1,797 images): the embedded default data set."""

import torch
from torch import Tensor

MAX_LEVEL = 16  # pixel values are integers 0..16


def load_digits_raw() -> tuple[Tensor, Tensor]:
    """Return images (N, 1, 8, 8) uint8 with levels 0..16 and labels (N,) int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).to(torch.uint8).unsqueeze(1)
    return images, torch.from_numpy(bunch.target).long()
