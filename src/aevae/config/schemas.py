"""The schemas of the stages' configs and of the data, trainer and logger groups: every schema
that needs no Lightning module's class (`aevae.config.classifier_schemas` holds the two that do).

Every value lives in conf/; these dataclasses declare the keys, their types and their checks.
Hydra rejects an unknown key, a wrong type or an unknown choice (Enum fields) while composing;
`aevae.config.validate(cfg)` then builds the dataclasses, whose `__post_init__` checks the values
and raises a one-line `ConfigError` naming the key.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

from omegaconf import MISSING

from aevae.errors import require


class Dataset(StrEnum):
    digits = "digits"
    mnist = "mnist"
    sprites = "sprites"  # generated: dSprites' factors of variation, each image's factors known
    folder = "folder"  # the user's folder of images (docs/your-data.md)
    arrays = "arrays"  # the user's .npz/.npy file: images or vectors (docs/your-data.md)

    @property
    def reads_path(self) -> bool:
        """Whether the data set is read from `data.path` (the others are bundled or generated)."""
        return self in (Dataset.mnist, Dataset.folder, Dataset.arrays)

    @property
    def built_in(self) -> bool:
        """One of the study's own data sets, kept at its size and channels."""
        return self not in (Dataset.folder, Dataset.arrays)


class ResizeFilter(StrEnum):
    """Pillow's resampling filters (`PIL.Image.Resampling`), by name."""

    nearest = "nearest"
    box = "box"
    bilinear = "bilinear"
    hamming = "hamming"
    bicubic = "bicubic"
    lanczos = "lanczos"


class Binarization(StrEnum):
    none = "none"
    threshold = "threshold"  # pixel > threshold
    static = "static"  # one Bernoulli draw per image, fixed
    dynamic = "dynamic"  # a fresh Bernoulli draw each time a training batch is served


class Progress(StrEnum):
    """What a training shows while it runs (`aevae.run.progress`)."""

    auto = "auto"  # a live bar when stdout is a terminal, else lines
    bar = "bar"  # Lightning's rich bar: epoch, step, loss, time left
    lines = "lines"  # one line per epoch, at most one every 15 s: `train/vae epoch 12/80 val/loss 109.3 eta 1m40s`
    none = "none"


# Lightning's precisions, and `auto`: bf16 autocast where the CPU computes bf16 natively
# (`aevae.run.devices.native_bf16`), else 32-true (on a GPU: bf16-mixed where it supports bf16)
PRECISIONS = ("auto", "32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true")


class Tracker(StrEnum):
    mlflow = "mlflow"
    none = "none"


class Baseline(StrEnum):
    pixels = "pixels"
    pca = "pca"


def _classes(key: str, classes: Any) -> None:
    require(len(classes) > 0, key, "list at least one class")
    require(all(c >= 0 for c in classes), key, f"classes are labels >= 0, got {list(classes)}")
    require(len(set(classes)) == len(classes), key, f"classes must be unique, got {list(classes)}")


