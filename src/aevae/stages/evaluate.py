"""The evaluate stage: reconstruction, likelihood and figures of trained checkpoints on the test split.

What is measured of a model beyond its reconstructions follows from what it says it can do
(`BaseAutoencoder.supports`, `Capability`), never from its class: a likelihood gives the test ELBO
and IS bound, a diagonal-gaussian posterior the latent statistics, a prior the sample quality, a
classifier q(y|x) its test accuracy, class-conditional generation the share of samples seen as
the class asked for and its figures."""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import MISSING
from torch import Tensor

from aevae.config import DataConfig, LikelihoodConfig, LoggerConfig, validate
from aevae.data import InMemoryDataModule, Splits, load_or_prepare
from aevae.errors import DataError, require
from aevae.evaluation.batches import map_batches
from aevae.evaluation.conditional import accuracy, per_class_accuracy, save_conditional_figures
from aevae.evaluation.latent_stats import active_units, kl_per_dimension, posterior, posterior_mean_variance
from aevae.evaluation.likelihood import DISCRETE_8BIT, MEANING, bits_per_dim, likelihood_bounds
from aevae.evaluation.model_figures import save_model_figures
from aevae.evaluation.pca import fit_pca
from aevae.evaluation.probe import resolve_pca_components
from aevae.evaluation.reconstruction import reconstruction_metrics
from aevae.evaluation.sample_quality import class_histogram, coverage, frechet_distance
from aevae.io import plain, write_csv, write_json
from aevae.models import BaseAutoencoder, Capability, load_model
from aevae.models.classifier import DigitClassifier, load_classifier
from aevae.models.losses import corrupt
from aevae.run.checkpoints import read_checkpoint, trained_data_config
from aevae.run.devices import check_device
from aevae.stages.common import open_stage_run, print_summary
from aevae.stages.data_card import data_card, save_sample_grid
from aevae.stages.data_facts import is_vectors, skipped

log = logging.getLogger(__name__)

# Data settings that define what a likelihood is measured on: a checkpoint's record overrides the config.
PROTOCOL_KEYS = ("binarize", "threshold")
DENOISING_METRICS = ("psnr", "ssim")
DATA_SAMPLES = "figures/data_samples.png"  # the data card's sample images, under output_dir


@dataclass
class GenerationConfig:
    classifier: Optional[str] = MISSING  # the classifier stage's checkpoint; null: no sample-quality numbers
    samples: int = MISSING  # images drawn from each model's prior (and test images they are compared with)

    def __post_init__(self) -> None:
        require(self.samples >= 2, "generation.samples", f"must be >= 2 (a covariance needs two), got {self.samples}")


@dataclass
class FiguresConfig:
    n_images: int = MISSING  # images per row of the reconstruction, denoising and sample grids
    interpolation_pairs: int = MISSING
    interpolation_steps: int = MISSING
    traversal_dims: int = MISSING  # traverse this many latent dimensions at most, the most spread first
    traversal_steps: int = MISSING
    traversal_range: float = MISSING  # offsets span +-range test-set standard deviations of a dimension

    def __post_init__(self) -> None:
        for key in ("n_images", "interpolation_pairs", "interpolation_steps", "traversal_dims", "traversal_steps"):
            require(getattr(self, key) > 0, f"figures.{key}", f"must be > 0, got {getattr(self, key)}")
        require(self.traversal_range > 0, "figures.traversal_range", f"must be > 0, got {self.traversal_range}")


@dataclass
class EvaluateConfig:
    data: DataConfig = MISSING
    logger: LoggerConfig = MISSING
    models: dict[str, str] = MISSING  # model name -> checkpoint
    likelihood: LikelihoodConfig = MISSING
    figures: FiguresConfig = MISSING
    corruptions: dict[str, float] = MISSING  # denoising test sets: corruption kind -> level
    generation: GenerationConfig = MISSING
    pca_components: Optional[int] = MISSING  # the PCA baseline's size; null: the models' latent size
    device: str = MISSING  # torch device of the evaluation
    seed: int = MISSING
    output_dir: str = MISSING
    stage: str = MISSING

    def __post_init__(self) -> None:
        from aevae.models.losses import Corruption  # the models' package: loaded by the evaluate stage anyway

        require(len(self.models) > 0, "models", "name at least one checkpoint to evaluate")
        kinds = [kind.value for kind in Corruption if kind != Corruption.none]
        for kind, level in self.corruptions.items():
            require(kind in kinds, f"corruptions.{kind}", f"unknown corruption; choose from {kinds}")
            require(0 < level < 1, f"corruptions.{kind}", f"the level must be in (0, 1), got {level}")
        require(self.pca_components is None or self.pca_components > 0, "pca_components", f"must be > 0 or null, got {self.pca_components}")
        require(self.likelihood.samples >= 1, "likelihood.samples", f"must be >= 1, got {self.likelihood.samples}")


