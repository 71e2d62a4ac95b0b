"""Image figures written as PNG files (matplotlib, no display needed)."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from aevae.io import write_atomic  # noqa: E402


def tile_rows(rows: Sequence[Tensor], pad: int = 1) -> Tensor:
    """One (H', W') canvas of the first channel of every image, a row of the canvas per tensor
    (N, C, H, W), separated by `pad` white pixels; short rows are padded with white."""
    height, width = rows[0].shape[-2:]
    canvas = torch.ones(len(rows) * (height + pad) + pad, max(len(row) for row in rows) * (width + pad) + pad)
    for r, images in enumerate(rows):
        for c, image in enumerate(images.detach().float().cpu()):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            canvas[top : top + height, left : left + width] = image[0]
    return canvas


def save_image_rows(rows: Sequence[Tensor], row_titles: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save a grid: one row per tensor of images (N, C, H, W) in [0, 1], titled on the left."""
    n_cols = max(len(row) for row in rows)
    fig, ax = plt.subplots(figsize=(1.0 + n_cols * 0.8, 0.4 + len(rows) * 0.8))
    ax.imshow(tile_rows(rows).numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    height = rows[0].shape[-2]
    ax.set_yticks([1 + r * (height + 1) + (height - 1) / 2 for r in range(len(rows))], labels=row_titles, fontsize=8)
    ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_frame_on(False)
    return _save(fig, ax, title, path)


def save_png(fig: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as PNG, atomically, and release it."""
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    plt.close(fig)
    return Path(path)


def _save(fig: plt.Figure, ax: plt.Axes, title: str, path: str | Path) -> Path:
    """Title the axes, lay out and save the figure."""
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)


def save_latent_map(points: Tensor, labels: Tensor, path: str | Path, title: str = "") -> Path:
    """Save a scatter plot of 2-D `points` (N, 2) coloured by integer `labels` (N,)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    xy, classes = points.detach().float().cpu().numpy(), labels.cpu().numpy()
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=classes, cmap="tab10", vmin=-0.5, vmax=9.5, s=6, alpha=0.8)
    fig.colorbar(scatter, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel("dim 1")
    ax.set_ylabel("dim 2")
    return _save(fig, ax, title, path)
