"""The schemas that several stages share: the data, trainer and logger groups, and the settings
that more than one stage reads; each stage's own schema lives beside its `run`
(`aevae.stages.<stage>`).

Every value lives in conf/; these dataclasses declare the keys, their types and their checks.
Hydra rejects an unknown key, a wrong type or an unknown choice (Enum fields) while composing;
`aevae.config.validate(cfg)` then builds the dataclasses, whose `__post_init__` checks the values
and raises a one-line `ConfigError` naming the key.
"""

from dataclasses import dataclass
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
    codes = "codes"  # a trained model's codes of the images it was trained on, as vectors (data.path: its checkpoint)

    @property
    def reads_path(self) -> bool:
        """Whether the data set is read from `data.path` (the others are bundled or generated)."""
        return self in (Dataset.mnist, Dataset.folder, Dataset.arrays, Dataset.codes)

    @property
    def built_in(self) -> bool:
        """One of the study's own data sets, kept at its size and channels."""
        return self not in (Dataset.folder, Dataset.arrays, Dataset.codes)


class CodeKind(StrEnum):
    """What data=codes takes of each image's posterior q(z|x) (`aevae.data.codes`)."""

    mean = "mean"  # the posterior mean
    sample = "sample"  # a fresh draw for every training batch (Kingma et al. 2014's M1+M2); validation: one fixed draw; test: the mean


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


def check_classes(key: str, classes: Any) -> None:
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
    codes: CodeKind = MISSING  # data=codes: each image's posterior mean, or a draw from its posterior per training batch

    def __post_init__(self) -> None:
        require(0.0 <= self.val_fraction < 1.0, "data.val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        require(0.0 < self.test_fraction < 1.0, "data.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        require(0.0 < self.threshold < 1.0, "data.threshold", f"must be in (0, 1), got {self.threshold}")
        require(self.batch_size > 0, "data.batch_size", f"must be > 0, got {self.batch_size}")
        require(self.eval_batch_size > 0, "data.eval_batch_size", f"must be > 0, got {self.eval_batch_size}")
        if self.train_classes is not None:
            check_classes("data.train_classes", self.train_classes)
        require(self.image_size is None or self.image_size >= 4, "data.image_size", f"must be >= 4 pixels or null, got {self.image_size}")
        require(self.channels in (None, 1, 3), "data.channels", f"must be 1 (grey), 3 (colour) or null (as found), got {self.channels}")
        name = Dataset(self.name)
        if name.built_in:
            for key in ("image_size", "channels"):
                require(getattr(self, key) is None, f"data.{key}", f"applies to data=folder or data=arrays; the built-in {name} keeps its own; set it to null")
        if not name.reads_path:
            require(self.path is None, "data.path", f"the built-in {name} reads no files; set it to null")
        if name == Dataset.codes:
            for key in ("image_size", "channels"):
                require(getattr(self, key) is None, f"data.{key}", "applies to images; data=codes are vectors, set it to null")
            require(self.prepared is None, "data.prepared", "data=codes are read from the model's checkpoint (data.path); set it to null")
        require(name == Dataset.codes or self.codes == CodeKind.mean, "data.codes", f"applies to data=codes (a model's codes), not to {name}; leave it at mean")

    def require_path(self) -> None:
        """Refuse a data set read from `data.path` without one (where the raw data is read)."""
        what = {
            Dataset.mnist: "the folder of its four IDX gz files",
            Dataset.folder: "a folder of images",
            Dataset.arrays: "an .npz or .npy file",
            Dataset.codes: "a trained model's checkpoint (e.g. models/vae/checkpoints/best.ckpt)",
        }
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
class LogRegConfig:
    C: float = MISSING  # inverse L2 strength, on standardized features
    max_iter: int = MISSING  # lbfgs iterations per fit

    def __post_init__(self) -> None:
        require(self.C > 0, "logreg.C", f"must be > 0, got {self.C}")
        require(self.max_iter > 0, "logreg.max_iter", f"must be > 0, got {self.max_iter}")


@dataclass
class LikelihoodConfig:
    samples: int = MISSING  # k importance samples per image (IWAE bound); 0: no IS estimate
    batch_size: int = MISSING  # images per importance-sampling pass (the decoder sees k x batch_size)

    def __post_init__(self) -> None:
        require(self.samples >= 0, "likelihood.samples", f"must be >= 0, got {self.samples}")
        require(self.batch_size > 0, "likelihood.batch_size", f"must be > 0, got {self.batch_size}")
