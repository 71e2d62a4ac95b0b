"""The reference stage: one recipe that reproduces a published MNIST number, run once per seed.

A recipe (`conf/experiment/ref_*.yaml`) names its task, protocol, budgets and the published
numbers it stands beside. Tasks:

- `likelihood`: train a VAE, then its test -log p(x) by importance sampling (`likelihood.samples`)
  and its test ELBO (the mean of the same log-weights);
- `one_class`: the anomaly stage's protocol (one model per normal class, the whole test set
  scored); per seed the mean AUROC/AUPRC over the classes of the model's score (reconstruction
  error or -ELBO), of its IS -log p(x) (a VAE) and of the PCA baseline;
- `probe`: train a VAE on every training image, then logistic regression and an RBF SVM on its
  posterior means (and on pixels) with `probe.labels_per_class` labels per class, `probe.draws`
  labelled subsets per seed;
- `semi_supervised`: train a semi-supervised model (ssvae) on the labelled subset of the seed
  and the rest of the training split without labels; the test accuracy of its q(y|x) beside the
  same classifier net trained on the labelled images alone, whether its samples of each digit
  are seen as that digit by a digit classifier (the judge, trained once by the classifier stage),
  their Fréchet distance per digit, how often their nearest training image is a labelled one,
  the IS -log p(x) with y summed out, and its figures. On a model's codes (data=codes; with
  `stack`, that model, M1, trained first), the samples and figures go through both models
  (`StackedModel`) and are judged as images.

Models are chosen on the validation split (best.ckpt); the test split is scored once per seed.
"""

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import MISSING

from aevae.config import DataConfig, Dataset, LogRegConfig, validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.data.subsets import labelled_subset, labelled_subsets
from aevae.errors import require
from aevae.evaluation.conditional import accuracy, conditional_metrics, conditional_samples, fit_supervised, save_conditional_figures
from aevae.evaluation.likelihood import likelihood_bounds
from aevae.evaluation.memorisation import memorisation_metrics
from aevae.evaluation.probe import embed_images, logistic_probe, probe_runs, svm_probe
from aevae.io import plain, write_json
from aevae.models import build_model, load_model, model_class
from aevae.models.classifier import ClassifierConfig, DigitClassifier, load_classifier
from aevae.models.stack import StackedModel
from aevae.run.devices import describe
from aevae.run.progress import announce
from aevae.stages import anomaly, classifier, train
from aevae.stages.anomaly import AnomalyConfig
from aevae.stages.classifier import ClassifierStageConfig
from aevae.stages.codes import images_config, load_data
from aevae.stages.common import Config, config_part, open_stage_run, print_summary
from aevae.stages.train import TrainConfig

Metrics = dict[str, float]


class ReferenceTask(StrEnum):
    likelihood = "likelihood"  # a VAE's test -log p(x) by importance sampling, and its test ELBO
    one_class = "one_class"  # the anomaly stage's protocol, once per seed
    probe = "probe"  # classifiers on the posterior means with a few labels per class
    semi_supervised = "semi_supervised"  # an ssvae's q(y|x) test accuracy and its samples of each class


@dataclass
class PublishedNumber:
    metric: str = MISSING  # the recipe's metric it stands beside (a key of its metrics.json, without /mean)
    value: float = MISSING
    source: str = MISSING  # paper, table and setting
    target: Optional[float] = None  # the figure ours should reach at full budget
    better: str = MISSING  # lower | higher


@dataclass
class SVMConfig:
    C: float = MISSING
    gamma: str = MISSING  # scale | auto (scikit-learn's RBF width rules)


@dataclass
class ReferenceProbeConfig:
    labels_per_class: int = MISSING
    draws: int = MISSING  # labelled subsets per trained model, drawn with seeds 0 .. draws - 1
    standardize: bool = MISSING  # scale each feature to unit variance before the classifiers
    logreg: LogRegConfig = MISSING
    svm: SVMConfig = MISSING

    def __post_init__(self) -> None:
        require(self.labels_per_class > 0, "probe.labels_per_class", f"must be > 0, got {self.labels_per_class}")
        require(self.draws > 0, "probe.draws", f"must be > 0, got {self.draws}")


def check_budget(cfg: Any) -> None:
    """Reject a `budget` the recipe does not define, by name (before its values are interpolated)."""
    budgets = cfg.get("budgets") or {}
    require(cfg.budget in budgets, "budget", f"unknown budget {cfg.budget!r}; the recipe has {', '.join(budgets) or 'none (name a recipe: experiment=ref_...)'}")


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