@dataclass
class DataConfig:
    name: Dataset = MISSING
    path: Optional[str] = MISSING  # the raw data: MNIST's IDX folder, the user's folder or array file
    prepared: Optional[str] = MISSING  # prepared split file written by the prepare stage
    split_seed: int = MISSING
    val_fraction: float = MISSING  # of the training pool
    test_fraction: float = MISSING  # for data sets without an official test split (digits)
    train_classes: Optional[list[int]] = MISSING  # keep only these classes in train/val
    binarize: Binarization = MISSING
    threshold: float = MISSING
    batch_size: int = MISSING  # per device
    eval_batch_size: int = MISSING
    image_size: Optional[int] = MISSING  # folder/arrays: centre-crop to a square, resize to this side; null: as found
    channels: Optional[int] = MISSING  # folder/arrays: 1 (grey) or 3 (colour), converting; null: as found
    resize: ResizeFilter = MISSING  # the filter that resizes to image_size

    def __post_init__(self) -> None:
        require(0.0 <= self.val_fraction < 1.0, "data.val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        require(0.0 < self.test_fraction < 1.0, "data.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        require(0.0 < self.threshold < 1.0, "data.threshold", f"must be in (0, 1), got {self.threshold}")
        require(self.batch_size > 0, "data.batch_size", f"must be > 0, got {self.batch_size}")
        require(self.eval_batch_size > 0, "data.eval_batch_size", f"must be > 0, got {self.eval_batch_size}")
        if self.train_classes is not None:
            _classes("data.train_classes", self.train_classes)
        require(self.image_size is None or self.image_size >= 4, "data.image_size", f"must be >= 4 pixels or null, got {self.image_size}")
        require(self.channels in (None, 1, 3), "data.channels", f"must be 1 (grey), 3 (colour) or null (as found), got {self.channels}")
        name = Dataset(self.name)
        if name.built_in:
            for key in ("image_size", "channels"):
                require(getattr(self, key) is None, f"data.{key}", f"applies to data=folder or data=arrays; the built-in {name} keeps its own; set it to null")
        if not name.reads_path:
            require(self.path is None, "data.path", f"the built-in {name} reads no files; set it to null")

    def require_path(self) -> None:
        """Refuse a data set read from `data.path` without one (where the raw data is read)."""
        what = {Dataset.mnist: "the folder of its four IDX gz files", Dataset.folder: "a folder of images", Dataset.arrays: "an .npz or .npy file"}
        name = Dataset(self.name)
        require(not name.reads_path or self.path is not None, "data.path", f"data={name} needs {what.get(name)}")


@dataclass
class TrainerConfig:
    accelerator: str = MISSING  # cpu | gpu | auto
    devices: int = MISSING  # per node
    num_nodes: int = MISSING
    strategy: str = MISSING
    precision: str = MISSING  # one of PRECISIONS
    max_epochs: int = MISSING
    max_steps: int = MISSING
    limit_train_batches: Any = MISSING  # null, a number of batches (int) or a fraction (float)
    limit_val_batches: Any = MISSING
    check_val_every_n_epoch: int = MISSING
    log_every_n_steps: int = MISSING
    gradient_clip_val: Optional[float] = MISSING
    deterministic: bool = MISSING
    progress: Progress = MISSING
    enable_model_summary: bool = MISSING

    def __post_init__(self) -> None:
        require(self.max_epochs > 0 or self.max_steps > 0, "trainer.max_epochs", "must be > 0")
        require(self.num_nodes > 0, "trainer.num_nodes", f"must be > 0, got {self.num_nodes}")
        require(self.devices > 0, "trainer.devices", f"must be > 0, got {self.devices}")
        require(self.precision in PRECISIONS, "trainer.precision", f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")


@dataclass
class LoggerConfig:
    name: Tracker = MISSING
    tracking_uri: Optional[str] = MISSING  # null: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    experiment_name: str = MISSING
    run_name: Optional[str] = MISSING  # null: <stage>/<model label>
    group: Optional[str] = MISSING  # runs with one group nest under one parent run
    tags: dict[str, str] = MISSING


@dataclass
class TrainConfig:
    data: DataConfig = MISSING
    # Typed by the chosen group option's schema (`model/<name>_schema`, `net/<name>_schema`); a
    # field typed with a base class here would retype the node when anomaly.yaml extends train.
    model: Any = MISSING
    net: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    stage: str = MISSING  # recorded in MLflow tags and run names
    objective: str = MISSING  # the metric returned to a Hydra sweeper
    compile: bool = MISSING  # torch.compile the model's loss (`BaseAutoencoder.compile_loss`)

    def __post_init__(self) -> None:
        from aevae.models import MODELS  # the LightningModules: imported by a stage that trains
        from aevae.nets import NETS

        require(self.model.name in MODELS, "model.name", f"unknown model {self.model.name!r}; expected one of {', '.join(MODELS)}")
        require(isinstance(self.model, MODELS[self.model.name].config_class), "model", f"not a {MODELS[self.model.name].config_class.__name__}")
        require(self.net.name in NETS, "net.name", f"unknown net {self.net.name!r}; expected one of {', '.join(NETS)}")
        require(isinstance(self.net, NETS[self.net.name]), "net", f"not a {NETS[self.net.name].__name__}")
        self.model.check_optimization()


@dataclass
class GenerationConfig:
    classifier: Optional[str] = MISSING  # the classifier stage's checkpoint; null: no sample-quality numbers
    samples: int = MISSING  # images drawn from each model's prior (and test images they are compared with)

    def __post_init__(self) -> None:
        require(self.samples >= 2, "generation.samples", f"must be >= 2 (a covariance needs two), got {self.samples}")


@dataclass
class ConfigureConfig:
    params: str = MISSING  # the study's params.yaml
    models_dir: str = MISSING  # the train stage's models/<name>/ folders
    output_dir: str = MISSING  # the overrides files
    stage: str = MISSING


@dataclass
class PrepareConfig:
    data: DataConfig = MISSING
    output: str = MISSING  # the prepared split file to write; the manifest of its sources goes beside it
    workers: Optional[int] = MISSING  # processes that decode a folder's images; null: one per available CPU

    def __post_init__(self) -> None:
        require(self.workers is None or self.workers > 0, "workers", f"must be > 0 or null, got {self.workers}")
        self.data.require_path()


@dataclass
class LogRegConfig:
    C: float = MISSING  # inverse L2 strength, on standardized features
    max_iter: int = MISSING  # lbfgs iterations per fit

    def __post_init__(self) -> None:
        require(self.C > 0, "logreg.C", f"must be > 0, got {self.C}")
        require(self.max_iter > 0, "logreg.max_iter", f"must be > 0, got {self.max_iter}")


@dataclass
class ProbeConfig:
    data: DataConfig = MISSING
    logger: LoggerConfig = MISSING
    models: dict[str, str] = MISSING  # feature name -> checkpoint whose `embed` gives the features
    baselines: list[Baseline] = MISSING
    pca_components: Optional[int] = MISSING  # null: the models' latent size
    labels_per_class: list[int] = MISSING  # label budgets, class-balanced subsets of train
    all_labels: bool = MISSING  # also probe with every training label
    repeats: int = MISSING  # subsets per budget, drawn with seeds seed .. seed + repeats - 1
    device: str = MISSING  # torch device of the embedding (the fits run on the CPU)
    seed: int = MISSING
    logreg: LogRegConfig = MISSING
    output_dir: str = MISSING
    stage: str = MISSING

    def __post_init__(self) -> None:
        require(self.data.train_classes is None, "data.train_classes", "the probe classifies every class; set it to null")
        features = [*self.models, *(b.value for b in self.baselines)]
        require(len(features) > 0, "models", "nothing to probe: name a checkpoint or a baseline")
        require(len(set(features)) == len(features), "models", f"feature names must be unique (baselines included), got {features}")
        require(self.pca_components is None or self.pca_components > 0, "pca_components", f"must be > 0 or null, got {self.pca_components}")
        budgets = list(self.labels_per_class)
        require(len(budgets) > 0 or self.all_labels, "labels_per_class", "empty while all_labels is false: nothing to probe")
        require(all(n > 0 for n in budgets), "labels_per_class", f"budgets must be > 0, got {budgets}")
        require(len(set(budgets)) == len(budgets), "labels_per_class", f"budgets must be unique, got {budgets}")
        require(self.repeats > 0, "repeats", f"must be > 0, got {self.repeats}")


@dataclass
class LikelihoodConfig:
    samples: int = MISSING  # k importance samples per image (IWAE bound); 0: no IS estimate
    batch_size: int = MISSING  # images per importance-sampling pass (the decoder sees k x batch_size)

    def __post_init__(self) -> None:
        require(self.samples >= 0, "likelihood.samples", f"must be >= 0, got {self.samples}")
        require(self.batch_size > 0, "likelihood.batch_size", f"must be > 0, got {self.batch_size}")


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


class AnomalyProtocol(StrEnum):  # the cases of each: aevae.evaluation.anomaly.PROTOCOLS
    one_class = "one_class"  # each class of normal_classes in turn is normal, the others anomalies
    one_anomalous = "one_anomalous"  # each class of normal_classes in turn is the anomaly, the others normal


@dataclass
class DetectorFeatures:  # which detectors (names of `detectors`) run on which features
    pixels: list[str] = MISSING  # the flattened images
    pca: list[str] = MISSING  # the projections on the PCA baseline's components
    latent: list[str] = MISSING  # the model's codes (`embed`: a VAE's posterior mean)
    residual: list[str] = MISSING  # the image minus the model's mean reconstruction


@dataclass
class AnomalyConfig(TrainConfig):
    cases: AnomalyProtocol = MISSING  # the protocol (params.yaml: anomaly.protocol)
    normal_classes: Optional[list[int]] = MISSING  # one model per class (the normal class, or the anomalous one: see protocol); null: every class of the data
    detectors: dict[str, Any] = MISSING  # name -> a Hydra `_target_` node of a detector with fit / score_samples
    features: DetectorFeatures = MISSING
    ensemble: list[str] = MISSING  # the model's methods summed (each standardised on normal validation images): score, iwae, latent_<detector>, residual_<detector>; []: none
    likelihood: LikelihoodConfig = MISSING  # samples > 0: also score a VAE by its IS estimate of -log p(x)
    pca_components: Optional[int] = MISSING  # the PCA baseline's size; null: the model's latent size
    roc_points: int = MISSING  # at most this many points per ROC curve in roc.csv
    train_dir: str = MISSING  # the model of class c trains in <train_dir>/class_<c>

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.normal_classes is not None:
            _classes("normal_classes", self.normal_classes)
        require(self.data.train_classes is None, "data.train_classes", "set per normal class by the anomaly stage; leave it null")
        require(self.roc_points >= 2, "roc_points", f"must be >= 2, got {self.roc_points}")
        require(self.pca_components is None or self.pca_components > 0, "pca_components", f"must be > 0 or null, got {self.pca_components}")
        for name, node in self.detectors.items():
            require(isinstance(node, dict) and "_target_" in node, f"detectors.{name}", "give a `_target_` (a detector class with fit / score_samples) and its arguments")
        for features in ("pixels", "pca", "latent", "residual"):
            for name in getattr(self.features, features):
                require(name in self.detectors, f"features.{features}", f"{name} is not a key of detectors ({', '.join(self.detectors)})")
        methods = ["score", "iwae", *(f"latent_{name}" for name in self.features.latent), *(f"residual_{name}" for name in self.features.residual)]
        for part in self.ensemble:
            require(part in methods, "ensemble", f"{part} is not one of the model's methods ({', '.join(methods)})")
        require("iwae" not in self.ensemble or self.likelihood.samples > 0, "ensemble", "iwae needs likelihood.samples > 0")


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
class ReferenceReportConfig:
    recipes: list[str] = MISSING  # the reference stage's output directories, one row each
    output: str = MISSING  # reference.md
    logger: LoggerConfig = MISSING
    stage: str = MISSING


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

    def __post_init__(self) -> None:
        require(self.logger.name == Tracker.mlflow, "logger.name", "compare reads runs from MLflow; use logger=mlflow")
        require(len(self.metrics) > 0, "metrics", "name at least one metric")
        require(self.sort_by in self.metrics, "sort_by", f"must be one of metrics ({', '.join(self.metrics)}), got {self.sort_by!r}")
        if self.plot is not None:
            for key, allowed in (("x", self.params), ("line", self.params), ("y", self.metrics)):
                value = getattr(self.plot, key)
                kind = "metrics" if key == "y" else "params"
                require(value in allowed, f"plot.{key}", f"must be one of {kind} ({', '.join(allowed)}), got {value!r}")


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
    ranking: bool = False  # true: anomaly methods ranked by mean AUROC (report.ranking_table) instead of the pivot
    figures: list[str] = field(default_factory=list)  # glob patterns of images


@dataclass
class SummaryRow:
    use: str = MISSING  # what the row measures, e.g. "reconstruction (test MSE per pixel)"
    metric: str = MISSING  # "{model}" is replaced by each column name
    better: Optional[str] = None  # lower | higher | null (no best marked)
    format: str = ".4g"


@dataclass
class ReportSummary:
    title: str = "Summary"
    text: Optional[str] = None
    files: list[MetricsFile] = field(default_factory=list)  # empty: every section's files
    baselines: list[str] = field(default_factory=list)  # columns after the models
    rows: list[SummaryRow] = MISSING


@dataclass
class ReportConfig:
    summary: Optional[ReportSummary] = MISSING  # the table the report opens with; null: none
    models: list[str] = MISSING  # the model columns, in order; "{model}" in a path stands for each
    one_class_models: list[str] = MISSING  # the models with one-class runs; "{one_class_model}" in a path stands for each
    models_dir: str = MISSING  # where the train stage wrote models/<name>/
    reports_dir: str = MISSING  # where the evaluate, anomaly and probe stages wrote their reports
    roc_curves: str = MISSING  # each model's roc.csv (a path with "{model}")
    roc_figure: str = MISSING  # the ROC figure the report draws from them
    histories: str = MISSING  # each model's history.csv (a path with "{model}")
    training_metrics: list[str] = MISSING  # metrics files of each model's trainings (paths with "{model}"): provisional marks
    dataset_notes: dict[str, str] = MISSING  # data set -> a note shown first (e.g. that the digits variant is a smoke run)
    loss_figure: str = MISSING  # the validation-loss figure the report draws from them
    register: bool = MISSING  # register each model's logged MLflow model as aevae-<dataset>-<model>
    checkpoints: str = MISSING  # each model's best checkpoint (a path with "{model}"): finds the run that logged it
    summary_json: str = MISSING  # the headline numbers (the summary's cells) as one metrics file
    data_card: Optional[str] = MISSING  # the evaluate stage's data_card.json, shown first; null: no card
    title: str = MISSING
    dataset: str = MISSING
    output: str = MISSING
    html: str = MISSING
    sections: list[ReportSection] = MISSING
    logger: LoggerConfig = MISSING
    stage: str = MISSING


@dataclass
class ScoreConfig:
    model_uri: str = MISSING  # runs:/<run id>/model, models:/<name>/<version>, or a checkpoint file
    images: str = MISSING  # an .npy/.npz array or a folder of PNG files
    result: Optional[str] = MISSING  # what to write per image; null: the model's default
    batch_size: int = MISSING  # images per forward pass
    tracking_uri: Optional[str] = MISSING  # the store of runs:/ and models:/ URIs; null: as for every run
    output: str = MISSING  # .npy (the array) or .csv (a row per image)
    stage: str = MISSING

    def __post_init__(self) -> None:
        require(self.batch_size > 0, "batch_size", f"must be > 0, got {self.batch_size}")
        require(self.output.endswith((".npy", ".csv")), "output", f"must end in .npy or .csv, got {self.output!r}")


@dataclass
class ScoresConfig:
    mig_bins: int = MISSING  # equal-width bins per code dimension for the mutual information
    dci_train_fraction: float = MISSING  # of the scored images, fit the DCI regressors; the rest test them
    dci_estimators: int = MISSING  # boosting stages of each DCI regressor
    factor_vae_batch: int = MISSING  # images sharing the fixed factor in one vote
    factor_vae_train_votes: int = MISSING
    factor_vae_eval_votes: int = MISSING
    prune_variance: float = MISSING  # the FactorVAE score leaves out dimensions whose codes vary less

    def __post_init__(self) -> None:
        for key in ("mig_bins", "dci_estimators", "factor_vae_train_votes", "factor_vae_eval_votes"):
            require(getattr(self, key) > 0, f"scores.{key}", f"must be > 0, got {getattr(self, key)}")
        require(self.factor_vae_batch >= 2, "scores.factor_vae_batch", f"must be >= 2 (a variance needs two), got {self.factor_vae_batch}")
        require(0 < self.dci_train_fraction < 1, "scores.dci_train_fraction", f"must be in (0, 1), got {self.dci_train_fraction}")
        require(self.prune_variance >= 0, "scores.prune_variance", f"must be >= 0, got {self.prune_variance}")


@dataclass
class PublishedRange:
    metric: str = MISSING  # one of aevae.evaluation.disentanglement.SCORE_NAMES (checked by the stage)
    low: float = MISSING
    high: float = MISSING
    source: str = MISSING  # paper, figure and setting


@dataclass
class DisentangleConfig:
    data: DataConfig = MISSING
    logger: LoggerConfig = MISSING
    models: dict[str, str] = MISSING  # model name -> checkpoint
    split: str = MISSING  # the split whose images are encoded and scored
    scores: ScoresConfig = MISSING
    traversal_steps: int = MISSING
    traversal_range: float = MISSING  # offsets span +-range standard deviations of a dimension's codes
    published: list[PublishedRange] = MISSING  # the report sets these beside ours
    device: str = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    report: str = MISSING  # the Markdown report
    stage: str = MISSING

    def __post_init__(self) -> None:
        require(len(self.models) > 0, "models", "name at least one checkpoint to score")
        require(self.data.name == Dataset.sprites, "data.name", f"the scores need known factors of variation: use sprites, got {self.data.name}")
        require(self.split in ("train", "val", "test"), "split", f"must be train, val or test, got {self.split!r}")
        require(self.traversal_steps >= 2, "traversal_steps", f"must be >= 2, got {self.traversal_steps}")
        require(self.traversal_range > 0, "traversal_range", f"must be > 0, got {self.traversal_range}")
