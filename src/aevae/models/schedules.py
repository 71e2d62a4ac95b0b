"""The learning rate's schedules: each is `f(epoch, max_epochs) -> factor` of the optimizer's lr,
named by `model.lr_schedule`; the model config's `scheduler` (conf/model/ae.yaml) is a LambdaLR
of the named one, which Hydra instantiates."""

import math
from enum import StrEnum


class LRSchedule(StrEnum):  # the functions of this module
    constant = "constant"
    cosine = "cosine"  # per epoch, from lr down to 0 at the end of trainer.max_epochs
    iwae = "iwae"  # Burda et al. (2015): lr * 10^(-i/7) for 3^i epochs, i = 0, 1, 2, ...


def constant(epoch: int, max_epochs: int) -> float:
    return 1.0


def cosine(epoch: int, max_epochs: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * epoch / max_epochs))


def iwae(epoch: int, max_epochs: int) -> float:
    """Stage i spans epochs [(3^i - 1) / 2, (3^(i+1) - 1) / 2)."""
    return 10 ** (-math.floor(math.log(2 * epoch + 1, 3) + 1e-9) / 7)
