"""The codes data set (data=codes): a trained model's codes of the images it was trained on.

The checkpoint (`data.path`) records the data config its model was trained with; those images,
with their split and binarization (a dynamic one drawn once), go through the model's posterior
q(z|x). The units whose posterior mean varies over the training images (the active units, Burda
et al. 2015's criterion; where none is, the means of all of them) become the vectors, each image keeping its label and split
(`aevae.data.codes`). The stages that train (train, reference) read their data through `load_data`.
"""

import logging
from pathlib import Path
from typing import Any

import torch

from aevae.run.checkpoints import read_checkpoint, trained_data_config
from aevae.config import Binarization, CodeKind, DataConfig, Dataset
from aevae.data import InMemoryDataModule, Splits, load_or_prepare, split_source
from aevae.data.codes import codes_source
from aevae.data.source import Source
from aevae.errors import DataError
from aevae.evaluation.latent_stats import ACTIVE_UNIT_THRESHOLD, posterior, posterior_mean_variance
from aevae.models import Capability, load_model
from aevae.models.base import checked

log = logging.getLogger(__name__)


def images_config(checkpoint: Path) -> DataConfig:
    """The data config the checkpoint's model was trained with (typed), a dynamic binarization
    drawn once (`static`), so that every image has one code."""
    trained = trained_data_config(read_checkpoint(checkpoint))
    if trained is None:
        raise DataError(f"{checkpoint}: the checkpoint records no data config (trained before data=codes existed); train the model again")
    if trained["name"] == Dataset.codes:
        raise DataError(f"{checkpoint}: the model was trained on codes itself; data=codes reads a model trained on images")
    images_cfg = checked(DataConfig, trained)  # as a checkpoint's model config is read
    if images_cfg.binarize == Binarization.dynamic:
        images_cfg.binarize = Binarization.static
    return images_cfg


def read_codes(data_cfg: Any) -> Source:
    """The codes of the images of the model whose checkpoint is `data_cfg.path`: posterior means,
    with the posterior stds beside them for `data.codes: sample`."""
    if data_cfg.path is None:
        raise DataError("data.path: data=codes needs a trained model's checkpoint (e.g. models/vae/checkpoints/best.ckpt)")
    checkpoint = Path(data_cfg.path)
    model = load_model(checkpoint)
    if not model.supports(Capability.posterior):
        raise DataError(f"{checkpoint}: data=codes needs a model with a posterior q(z|x) (vae, beta_vae); this one is a {model.cfg.name}")
    images_cfg = images_config(checkpoint)
    images = InMemoryDataModule(load_or_prepare(images_cfg), images_cfg)
    images.setup()
    means, stds, labels = {}, {}, {}
    for split, (split_images, split_labels) in images.tensors.items():
        mu, logvar = posterior(model, split_images, data_cfg.eval_batch_size)
        means[split], stds[split], labels[split] = mu, (0.5 * logvar).exp(), split_labels
    units = torch.nonzero(posterior_mean_variance(means["train"]) > ACTIVE_UNIT_THRESHOLD).flatten()
    draw = data_cfg.codes == CodeKind.sample
    if len(units) == 0:
        log.warning("%s: no unit of the model's code is active (an untrained model?); the codes are the posterior means of all its units", checkpoint)
        units, draw = torch.arange(means["train"].shape[1]), False  # a draw would be noise blown up by the standardisation
    return codes_source(checkpoint, means, stds if draw else None, labels, images.splits.class_names, units)


def load_data(data_cfg: Any) -> Splits:
    """The splits of `data_cfg` (`aevae.data.load_or_prepare`), data=codes read through its model."""
    if data_cfg.name == Dataset.codes:
        return split_source(read_codes(data_cfg), data_cfg)
    return load_or_prepare(data_cfg)
