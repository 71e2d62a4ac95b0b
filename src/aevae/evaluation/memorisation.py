"""Whether a semi-supervised model's samples recall its labelled training images.

A model that sees a few labelled images at every step can learn to redraw them: its samples of a
class then have one of the labelled images as their nearest training image far more often than
chance. The share is set beside the same share for random sets of as many training images of the
same classes (what an unbiased generator would give); nearest is by L2 distance in pixels over
the whole training split, the labelled images included.
"""

import numpy as np
import torch
from torch import Tensor


@torch.no_grad()
def nearest_training_images(samples: Tensor, train_images: Tensor, batch_size: int) -> Tensor:
    """(N,) int64: the index of each sample's nearest training image (L2 over all pixels)."""
    train = train_images.flatten(1).float()
    return torch.cat([torch.cdist(batch.flatten(1).float(), train).argmin(1) for batch in samples.split(batch_size)])


def same_class_sets(train_labels: np.ndarray, per_class: np.ndarray, draws: int, seed: int) -> list[np.ndarray]:
    """`draws` random sets of training indices, `per_class[c]` images of each class c, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    return [
        np.concatenate([rng.choice(np.flatnonzero(train_labels == c), n, replace=False) for c, n in enumerate(per_class) if n > 0])
        for _ in range(draws)
    ]


def share_in(nearest: Tensor, index: np.ndarray, n_train: int) -> float:
    """The share of samples whose nearest training image is one of `index`."""
    members = torch.zeros(n_train, dtype=torch.bool, device=nearest.device)
    members[torch.as_tensor(index, device=nearest.device)] = True
    return float(members[nearest].float().mean())


def memorisation_metrics(
    samples: Tensor, train_images: Tensor, train_labels: Tensor, labelled: np.ndarray, draws: int, seed: int, batch_size: int
) -> dict[str, float]:
    """`gen/nearest_labelled`: the share of `samples` whose nearest training image is one of the
    `labelled` ones (indices into the training split); `gen/nearest_random`: the mean of the same
    share over `draws` random same-size, same-class sets of training images (chance)."""
    nearest = nearest_training_images(samples, train_images, batch_size)
    labels = train_labels.cpu().numpy()
    per_class = np.bincount(labels[labelled], minlength=int(labels.max()) + 1)
    chance = [share_in(nearest, index, len(labels)) for index in same_class_sets(labels, per_class, draws, seed)]
    return {"gen/nearest_labelled": share_in(nearest, labelled, len(labels)), "gen/nearest_random": float(np.mean(chance))}