def data_config_for(checkpoint: str | Path, data_cfg: DataConfig) -> DataConfig:
    """`data_cfg` with the binarization the checkpoint's model was trained with, when the
    checkpoint records its training data config; raises DataError if it names another data set."""
    trained = trained_data_config(read_checkpoint(checkpoint))
    if trained is None:
        return data_cfg
    if trained["name"] != data_cfg.name:
        raise DataError(f"{checkpoint}: trained on {trained['name']!r}, but data.name is {data_cfg.name!r}")
    for key in PROTOCOL_KEYS:
        if trained[key] != getattr(data_cfg, key):
            log.warning("%s: data.%s=%s as trained (config: %s)", checkpoint, key, trained[key], getattr(data_cfg, key))
    return replace(data_cfg, **{key: trained[key] for key in PROTOCOL_KEYS})


def split_images(splits: Splits, data_cfg: Any, seed: int, device: torch.device) -> dict[str, tuple[Tensor, Tensor]]:
    """Train and test images and labels after the configured binarization, on `device`."""
    datamodule = InMemoryDataModule(splits, data_cfg, seed=seed)
    datamodule.setup()
    return {split: (images.to(device), labels.to(device)) for split, (images, labels) in datamodule.tensors.items() if split != "val"}


def corrupted_sets(images: Tensor, corruptions: Mapping[str, float], seed: int) -> dict[str, Tensor]:
    """Each denoising test set: the images corrupted once, by a draw seeded per kind."""
    generator = torch.Generator(device=images.device)
    return {kind: corrupt(images, kind, level, generator.manual_seed(seed)) for kind, level in corruptions.items()}


def restoration_metrics(restore: Callable[[Tensor], Tensor], clean: Tensor, corrupted: Mapping[str, Tensor], batch_size: int) -> dict[str, float]:
    """`test/<metric>` of `restore(clean)` and `denoise/<kind>/<psnr|ssim>` of `restore(corrupted)`,
    both against the clean images: the same numbers for a model and for a baseline."""
    restored = reconstruction_metrics(map_batches(restore, clean, batch_size), clean, batch_size)
    metrics = {f"test/{key}": value for key, value in restored.items()}
    for kind, images in corrupted.items():
        quality = reconstruction_metrics(map_batches(restore, images, batch_size), clean, batch_size)
        metrics |= {f"denoise/{kind}/{key}": quality[key] for key in DENOISING_METRICS}
    return metrics


def likelihood_metrics(model: BaseAutoencoder, images: Tensor, cfg: Any) -> dict[str, float]:
    """Test ELBO and IS estimate of -log p(x) of a model with a likelihood (its
    `log_likelihood_bounds`: for a class-conditional model, with the class summed out), in fp32
    (bf16 would lose the nats these sums are compared in)."""
    generator = torch.Generator(device=images.device).manual_seed(cfg.seed)
    bounds = likelihood_bounds(model, images, cfg.likelihood.samples, cfg.likelihood.batch_size, generator)
    metrics = {"test/elbo": float(bounds["elbo"].mean()), "test/nll_iwae": float(-bounds["log_px"].mean())}
    if model.cfg.likelihood in DISCRETE_8BIT:
        metrics["test/bits_per_dim"] = bits_per_dim(metrics["test/nll_iwae"], images[0].numel())
    return metrics


def posterior_metrics(model: BaseAutoencoder, images: Tensor, batch_size: int) -> dict[str, float]:
    """How a model's diagonal-gaussian posterior (its `encode`) uses the latent space: its mean KL
    and the number of active units (Burda et al. 2015)."""
    mu, logvar = posterior(model, images, batch_size)
    return {"latent/kl": float(kl_per_dimension(mu, logvar).sum()), "latent/active_units": float(active_units(mu))}