def seed_config(cfg: ReferenceConfig, schema: type[Config], seed: int) -> Config:
    """The `schema` part of `cfg` (a TrainConfig or AnomalyConfig) for one seed, its run named
    `<stage>/<recipe>/seed_<s>` and its outputs in `<train_dir>/seed_<s>` (the anomaly stage's
    class models in `classes/` there): only the recipe's metrics and protocol are reports."""
    output_dir = Path(cfg.train_dir) / f"seed_{seed}"
    changes = {"seed": seed, "logger": replace(cfg.logger, run_name=f"{cfg.stage}/{cfg.recipe}/seed_{seed}"), "output_dir": str(output_dir)}
    if schema is AnomalyConfig:
        changes["train_dir"] = str(output_dir / "classes")
    return config_part(cfg, schema, **changes)


def trained_model(cfg: ReferenceConfig, seed: int, parent: str | None) -> tuple[Any, InMemoryDataModule]:
    """Train the recipe's model with `seed`; its best checkpoint (by validation loss) and the data."""
    seeded = seed_config(cfg, TrainConfig, seed)
    train.run(seeded, parent=parent)
    model = load_model(Path(seeded.output_dir) / "checkpoints" / "best.ckpt").eval()
    datamodule = InMemoryDataModule(load_data(cfg.data), cfg.data, seed=seed)
    datamodule.setup()
    return model, datamodule


def likelihood_task(cfg: ReferenceConfig, seed: int, parent: str | None) -> Metrics:
    """`test/nll_is` (IWAE bound with k = likelihood.samples, nats) and `test/elbo`."""
    model, datamodule = trained_model(cfg, seed, parent)
    test_images, _ = datamodule.tensors["test"]
    generator = torch.Generator().manual_seed(seed)
    bounds = likelihood_bounds(model, test_images, cfg.likelihood.samples, cfg.likelihood.batch_size, generator)
    return {"test/nll_is": -float(bounds["log_px"].mean()), "test/elbo": float(bounds["elbo"].mean())}


def recipe_method(method: str, label: str) -> str:
    """An anomaly method's name without the model's label and PCA's size (`model`, `model_iwae`,
    `model_latent_lof`, `pca`, `pca_lof`, `pixels_lof`, ...): the recipes of either model share names."""
    return re.sub(rf"^{re.escape(label)}(?=_|$)", "model", re.sub(r"^pca\d+(?=_|$)", "pca", method))


def one_class_task(cfg: ReferenceConfig, seed: int, parent: str | None) -> Metrics:
    """`<auroc|auprc>/<method>` (`recipe_method`): the anomaly stage's class means for this seed."""
    seeded = seed_config(cfg, AnomalyConfig, seed)
    results = anomaly.run(seeded, parent=parent)
    return {
        f"{metric}/{recipe_method(method, cfg.model.label)}": value
        for name, value in results.items()
        for method, metric in [name.split("/")[1:3]]
        if name.endswith("/mean") and metric in ("auroc", "auprc")
    }


def probe_task(cfg: ReferenceConfig, seed: int, parent: str | None) -> Metrics:
    """`acc/<vae|pixels>/<logreg|svm>`: test accuracy with `probe.labels_per_class` labels per
    class, the mean over `probe.draws` labelled subsets."""
    model, datamodule = trained_model(cfg, seed, parent)
    (train_images, train_labels), (test_images, test_labels) = datamodule.tensors["train"], datamodule.tensors["test"]
    batch = cfg.data.eval_batch_size
    features = {
        "vae": (embed_images(model, train_images, batch), embed_images(model, test_images, batch)),
        "pixels": (train_images.flatten(1).numpy(), test_images.flatten(1).numpy()),
    }
    probe = cfg.probe
    classifiers: dict[str, Callable[[], Any]] = {
        "logreg": lambda: logistic_probe(probe.logreg.C, probe.logreg.max_iter, probe.standardize),
        "svm": lambda: svm_probe(probe.svm.C, probe.svm.gamma, probe.standardize),
    }
    subsets = labelled_subsets(train_labels.numpy(), [probe.labels_per_class], range(probe.draws))
    metrics = {}
    for name, make_classifier in classifiers.items():
        runs = probe_runs(features, train_labels.numpy(), test_labels.numpy(), subsets, make_classifier)
        for feature in features:
            metrics[f"acc/{feature}/{name}"] = float(np.mean([run["accuracy"] for run in runs if run["feature"] == feature]))
    return metrics


