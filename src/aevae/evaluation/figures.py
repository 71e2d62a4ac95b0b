"""Image figures written as PNG files (matplotlib, no display needed)."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from aevae.io import write_atomic  # noqa: E402


def save_image_rows(rows: Sequence[Tensor], row_titles: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save a grid: one row per tensor of images (N, C, H, W) in [0, 1], titled on the left."""
    n_cols = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 0.9, len(rows) * 0.95), squeeze=False)
    for r, (images, row_title) in enumerate(zip(rows, row_titles)):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if c < len(images):
                ax.imshow(images[c, 0].detach().float().cpu().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        axes[r][0].set_ylabel(row_title, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return Path(path)