def classification_metrics(model: BaseAutoencoder, images: Tensor, labels: Tensor, batch_size: int) -> dict[str, float]:
    """`test/accuracy` of a model's classifier q(y|x) (its most probable class)."""
    return {"test/accuracy": accuracy(lambda x: model.classify(x).argmax(1), images, labels, batch_size)}


def generation_metrics(model: BaseAutoencoder | None, restore: Callable[[Tensor], Tensor], classifier: DigitClassifier, real: Tensor, cfg: Any) -> dict[str, float]:
    """In the classifier's feature space: `test/fid` of the reconstructions of `real` (a reference
    point); for a model with a prior, `gen/fid` of as many samples and their class coverage; for
    a model that generates a given class, `gen/accuracy_given`: the share of as many samples,
    the classes asked for in turn, that the classifier sees as the class asked for (mean over
    classes)."""
    batch_size = cfg.data.eval_batch_size
    metrics = {"test/fid": frechet_distance(classifier, real, map_batches(restore, real, batch_size), batch_size)}
    if model is not None and model.supports(Capability.sample):
        torch.manual_seed(cfg.seed)
        samples = torch.cat([model.sample(len(batch)) for batch in real.split(batch_size)])
        metrics["gen/fid"] = frechet_distance(classifier, real, samples, batch_size)
        histogram = class_histogram(classifier.predict, samples, batch_size, classifier.n_classes)
        metrics |= {f"gen/{key}": value for key, value in coverage(histogram).items()}
    if model is not None and model.supports(Capability.sample_given):
        torch.manual_seed(cfg.seed)
        asked = torch.arange(len(real), device=real.device) % classifier.n_classes
        samples = map_batches(model.sample_given, asked, batch_size)
        metrics["gen/accuracy_given"] = float(per_class_accuracy(classifier, samples, asked, batch_size).mean())
    return metrics


def latent_rows(name: str, model: BaseAutoencoder, images: Tensor, batch_size: int) -> list[dict[str, Any]]:
    """One row per latent dimension: its mean KL (nats) and the variance of its posterior mean."""
    mu, logvar = posterior(model, images, batch_size)
    kl, variance = kl_per_dimension(mu, logvar), posterior_mean_variance(mu)
    return [{"model": name, "dim": d, "kl": f"{float(kl[d]):.6g}", "mean_variance": f"{float(variance[d]):.6g}"} for d in range(len(kl))]


def protocol(model: BaseAutoencoder, checkpoint: str, data_cfg: Any, n_test: int, cfg: Any) -> dict[str, Any]:
    """What the numbers of one model were measured on, to set them beside published ones."""
    described = {"checkpoint": str(checkpoint), "dataset": str(data_cfg.name), "binarize": str(data_cfg.binarize), "n_test": n_test}
    if data_cfg.binarize == "threshold":
        described["threshold"] = data_cfg.threshold
    if model.supports(Capability.likelihood):
        likelihood = str(model.cfg.likelihood)
        described |= {"likelihood": likelihood, "iwae_samples": cfg.likelihood.samples, "units": "nats per image", "meaning": MEANING[likelihood]}
    return described


