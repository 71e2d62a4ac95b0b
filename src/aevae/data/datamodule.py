"""In-memory data path: each split is one tensor on the training device, batches are index slices."""

import math
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor

from aevae.data.splits import SPLIT_NAMES, Splits
from aevae.data.subsets import labelled_subset
from aevae.errors import ConfigError

Batch = tuple[Tensor, Tensor]  # images, labels


def binarize(images: Tensor, mode: str, threshold: float, generator: torch.Generator | None = None) -> Tensor:
    """Binarize [0, 1] images: 'threshold' by value, 'static'/'dynamic' by one Bernoulli draw."""
    if mode == "none":
        return images
    if mode == "threshold":
        return (images > threshold).to(images.dtype)
    return torch.bernoulli(images, generator=generator)


class TensorBatches:
    """An iterable of `(x, y)` batches sliced from in-memory tensors.

    With `noise` (per-sample stds, the shape of `images`), each batch is a fresh draw
    `images + noise * N(0, 1)` (a model's codes drawn from their posteriors, data=codes).

    No per-sample Python and no collate. Samples are sharded over `world_size` ranks without
    overlap: shuffled (training) batches give every rank `n // world_size` samples, so all ranks
    run the same number of steps; ordered (evaluation) batches give every sample to exactly one
    rank. The shuffle order is a function of `(seed, epoch_fn())`, so a resumed run sees the same
    batches as an uninterrupted one.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        epoch_fn: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        binarize_dynamic: bool = False,
        noise: Tensor | None = None,
    ) -> None:
        self.images, self.labels, self.noise = images, labels, noise
        self.batch_size, self.shuffle, self.seed, self.epoch_fn = batch_size, shuffle, seed, epoch_fn
        self.rank, self.world_size = rank, world_size
        self.binarize_dynamic = binarize_dynamic

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, in serving order."""
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(self.rank, n, self.world_size, device=self.images.device)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch_fn())
        per_rank = n // self.world_size
        order = torch.randperm(n, generator=generator)[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order.to(self.images.device)

    def __len__(self) -> int:
        n = len(self.labels)
        n_rank = n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))
        return math.ceil(n_rank / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self.indices()
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index]
            if self.binarize_dynamic:
                images = torch.bernoulli(images)
            if self.noise is not None:
                images = images + self.noise[index] * torch.randn_like(images)
            yield images, self.labels[index]


class InMemoryDataModule(L.LightningDataModule):
    """Serves the prepared splits from memory, after the configured class filter and binarization.

    With `binarize: dynamic`, training batches get a fresh Bernoulli draw each time they are
    served, while val/test use one fixed draw so that evaluation is repeatable; so do a model's
    codes with `codes: sample`: a fresh draw from each posterior for training batches, one fixed
    draw for val (whose loss chooses the checkpoint: it measures what training fits), the
    posterior means for test (an image's code).
    """

    def __init__(self, splits: Splits, data_cfg: Any, seed: int = 0) -> None:
        super().__init__()
        self.splits, self.cfg, self.seed = splits, data_cfg, seed
        self.tensors: dict[str, tuple[Tensor, Tensor]] = {}
        self.train_noise: Tensor | None = None  # data=codes, codes: sample: the training codes' posterior stds
        self.labels_per_class: int | None = None  # set by `serve_labels`

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.splits.image_shape

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        generator = torch.Generator().manual_seed(self.cfg.split_seed)
        static_mode = "static" if self.cfg.binarize == "dynamic" else self.cfg.binarize
        for split in SPLIT_NAMES:
            images, labels = self.splits.scaled(split), self.splits.labels[split]
            noise = self.splits.noise_std.get(split) if split != "test" and self.cfg.codes == "sample" else None
            if self.cfg.train_classes is not None and split != "test":
                keep = torch.isin(labels, torch.tensor(list(self.cfg.train_classes)))
                images, labels, noise = images[keep], labels[keep], None if noise is None else noise[keep]
            if not (split == "train" and self.cfg.binarize == "dynamic"):
                images = binarize(images, static_mode, self.cfg.threshold, generator)
            if noise is not None and split == "val":  # one fixed draw: the validation loss measures what training fits
                images = images + noise * torch.randn(images.shape, generator=generator)
            self.tensors[split] = (images.contiguous().to(device), labels.to(device))
            if noise is not None and split == "train":
                self.train_noise = noise.contiguous().to(device)

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """Images and labels of one whole split, set up on first use (also in a process that only
        spawned the ranks which trained)."""
        self.setup()
        return self.tensors[name]

    def batches(self, split: str, *, shuffle: bool = False) -> TensorBatches:
        """Batches of one split, sharded over the trainer's ranks when there is a trainer."""
        images, labels = self.split(split)
        return self._batches(images, labels, split, shuffle=shuffle, noise=self.train_noise if split == "train" and shuffle else None)

    def _batches(self, images: Tensor, labels: Tensor, split: str, *, shuffle: bool, noise: Tensor | None = None) -> TensorBatches:
        trainer = self.trainer
        return TensorBatches(
            images,
            labels,
            self.cfg.batch_size if shuffle else self.cfg.eval_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0),
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            binarize_dynamic=split == "train" and self.cfg.binarize == "dynamic",
            noise=noise,
        )

    def serve_labels(self, labels_per_class: int) -> None:
        """Serve training batches as `{"labelled": (x, y), "unlabelled": (x, -1)}`, one of each per
        step (Lightning's CombinedLoader in `max_size_cycle` mode: the small labelled loader cycles).

        The labelled subset is `labels_per_class` training images of every class drawn with this
        module's seed, the probe's subset for that seed (`aevae.data.subsets.labelled_subset`);
        the rest of the training split comes without labels (-1).
        """
        _, labels = self.split("train")
        classes, counts = labels.unique(return_counts=True)
        if labels_per_class > counts.min():
            smallest = int(counts.argmin())
            raise ConfigError(
                f"labels_per_class: {labels_per_class} labels per class exceed the {int(counts[smallest])} "
                f"training images of class {int(classes[smallest])}"
            )
        self.labels_per_class = labels_per_class

    def semi_supervised_batches(self) -> CombinedLoader:
        """The labelled and unlabelled training batches of `serve_labels`."""
        images, labels = self.split("train")
        index = torch.from_numpy(labelled_subset(labels.cpu().numpy(), self.labels_per_class, self.seed)).to(labels.device)
        unlabelled = torch.ones(len(labels), dtype=torch.bool, device=labels.device).index_fill_(0, index, False)
        noise = self.train_noise
        loaders = {
            "labelled": self._batches(images[index], labels[index], "train", shuffle=True, noise=None if noise is None else noise[index]),
            "unlabelled": self._batches(
                images[unlabelled], torch.full_like(labels[unlabelled], -1), "train", shuffle=True, noise=None if noise is None else noise[unlabelled]
            ),
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def train_dataloader(self) -> TensorBatches | CombinedLoader:
        if self.labels_per_class is not None:
            return self.semi_supervised_batches()
        return self.batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self.batches("val")

    def test_dataloader(self) -> TensorBatches:
        return self.batches("test")
