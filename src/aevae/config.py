"""Typed config schema and value checks.

The dataclasses are registered in Hydra's ConfigStore, so an unknown key or a wrong type in a
YAML file or an override is rejected by Hydra before any work starts. `validate_*` then checks
values (ranges, names) and raises `ConfigError` with one line that names the key.
"""

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from aevae.errors import ConfigError
from aevae.sweeps import register_resolvers

DATASETS = ("digits", "mnist")
BINARIZATIONS = ("none", "threshold", "static", "dynamic")
LIKELIHOODS = ("bernoulli", "gaussian")
CORRUPTIONS = ("none", "gaussian", "mask")
LOGGERS = ("mlflow", "none")
PROBE_BASELINES = ("pixels", "pca")


# Every value lives in conf/; these classes declare the keys and their types only.


@dataclass
class DataConfig:
    name: str = MISSING
    root: Optional[str] = MISSING  # directory of the raw IDX files (MNIST)
    download: bool = MISSING  # fetch missing MNIST files from the public mirrors
    prepared: Optional[str] = MISSING  # prepared split file written by pipelines/prepare.py
    split_seed: int = MISSING
    val_fraction: float = MISSING  # of the training pool
    test_fraction: float = MISSING  # for data sets without an official test split (digits)
    train_classes: Optional[list[int]] = MISSING  # keep only these classes in train/val
    binarize: str = MISSING
    threshold: float = MISSING
    batch_size: int = MISSING  # per device
    eval_batch_size: int = MISSING


@dataclass
class MLPNetConfig:
    name: str = MISSING
    hidden_dims: list[int] = MISSING


@dataclass
class ConvNetConfig:
    name: str = MISSING
    channels: list[int] = MISSING
    hidden_dim: int = MISSING


NET_SCHEMAS = {"mlp": MLPNetConfig, "conv": ConvNetConfig}


@dataclass
class AEConfig:
    name: str = MISSING
    latent_dim: int = MISSING
    likelihood: str = MISSING
    gaussian_std: float = MISSING  # observation noise of the gaussian likelihood
    corruption: str = MISSING  # input corruption of a denoising model
    corruption_level: float = MISSING  # noise std (gaussian) or drop probability (mask)
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class VAEConfig(AEConfig):
    beta: float = MISSING
    kl_warmup_epochs: int = MISSING


@dataclass
class TrainerConfig:
    accelerator: str = MISSING
    devices: Any = MISSING
    num_nodes: int = MISSING
    strategy: str = MISSING
    precision: str = MISSING
    max_epochs: int = MISSING
    max_steps: int = MISSING
    limit_train_batches: Any = MISSING
    limit_val_batches: Any = MISSING
    check_val_every_n_epoch: int = MISSING
    log_every_n_steps: int = MISSING
    gradient_clip_val: Optional[float] = MISSING
    deterministic: Any = MISSING
    enable_progress_bar: bool = MISSING


@dataclass
class LoggerConfig:
    name: str = MISSING
    tracking_uri: Optional[str] = MISSING  # null: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment_name: str = MISSING
    run_name: Optional[str] = MISSING
    group: Optional[str] = MISSING  # runs with one group nest under one parent run
    tags: dict[str, str] = MISSING


@dataclass
class TrainConfig:
    data: DataConfig = MISSING
    model: Any = MISSING
    net: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    stage: str = MISSING  # recorded in MLflow tags (the DVC stage when DVC runs it)
    objective: str = MISSING  # the metric returned to a Hydra sweeper
    compile: bool = MISSING  # torch.compile the model


@dataclass
class PrepareConfig:
    data: DataConfig = MISSING
    output: str = MISSING  # the prepared split file to write


@dataclass
class LogRegConfig:
    C: float = MISSING  # inverse L2 strength, on standardized features
    max_iter: int = MISSING  # lbfgs iterations per fit


@dataclass
class ProbeConfig:
    data: DataConfig = MISSING
    logger: LoggerConfig = MISSING
    models: dict[str, str] = MISSING  # feature name -> checkpoint whose `embed` gives the features
    baselines: list[str] = MISSING  # of PROBE_BASELINES
    pca_components: Optional[int] = MISSING  # null: the models' latent size
    labels_per_class: list[int] = MISSING  # label budgets, class-balanced subsets of train
    all_labels: bool = MISSING  # also probe with every training label
    repeats: int = MISSING  # subsets per budget, drawn with seeds seed .. seed + repeats - 1
    seed: int = MISSING
    logreg: LogRegConfig = MISSING
    output_dir: str = MISSING
    stage: str = MISSING