def lower_model(cfg: ReferenceConfig, seed: int, parent: str | None) -> None:
    """The stack's lower model (`stack`, M1): trained on its images without labels in
    `stack.output_dir` during the first seed's run; the recipe's model trains on its codes."""
    if cfg.stack is None or seed != cfg.seeds[0]:
        return
    lower = TrainConfig(
        data=cfg.stack.data,
        model=cfg.stack.model,
        net=cfg.stack.net,
        trainer=replace(cfg.trainer, max_epochs=cfg.stack.epochs),
        logger=replace(cfg.logger, run_name=f"{cfg.stage}/{cfg.recipe}/{cfg.stack.model.label}"),
        seed=seed,
        output_dir=cfg.stack.output_dir,
        stage=cfg.stage,
        objective=cfg.objective,
        compile=cfg.compile,
    )
    train.run(lower, parent=parent)


def images_data(cfg: ReferenceConfig) -> Any:
    """The data config of the images the recipe's samples are judged as: the recipe's own, or on
    a model's codes, the images that model was trained on."""
    return images_config(Path(cfg.data.path)) if cfg.data.name == Dataset.codes else cfg.data


def judge(cfg: ReferenceConfig, seed: int) -> DigitClassifier:
    """The digit classifier that labels generated images: trained by the classifier stage on the
    recipe's images (`semi_supervised.judge`, `judge_epochs`) in `<train_dir>/judge` during the
    first seed's run, loaded by the later seeds."""
    output_dir = Path(cfg.train_dir) / "judge"
    if seed == cfg.seeds[0]:
        judge_cfg = ClassifierStageConfig(
            data=images_data(cfg),
            classifier=cfg.semi_supervised.judge,
            trainer=replace(cfg.trainer, max_epochs=cfg.semi_supervised.judge_epochs),
            logger=replace(cfg.logger, run_name=f"{cfg.stage}/{cfg.recipe}/judge"),
            seed=seed,
            output_dir=str(output_dir),
            stage="classifier",
        )
        classifier.run(judge_cfg)
    return load_classifier(output_dir / "checkpoints" / "best.ckpt")


def semi_supervised_task(cfg: ReferenceConfig, seed: int, parent: str | None) -> Metrics:
    """`test/accuracy` (and `val/accuracy`) of the model's q(y|x); `test/accuracy_supervised`: its
    classifier net trained on the same labelled images alone; `gen/accuracy` and `gen/fid` (mean
    and per digit) of `semi_supervised.samples_per_class` samples per digit, by the judge
    (`judge/test/accuracy`: its own accuracy on the test images), and `gen/nearest_labelled`
    beside `gen/nearest_random` (`memorisation_metrics`); `test/nll_is` (k = likelihood.samples, y
    summed out) and `test/elbo`, in nats. Figures in `<output_dir>/figures/seed_<s>` (the
    reference report shows the first seed's). On codes, the samples, their judging and the
    figures are of images, through the stack."""
    settings, batch = cfg.semi_supervised, cfg.data.eval_batch_size
    lower_model(cfg, seed, parent)
    scorer = judge(cfg, seed)
    model, datamodule = trained_model(cfg, seed, parent)
    (train_images, train_labels), (val_images, val_labels), (test_images, test_labels) = (datamodule.tensors[split] for split in ("train", "val", "test"))
    subset = torch.from_numpy(labelled_subset(train_labels.numpy(), cfg.model.labels_per_class, seed))
    torch.manual_seed(seed)
    supervised = fit_supervised(
        build_model(cfg.model, cfg.net, model.image_shape).classifier,
        train_images[subset],
        train_labels[subset],
        settings.supervised_steps,
        cfg.model.lr,
    )
    predict = lambda x: model.classify(x).argmax(1)  # noqa: E731
    metrics = {
        "test/accuracy": accuracy(predict, test_images, test_labels, batch),
        "val/accuracy": accuracy(predict, val_images, val_labels, batch),
        "test/accuracy_supervised": accuracy(lambda x: supervised(x).argmax(1), test_images, test_labels, batch),
    }
    if cfg.likelihood.samples > 0:
        bounds = likelihood_bounds(model, test_images, cfg.likelihood.samples, cfg.likelihood.batch_size, torch.Generator().manual_seed(seed))
        metrics |= {"test/nll_is": -float(bounds["log_px"].mean()), "test/elbo": float(bounds["elbo"].mean())}
    generator, images = model, datamodule
    if cfg.data.name == Dataset.codes:  # judged as images, through the stack
        generator = StackedModel(model, load_model(cfg.data.path), datamodule.splits).eval()
        images = InMemoryDataModule(load_or_prepare(images_data(cfg)), images_data(cfg), seed=seed)
    (train_pixels, _), (test_pixels, _) = images.split("train"), images.split("test")
    metrics["judge/test/accuracy"] = accuracy(scorer.predict, test_pixels, test_labels, batch)
    torch.manual_seed(seed)
    samples, asked = conditional_samples(generator, settings.samples_per_class, batch)
    metrics |= conditional_metrics(samples, asked, scorer, test_pixels, test_labels, batch)
    metrics |= memorisation_metrics(samples, train_pixels, train_labels, subset.numpy(), settings.nearest_draws, seed, batch)
    save_conditional_figures(generator, test_pixels, settings.figure_rows, Path(cfg.output_dir) / "figures" / f"seed_{seed}", cfg.model.label, seed)
    return metrics


