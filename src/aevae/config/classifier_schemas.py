"""The schemas that hold the digit classifier's config (`ClassifierConfig`, which lives beside its
LightningModule): the classifier stage's, and the reference stage's (its semi-supervised task's
judge). Importing this module imports Lightning; `aevae.config` imports it on first use, so that a
stage that trains nothing starts without it.
"""

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING

from aevae.config.schemas import (
    AnomalyConfig,
    DataConfig,
    LoggerConfig,
    PublishedNumber,
    ReferenceProbeConfig,
    ReferenceTask,
    TrainerConfig,
)
from aevae.errors import require
from aevae.models import model_class
from aevae.models.classifier import ClassifierConfig


@dataclass
class ClassifierStageConfig:
    data: DataConfig = MISSING
    classifier: ClassifierConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    stage: str = MISSING


@dataclass
class SemiSupervisedConfig:
    """The semi-supervised reference task's settings beside the model's (`semi_supervised`)."""

    judge: ClassifierConfig = MISSING  # the digit classifier that labels the samples, trained by the classifier stage
    judge_epochs: int = MISSING
    samples_per_class: int = MISSING  # conditional samples of each digit (accuracy, Fréchet distance)
    supervised_steps: int = MISSING  # full-batch Adam steps of the supervised-only baseline (at model.lr)
    figure_rows: int = MISSING  # rows of the conditional-sample grid and of the analogy figure
    nearest_draws: int = MISSING  # random same-class sets of as many training images as are labelled: the chance of a sample's nearest image being in one

    def __post_init__(self) -> None:
        for key in ("judge_epochs", "supervised_steps", "figure_rows", "nearest_draws"):
            require(getattr(self, key) > 0, f"semi_supervised.{key}", f"must be > 0, got {getattr(self, key)}")
        require(self.samples_per_class >= 2, "semi_supervised.samples_per_class", f"must be >= 2 (a covariance needs two), got {self.samples_per_class}")


@dataclass
class StackConfig:
    """The lower model of a stack (Kingma et al. 2014's M1 under M2): trained on the images without
    labels in `output_dir` before the recipe's model trains on its codes (data=codes, `data.path`
    its checkpoint)."""

    data: DataConfig = MISSING  # the images
    model: Any = MISSING  # typed by the chosen option's schema (`/model@stack.model: vae`)
    net: Any = MISSING
    epochs: int = MISSING
    output_dir: str = MISSING

    @property
    def checkpoint(self) -> str:
        return f"{self.output_dir}/checkpoints/best.ckpt"

    def __post_init__(self) -> None:
        require(self.epochs > 0, "stack.epochs", f"must be > 0, got {self.epochs}")
        require(model_class(self.model.name).supports("posterior"), "stack.model", f"{self.model.name} has no posterior q(z|x) to take codes from; use a vae")


@dataclass
class ReferenceConfig(AnomalyConfig):
    recipe: str = MISSING  # the recipe's name, as in `experiment=<recipe>`
    task: ReferenceTask = MISSING
    seeds: list[int] = MISSING  # one training (per normal class, for one_class) per seed
    budget: str = MISSING  # a key of `budgets`
    budgets: dict[str, Any] = MISSING  # budget name -> the values the recipe reads through ${budgets.${budget}.*}
    protocol: str = MISSING  # the protocol in words, for protocol.json and the reference report
    published: list[PublishedNumber] = MISSING
    probe: Optional[ReferenceProbeConfig] = None  # the probe task's classifiers
    semi_supervised: Optional[SemiSupervisedConfig] = None  # the semi_supervised task's judge, samples and baseline
    stack: Optional[StackConfig] = None  # a lower model trained first, whose codes the recipe's model trains on

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds), "seeds", f"list distinct seeds, got {list(self.seeds)}")
        if self.task == ReferenceTask.likelihood:
            require(self.likelihood.samples >= 1, "likelihood.samples", f"must be >= 1, got {self.likelihood.samples}")
        if self.task == ReferenceTask.semi_supervised:
            require(self.semi_supervised is not None, "semi_supervised", "the semi_supervised task needs its settings")
            require(model_class(self.model.name).supports("classify"), "model", f"{self.model.name} has no classifier q(y|x); use model=ssvae")
        if self.stack is not None:
            require(self.data.name == "codes", "data", f"a stack's model trains on the lower model's codes: data=codes, got {self.data.name}")
            require(self.data.path == self.stack.checkpoint, "data.path", f"a stack's model reads the lower model's checkpoint {self.stack.checkpoint}, got {self.data.path}")