def run(cfg: EvaluateConfig) -> dict[str, float]:
    """Evaluate every checkpoint of `cfg.models` on the test split beside two baselines: `pca` (a
    PCA of the models' latent size) and `corrupted` (the denoising inputs as they are). Writes
    `metrics.json` (`<name>/test/<metric>`, `<name>/denoise/<kind>/<metric>`, `<name>/latent/<stat>`,
    and with `generation.classifier` `<name>/gen/<metric>` of prior samples),
    `protocol.json`, `latent_kl.csv` and `figures/<model>_<kind>.png` under `cfg.output_dir`.
    MLflow: the stage's run, and one run per model and baseline nested under it that logs the
    metrics without the name (one column per metric across models). Returns the metrics."""
    cfg = validate(cfg)
    device = check_device("device", cfg.device)
    for checkpoint in cfg.models.values():
        if not Path(checkpoint).is_file():
            raise DataError(f"{checkpoint}: checkpoint not found (train the model first)")
    splits = load_or_prepare(cfg.data)
    models = {name: load_model(checkpoint, map_location=device) for name, checkpoint in cfg.models.items()}
    for name, model in models.items():
        if model.image_shape != splits.image_shape:
            raise DataError(f"{cfg.models[name]}: model expects images {model.image_shape}, data has {splits.image_shape}")
    classifier = None
    if cfg.generation.classifier and "classifier" in skipped(splits):
        log.warning("%s: generation metrics %s", cfg.stage, skipped(splits)["classifier"])
    elif cfg.generation.classifier:
        if not Path(cfg.generation.classifier).is_file():
            raise DataError(f"generation.classifier: {cfg.generation.classifier} not found (run the classifier stage first)")
        classifier = load_classifier(cfg.generation.classifier, map_location=device)
    n_components = resolve_pca_components(cfg.pca_components, models)
    output_dir, batch_size = Path(cfg.output_dir), cfg.data.eval_batch_size
    corruptions = cfg.corruptions
    if is_vectors(splits):
        log.warning("%s: denoising %s", cfg.stage, skipped(splits)["denoising"])
        corruptions = {}
    results: dict[str, dict[str, float]] = {}
    protocols: dict[str, Any] = {}
    latent_table: list[dict[str, Any]] = []
    figures: dict[str, list[Path]] = {}
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, params=plain(cfg) | {"pca_components": n_components}) as stage_run:
        for name, model in models.items():
            data_cfg = data_config_for(cfg.models[name], cfg.data)
            images, labels = split_images(splits, data_cfg, cfg.seed, device)["test"]
            results[name] = restoration_metrics(model.reconstruct, images, corrupted_sets(images, corruptions, cfg.seed), batch_size)
            if model.supports(Capability.likelihood):
                results[name] |= likelihood_metrics(model, images, cfg)
            if model.supports(Capability.posterior):
                results[name] |= posterior_metrics(model, images, batch_size)
                latent_table += latent_rows(name, model, images, batch_size)
            if model.supports(Capability.classify):
                results[name] |= classification_metrics(model, images, labels, batch_size)
            if classifier is not None:
                results[name] |= generation_metrics(model, model.reconstruct, classifier, images[: cfg.generation.samples], cfg)
            protocols[name] = protocol(model, cfg.models[name], data_cfg, len(images), cfg)
            figures[name] = save_model_figures(model, images, labels, cfg.figures, output_dir / "figures", name, batch_size=batch_size, seed=cfg.seed)
            if model.supports(Capability.sample_given) and model.supports(Capability.posterior):  # a style z decoded as every class
                figures[name] += save_conditional_figures(model, images, cfg.figures.n_images, output_dir / "figures", name, cfg.seed)
        data = split_images(splits, cfg.data, cfg.seed, device)
        (train_images, _), (test_images, _) = data["train"], data["test"]
        corrupted = corrupted_sets(test_images, corruptions, cfg.seed)
        pca = fit_pca(train_images, n_components, cfg.seed)
        results["pca"] = restoration_metrics(pca.reconstruct, test_images, corrupted, batch_size)
        if classifier is not None:
            results["pca"] |= generation_metrics(None, pca.reconstruct, classifier, test_images[: cfg.generation.samples], cfg)
        results["corrupted"] = {
            f"denoise/{kind}/{key}": value
            for kind, images in corrupted.items()
            for key, value in reconstruction_metrics(images, test_images, batch_size).items()
            if key in DENOISING_METRICS
        }
        protocols["baselines"] = {"pca_components": n_components, "corruptions": dict(corruptions), "n_test": len(test_images)}
        for name, named_results in results.items():
            with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, label=name, parent=stage_run.run_id) as model_run:
                model_run.log_metrics(named_results)
                for figure in figures.get(name, []):
                    model_run.log_artifact(figure, "figures")
        metrics = {f"{name}/{key}": value for name, named_results in results.items() for key, value in named_results.items()}
        samples_figure = save_sample_grid(splits, output_dir / DATA_SAMPLES)
        outputs = [
            write_json(output_dir / "metrics.json", metrics),
            write_json(output_dir / "protocol.json", protocols),
            write_csv(output_dir / "latent_kl.csv", latent_table),
            write_json(output_dir / "data_card.json", data_card(splits, DATA_SAMPLES if samples_figure else None)),
            *([samples_figure] if samples_figure else []),
        ]
        stage_run.log_metrics(metrics)
        for path in outputs:
            stage_run.log_artifact(path)
    print_summary(f"{cfg.stage} done", metrics, output_dir, stage_run)
    return metrics
