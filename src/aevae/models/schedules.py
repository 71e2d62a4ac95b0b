"""The learning-rate schedules by name (`model.lr_schedule`): each is `f(epoch, max_epochs) ->
factor` of the optimizer's lr. The model config's `scheduler` (conf/model/ae.yaml) is `per_epoch`
of the named one, which Hydra instantiates and the model gives its optimizer and
`trainer.max_epochs`."""

import math
from enum import StrEnum
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


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


def per_epoch(optimizer: Optimizer, max_epochs: int, schedule: LRSchedule) -> LambdaLR:
    """The optimizer's learning rate times the factor of the schedule function of this module that
    `schedule` names, per epoch of `max_epochs`."""
    return LambdaLR(optimizer, partial(globals()[LRSchedule(schedule).value], max_epochs=max_epochs))