@dataclass
class LikelihoodConfig:
    samples: int = MISSING  # k importance samples per image (IWAE bound); 0: no IS estimate
    batch_size: int = MISSING  # images per importance-sampling pass (the decoder sees k x batch_size)


@dataclass
class FiguresConfig:
    n_images: int = MISSING  # images per row of the reconstruction, denoising and sample grids
    interpolation_pairs: int = MISSING
    interpolation_steps: int = MISSING
    traversal_dims: int = MISSING  # traverse this many latent dimensions at most, the most spread first
    traversal_steps: int = MISSING
    traversal_range: float = MISSING  # offsets span +-range test-set standard deviations of a dimension


@dataclass
class EvaluateConfig:
    data: DataConfig = MISSING
    logger: LoggerConfig = MISSING
    models: dict[str, str] = MISSING  # model name -> checkpoint
    likelihood: LikelihoodConfig = MISSING
    figures: FiguresConfig = MISSING
    device: str = MISSING  # torch device of the evaluation
    seed: int = MISSING
    output_dir: str = MISSING
    stage: str = MISSING


@dataclass
class AnomalyConfig(TrainConfig):
    normal_classes: list[int] = MISSING  # one model per class, trained on that class only
    likelihood: LikelihoodConfig = MISSING  # samples > 0: also score a VAE by its IS estimate of -log p(x)
    roc_points: int = MISSING  # at most this many points per ROC curve in roc.csv
    train_dir: str = MISSING  # the model of class c trains in <train_dir>/class_<c>


@dataclass
class ComparePlotConfig:
    x: str = MISSING  # a param on the x axis (a swept key, e.g. model.latent_dim)
    y: str = MISSING  # a metric on the y axis
    line: str = MISSING  # a param: one line per value (e.g. model.name)


@dataclass
class CompareConfig:
    logger: LoggerConfig = MISSING  # the store and experiment; logger.group: only that sweep's runs
    filter: Optional[str] = MISSING  # an MLflow search filter, e.g. "params.`model.name` = 'vae'"
    finished_only: bool = MISSING  # leave out running, failed and killed runs
    params: list[str] = MISSING  # table columns: flattened config keys
    metrics: list[str] = MISSING  # table columns: metric names
    sort_by: str = MISSING  # one of `metrics`
    ascending: bool = MISSING
    plot: Optional[ComparePlotConfig] = MISSING  # null: no plot
    output_dir: str = MISSING


@dataclass
class MetricsFile:
    path: str = MISSING
    label: str = ""  # prefixed to the metric names of the file (e.g. the model it belongs to)


@dataclass
class ReportSection:
    title: str = MISSING
    text: Optional[str] = None
    files: list[MetricsFile] = field(default_factory=list)
    column_level: int = 0  # which part of the slash-separated metric names becomes the column
    figures: list[str] = field(default_factory=list)  # glob patterns of images


