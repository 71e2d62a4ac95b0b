"""The figures of a trained model on test images: one PNG per kind the model supports."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aevae.evaluation.batches import map_batches
from aevae.evaluation.latent import interpolate, project_2d, traverse
from aevae.evaluation.latent_stats import most_active_dimensions
from aevae.models import BaseAutoencoder
from aevae.models.losses import corrupt
from aevae.reporting.plots import save_image_rows, save_latent_map

Grid = tuple[list[Tensor], list[str]]  # rows of images (N, C, H, W) and their titles


def reconstruction_grid(model: BaseAutoencoder, images: Tensor, codes: Tensor, cfg: Any) -> Grid:
    """Test images above their reconstructions."""
    x = images[: cfg.n_images]
    return [x, model.reconstruct(x)], ["input", "recon"]


def denoising_grid(model: BaseAutoencoder, images: Tensor, codes: Tensor, cfg: Any) -> Grid | None:
    """Corrupted inputs, their reconstructions and the clean images (denoising models only)."""
    if model.cfg.corruption == "none":
        return None
    clean = images[: cfg.n_images]
    noisy = corrupt(clean, model.cfg.corruption, model.cfg.corruption_level)
    return [noisy, model.reconstruct(noisy), clean], ["noisy", "denoised", "clean"]


def sample_grid(model: BaseAutoencoder, images: Tensor, codes: Tensor, cfg: Any) -> Grid | None:
    """Two rows of images generated from the prior (models with a prior only)."""
    try:
        samples = model.sample(2 * cfg.n_images)
    except NotImplementedError:
        return None
    return list(samples.split(cfg.n_images)), ["sample", "sample"]


def _decode_rows(model: BaseAutoencoder, paths: Tensor) -> list[Tensor]:
    """Decode latent paths (R, S, D) into R rows of S images."""
    return list(model.decode(paths.flatten(0, 1)).unflatten(0, paths.shape[:2]))


def interpolation_grid(model: BaseAutoencoder, images: Tensor, codes: Tensor, cfg: Any) -> Grid:
    """Decoded straight lines between the codes of pairs of test images, one pair per row."""
    pairs = min(cfg.interpolation_pairs, len(codes) // 2)
    paths = interpolate(codes[:pairs], codes[pairs : 2 * pairs], cfg.interpolation_steps)
    return _decode_rows(model, paths), [f"pair {i}" for i in range(pairs)]


def traversal_grid(model: BaseAutoencoder, images: Tensor, codes: Tensor, cfg: Any) -> Grid:
    """One latent dimension varied per row, the others fixed at the first test image's code; the
    dimensions whose codes vary most over the test set come first (the most active units; collapsed
    ones would show nothing)."""
    spread = codes.std(0)
    dims = most_active_dimensions(codes, cfg.traversal_dims)
    paths = traverse(codes[0], dims, spread, cfg.traversal_steps, cfg.traversal_range)
    return _decode_rows(model, paths), [f"z{d}" for d in dims.tolist()]


IMAGE_GRIDS: dict[str, Callable[[BaseAutoencoder, Tensor, Tensor, Any], Grid | None]] = {
    "reconstructions": reconstruction_grid,
    "denoising": denoising_grid,
    "samples": sample_grid,
    "interpolations": interpolation_grid,
    "traversals": traversal_grid,
}


@torch.no_grad()
def save_model_figures(
    model: BaseAutoencoder,
    images: Tensor,
    labels: Tensor,
    figures_cfg: Any,
    directory: str | Path,
    name: str,
    *,
    batch_size: int,
    seed: int,
) -> list[Path]:
    """Write `<directory>/<name>_<kind>.png` for every figure kind the model supports (images
    only: vectors have no picture), plus `<name>_latent_map.png` (test codes in 2-D, coloured by
    label). Returns the paths written."""
    directory = Path(directory)
    torch.manual_seed(seed)
    codes = map_batches(model.embed, images, batch_size)
    paths = []
    for kind, make_grid in IMAGE_GRIDS.items() if images.ndim == 4 else ():
        grid = make_grid(model, images, codes, figures_cfg)
        if grid is not None:
            rows, titles = grid
            paths.append(save_image_rows(rows, titles, directory / f"{name}_{kind}.png", title=f"{name} {kind}"))
    latent_map = directory / f"{name}_latent_map.png"
    projected = codes.shape[1] > 2
    title = f"{name}: test codes" + (" (first two principal components)" if projected else "")
    paths.append(save_latent_map(project_2d(codes, seed), labels, latent_map, title=title, projected=projected))
    return paths
