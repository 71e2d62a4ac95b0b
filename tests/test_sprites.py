"""The sprites data set: factor grid and ranges, every combination rendered once, what each
factor does to the image, the prepared file carrying the factors, byte-stable for a seed."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from aevae.data import load_splits, prepare_splits, save_splits
from aevae.data.sprites import FACTOR_NAMES, FACTORS, IMAGE_SIZE, factor_grid, factor_values, load_sprites_raw, render
from aevae.errors import DataError
from aevae.io import load_tensors, save_tensors
from conftest import CONF_DIR

N_IMAGES = 3 * 6 * 8 * 16 * 16


def sprites_cfg(**changes):
    cfg = OmegaConf.load(CONF_DIR / "data" / "sprites.yaml")
    del cfg["defaults"]
    return OmegaConf.merge(cfg, changes)


@pytest.fixture(scope="module")
def raw():
    return load_sprites_raw()


@pytest.fixture(scope="module")
def splits():
    return prepare_splits(sprites_cfg())


@pytest.mark.fast
def test_factors_span_dsprites_ranges_on_a_smaller_grid():
    values = {factor.name: factor.values for factor in FACTORS}
    assert FACTOR_NAMES == ("shape", "scale", "orientation", "x", "y")
    assert values["shape"] == (0.0, 1.0, 2.0)
    assert values["scale"] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert values["orientation"] == pytest.approx([i * math.pi / 4 for i in range(8)])  # [0, 2 pi), no duplicate of 0
    for axis in ("x", "y"):
        assert len(values[axis]) == 16 and values[axis][0] == 0.0 and values[axis][-1] == 1.0


def test_every_combination_is_rendered_exactly_once(raw):
    images, labels, indices = raw
    assert images.shape == (N_IMAGES, 1, IMAGE_SIZE, IMAGE_SIZE) and images.dtype == torch.uint8
    assert len(torch.unique(indices, dim=0)) == N_IMAGES == math.prod(len(f.values) for f in FACTORS)
    assert torch.equal(indices, factor_grid()) and torch.equal(labels, indices[:, 0])
    assert set(images.unique().tolist()) == {0, 1}
    assert bool((images.flatten(1).sum(1) > 0).all())  # no empty image


def test_each_factor_moves_the_sprite_as_it_says(raw):
    images, _, indices = raw
    pixels = images[:, 0].double()
    area = pixels.sum((1, 2))
    rows, cols = torch.arange(IMAGE_SIZE, dtype=torch.float64), torch.arange(IMAGE_SIZE, dtype=torch.float64)
    centre_x = (pixels.sum(1) * cols).sum(1) / area
    centre_y = (pixels.sum(2) * rows).sum(1) / area

    def mean_by(k, value):
        return torch.stack([value[indices[:, k] == i].mean() for i in range(len(FACTORS[k].values))])

    assert bool((mean_by(1, area).diff() > 0).all())  # larger scale, more pixels
    assert bool((mean_by(3, centre_x).diff() > 0.5).all())  # x moves right, about a pixel a step
    assert bool((mean_by(4, centre_y).diff() > 0.5).all())  # y moves down
    square = (indices[:, 0] == 0) & (indices[:, 1] == 5) & (indices[:, 3] == 7) & (indices[:, 4] == 7)
    turned = images[square]  # a square at 0 and 90 degrees is the same image, at 45 degrees it is not
    assert torch.equal(turned[0], turned[2]) and not torch.equal(turned[0], turned[1])


def test_rendering_is_a_function_of_the_factor_values(raw):
    images, _, indices = raw
    pick = torch.tensor([0, 4097, N_IMAGES - 1])
    assert torch.equal(render(factor_values(indices[pick])), images[pick])


def test_prepared_splits_partition_the_grid_and_carry_the_factors(splits, tmp_path):
    sizes = {name: len(labels) for name, labels in splits.labels.items()}
    assert sum(sizes.values()) == N_IMAGES and sizes["test"] == round(0.2 * N_IMAGES)
    every = torch.cat([splits.factors[name] for name in ("train", "val", "test")])
    assert len(torch.unique(every, dim=0)) == N_IMAGES  # disjoint and complete
    assert all(torch.equal(splits.labels[name], splits.factors[name][:, 0]) for name in splits.factors)
    assert torch.equal(render(splits.factor_table("test")), splits.images["test"])  # each image with its own factors
    loaded = load_splits(save_splits(splits, tmp_path / "sprites.pt"))
    assert loaded.factor_names == FACTOR_NAMES and loaded.factor_values == tuple(f.values for f in FACTORS)
    assert all(torch.equal(loaded.factors[name], splits.factors[name]) for name in splits.factors)
    assert float(loaded.factor_table("train")[:, 2].max()) < 2 * math.pi


def test_prepared_file_is_byte_stable_for_a_seed(splits, tmp_path):
    first = save_splits(splits, tmp_path / "a.pt").read_bytes()
    assert save_splits(prepare_splits(sprites_cfg()), tmp_path / "b.pt").read_bytes() == first
    other = prepare_splits(sprites_cfg(split_seed=1))
    assert not torch.equal(other.factors["test"], splits.factors["test"])


def test_files_without_factors_still_load_and_bad_factors_are_refused(splits, tmp_path):
    payload = load_tensors(save_splits(splits, tmp_path / "sprites.pt"))
    plain = {key: value for key, value in payload.items() if "factor" not in key}  # the format before factors
    assert load_splits(save_tensors(tmp_path / "plain.pt", plain)).factor_names == ()
    payload["test_factors"] = payload["test_factors"][:, :2]
    with pytest.raises(DataError, match="split 'test' has inconsistent factors"):
        load_splits(save_tensors(tmp_path / "bad.pt", payload))