@dataclass
class ReportConfig:
    title: str = MISSING
    dataset: str = MISSING
    output: str = MISSING
    html: str = MISSING
    sections: list[ReportSection] = MISSING
    logger: LoggerConfig = MISSING
    stage: str = MISSING


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore and the `aevae.*` resolvers (called by every
    entry point)."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="compare_schema", node=CompareConfig)
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="prepare_schema", node=PrepareConfig)
    cs.store(name="report_schema", node=ReportConfig)
    cs.store(name="probe_schema", node=ProbeConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="anomaly_schema", node=AnomalyConfig)
    cs.store(group="data", name="data_schema", node=DataConfig)
    for name, schema in NET_SCHEMAS.items():
        cs.store(group="net", name=f"{name}_schema", node=schema)
    cs.store(group="model", name="ae_schema", node=AEConfig)
    cs.store(group="model", name="vae_schema", node=VAEConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _known_keys(node: Any, schema: type, key: str) -> None:
    """Reject keys that the schema does not declare (Hydra lets `+key=value` append them)."""
    unknown = sorted(set(node) - {f.name for f in fields(schema)})
    _require(not unknown, key, f"unknown key(s) {', '.join(unknown)}")


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    _require(value in allowed, key, f"unknown value {value!r}; expected one of {', '.join(allowed)}")


def validate_data(data: Any) -> None:
    """Check the values of a `data` config node."""
    _known_keys(data, DataConfig, "data")
    _one_of(data.name, DATASETS, "data.name")
    _one_of(data.binarize, BINARIZATIONS, "data.binarize")
    _require(0.0 <= data.val_fraction < 1.0, "data.val_fraction", f"must be in [0, 1), got {data.val_fraction}")
    _require(0.0 < data.test_fraction < 1.0, "data.test_fraction", f"must be in (0, 1), got {data.test_fraction}")
    _require(0.0 < data.threshold < 1.0, "data.threshold", f"must be in (0, 1), got {data.threshold}")
    _require(data.batch_size > 0, "data.batch_size", f"must be > 0, got {data.batch_size}")
    _require(data.eval_batch_size > 0, "data.eval_batch_size", f"must be > 0, got {data.eval_batch_size}")
    if data.train_classes is not None:
        _require(len(data.train_classes) > 0, "data.train_classes", "must list at least one class or be null")
        _require(all(0 <= c <= 9 for c in data.train_classes), "data.train_classes", "classes are 0..9")
    if data.name == "mnist" and data.prepared is None:
        _require(data.root is not None, "data.root", "MNIST needs the directory of its IDX files")


def validate_model(model: Any, net: Any) -> None:
    """Check the values of the `model` and `net` config nodes."""
    from aevae.models import MODELS
    from aevae.nets import NETS

    _one_of(model.name, tuple(MODELS), "model.name")
    _one_of(net.name, tuple(NETS), "net.name")
    _known_keys(model, MODELS[model.name].config_class, "model")
    _known_keys(net, NET_SCHEMAS[net.name], "net")
    _require(model.latent_dim > 0, "model.latent_dim", f"must be > 0, got {model.latent_dim}")
    _one_of(model.likelihood, LIKELIHOODS, "model.likelihood")
    _require(model.gaussian_std > 0, "model.gaussian_std", f"must be > 0, got {model.gaussian_std}")
    _one_of(model.corruption, CORRUPTIONS, "model.corruption")
    _require(model.corruption_level >= 0, "model.corruption_level", f"must be >= 0, got {model.corruption_level}")
    if model.corruption == "mask":
        _require(model.corruption_level < 1, "model.corruption_level", "a drop probability must be < 1")
    _require(model.lr > 0, "model.lr", f"must be > 0, got {model.lr}")
    _require(model.weight_decay >= 0, "model.weight_decay", f"must be >= 0, got {model.weight_decay}")
    if "beta" in model:
        _require(model.beta >= 0, "model.beta", f"must be >= 0, got {model.beta}")
        _require(model.kl_warmup_epochs >= 0, "model.kl_warmup_epochs", "must be >= 0")
    sizes = net.hidden_dims if net.name == "mlp" else [*net.channels, net.hidden_dim]
    _require(len(sizes) > 0 and all(s > 0 for s in sizes), f"net.{net.name}", f"layer sizes must be > 0, got {list(sizes)}")


def validate_train(cfg: Any) -> None:
    """Check every value of a training config before any data is loaded."""
    validate_data(cfg.data)
    validate_model(cfg.model, cfg.net)
    trainer = cfg.trainer
    _known_keys(trainer, TrainerConfig, "trainer")
    _known_keys(cfg.logger, LoggerConfig, "logger")
    _require(trainer.max_epochs > 0 or trainer.max_steps > 0, "trainer.max_epochs", "must be > 0")
    _require(trainer.num_nodes > 0, "trainer.num_nodes", f"must be > 0, got {trainer.num_nodes}")
    _one_of(cfg.logger.name, LOGGERS, "logger.name")


def validate_probe(cfg: Any) -> None:
    """Check every value of a probe config before any data is loaded."""
    _known_keys(cfg, ProbeConfig, "probe")
    _known_keys(cfg.logreg, LogRegConfig, "logreg")
    validate_data(cfg.data)
    _known_keys(cfg.logger, LoggerConfig, "logger")
    _one_of(cfg.logger.name, LOGGERS, "logger.name")
    _require(cfg.data.train_classes is None, "data.train_classes", "the probe classifies every class; set it to null")
    for baseline in cfg.baselines:
        _one_of(baseline, PROBE_BASELINES, "baselines")
    features = [*cfg.models, *cfg.baselines]
    _require(len(features) > 0, "models", "nothing to probe: name a checkpoint or a baseline")
    _require(len(set(features)) == len(features), "models", f"feature names must be unique (baselines included), got {features}")
    _require(cfg.pca_components is None or cfg.pca_components > 0, "pca_components", f"must be > 0 or null, got {cfg.pca_components}")
    budgets = list(cfg.labels_per_class)
    _require(len(budgets) > 0 or cfg.all_labels, "labels_per_class", "empty while all_labels is false: nothing to probe")
    _require(all(n > 0 for n in budgets), "labels_per_class", f"budgets must be > 0, got {budgets}")
    _require(len(set(budgets)) == len(budgets), "labels_per_class", f"budgets must be unique, got {budgets}")
    _require(cfg.repeats > 0, "repeats", f"must be > 0, got {cfg.repeats}")
    _require(cfg.logreg.C > 0, "logreg.C", f"must be > 0, got {cfg.logreg.C}")
    _require(cfg.logreg.max_iter > 0, "logreg.max_iter", f"must be > 0, got {cfg.logreg.max_iter}")


def _validate_likelihood(likelihood: Any, min_samples: int) -> None:
    _known_keys(likelihood, LikelihoodConfig, "likelihood")
    _require(likelihood.samples >= min_samples, "likelihood.samples", f"must be >= {min_samples}, got {likelihood.samples}")
    _require(likelihood.batch_size > 0, "likelihood.batch_size", f"must be > 0, got {likelihood.batch_size}")


def validate_evaluate(cfg: Any) -> None:
    """Check every value of an evaluate config before any checkpoint or data is loaded."""
    _known_keys(cfg, EvaluateConfig, "evaluate")
    validate_data(cfg.data)
    _known_keys(cfg.logger, LoggerConfig, "logger")
    _one_of(cfg.logger.name, LOGGERS, "logger.name")
    _require(len(cfg.models) > 0, "models", "name at least one checkpoint to evaluate")
    _validate_likelihood(cfg.likelihood, min_samples=1)
    _known_keys(cfg.figures, FiguresConfig, "figures")
    for key in ("n_images", "interpolation_pairs", "interpolation_steps", "traversal_dims", "traversal_steps"):
        _require(cfg.figures[key] > 0, f"figures.{key}", f"must be > 0, got {cfg.figures[key]}")
    _require(cfg.figures.traversal_range > 0, "figures.traversal_range", f"must be > 0, got {cfg.figures.traversal_range}")


def validate_anomaly(cfg: Any) -> None:
    """Check every value of a one-class anomaly config before any training starts."""
    _known_keys(cfg, AnomalyConfig, "anomaly")
    validate_train(cfg)
    classes = list(cfg.normal_classes)
    _require(len(classes) > 0, "normal_classes", "list at least one class")
    _require(all(0 <= c <= 9 for c in classes), "normal_classes", f"classes are 0..9, got {classes}")
    _require(len(set(classes)) == len(classes), "normal_classes", f"classes must be unique, got {classes}")
    _require(cfg.data.train_classes is None, "data.train_classes", "set per normal class by the anomaly stage; leave it null")
    _validate_likelihood(cfg.likelihood, min_samples=0)
    _require(cfg.roc_points >= 2, "roc_points", f"must be >= 2, got {cfg.roc_points}")


def validate_compare(cfg: Any) -> None:
    """Check every value of a compare config before the tracking store is read."""
    _known_keys(cfg, CompareConfig, "compare")
    _require(cfg.logger.name == "mlflow", "logger.name", "compare reads runs from MLflow; use logger=mlflow")
    _require(len(cfg.metrics) > 0, "metrics", "name at least one metric")
    _require(cfg.sort_by in cfg.metrics, "sort_by", f"must be one of metrics ({', '.join(cfg.metrics)}), got {cfg.sort_by!r}")
    if cfg.plot is not None:
        _require(cfg.plot.x in cfg.params, "plot.x", f"must be one of params ({', '.join(cfg.params)}), got {cfg.plot.x!r}")
        _require(cfg.plot.line in cfg.params, "plot.line", f"must be one of params ({', '.join(cfg.params)}), got {cfg.plot.line!r}")
        _require(cfg.plot.y in cfg.metrics, "plot.y", f"must be one of metrics ({', '.join(cfg.metrics)}), got {cfg.plot.y!r}")
