"""A data set as its reader found it, before the seeded split."""

from dataclasses import dataclass, field

from torch import Tensor

from aevae.data.manifest import SourceFile


@dataclass
class Source:
    """Each split the data comes with: "train" always (the pool that val, and test where the data
    has none, are carved from), "val" and "test" where the data names them; each split is
    (images, labels[, factors]). Labels are -1 where the data has none."""

    parts: dict[str, tuple[Tensor, ...]]
    max_level: int  # the pixel level that stands for 1.0 (vectors: 1)
    class_names: tuple[str, ...] = ()  # label -> name; empty: the labels are the names
    normal_label: int | None = None  # the anomaly layout's `good` class
    path: str = ""  # data.path as given, for the user's data
    files: tuple[SourceFile, ...] = ()  # the manifest
    notes: tuple[str, ...] = ()
    factor_names: tuple[str, ...] = ()  # sprites: the factors of variation, each split's third tensor
    factor_values: tuple[tuple[float, ...], ...] = ()  # what the reader skipped or ignored, for the prepare stage's line
    noise_std: dict[str, Tensor] = field(default_factory=dict)  # data=codes, codes: sample: each value's posterior std, per split
    code_units: Tensor | None = None  # data=codes: the units of the model's code that the vectors hold