TASKS: dict[ReferenceTask, Callable[[ReferenceConfig, int, str | None], Metrics]] = {
    ReferenceTask.likelihood: likelihood_task,
    ReferenceTask.one_class: one_class_task,
    ReferenceTask.probe: probe_task,
    ReferenceTask.semi_supervised: semi_supervised_task,
}


def across_seeds(per_seed: Mapping[int, Metrics]) -> Metrics:
    """`<name>/mean`, `<name>/std` (sample std; 0 for one seed) and `<name>/seed_<s>` of every metric."""
    metrics = {}
    for name in next(iter(per_seed.values())):
        values = [seed_metrics[name] for seed_metrics in per_seed.values()]
        metrics[f"{name}/mean"] = float(np.mean(values))
        metrics[f"{name}/std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        metrics |= {f"{name}/seed_{seed}": seed_metrics[name] for seed, seed_metrics in per_seed.items()}
    return metrics


def protocol_record(cfg: ReferenceConfig, wall_seconds: float) -> dict[str, Any]:
    """What protocol.json says of a run: recipe, protocol, published numbers, budget, device, time."""
    return {
        "recipe": cfg.recipe,
        "task": str(cfg.task),
        "model": cfg.model.label,
        "net": plain(cfg.net),
        "protocol": " ".join(cfg.protocol.split()),
        "published": [plain(number) for number in cfg.published],
        "budget": {
            "name": cfg.budget,
            "epochs": cfg.trainer.max_epochs,
            "batch_size": cfg.data.batch_size,
            "limit_train_batches": cfg.trainer.limit_train_batches,
            "seeds": list(cfg.seeds),
            "iw_samples": cfg.likelihood.samples,
            "lr": cfg.model.lr,
            "lr_schedule": str(cfg.model.lr_schedule),
        },
        "data": cfg.data.name,
        "device": describe(cfg.trainer.accelerator),
        "wall_seconds": round(wall_seconds),
    }


def run(cfg: ReferenceConfig) -> Metrics:
    """Run the recipe once per seed (each run nested under this stage's MLflow run); write
    `metrics.json` (numbers only, see `across_seeds`) and `protocol.json` under `cfg.output_dir`."""
    check_budget(cfg)
    cfg = validate(cfg)
    start = time.perf_counter()
    label = f"{cfg.recipe}/{cfg.model.label}"
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, label=label) as stage_run:
        per_seed, seeds_started = {}, time.monotonic()
        for index, seed in enumerate(cfg.seeds, 1):
            announce(cfg.trainer.progress, f"{cfg.stage}/{label} seed", index, len(cfg.seeds), seeds_started)
            per_seed[seed] = TASKS[cfg.task](cfg, seed, stage_run.run_id)
        metrics = across_seeds(per_seed)
        output_dir = Path(cfg.output_dir)
        written = [
            write_json(output_dir / "metrics.json", metrics),
            write_json(output_dir / "protocol.json", protocol_record(cfg, time.perf_counter() - start)),
        ]
        stage_run.log_metrics({name: value for name, value in metrics.items() if math.isfinite(value)})
        for path in written:
            stage_run.log_artifact(path)
    print_summary(f"{cfg.stage}/{label} done", {k: v for k, v in metrics.items() if k.endswith("/mean")}, output_dir, stage_run)
    return metrics
