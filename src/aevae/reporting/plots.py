"""Every figure of the project, written as PNG files (matplotlib, no display needed).

matplotlib, pandas and torch are imported by the functions that use them, on first use: a stage
that imports this module starts without them.
"""

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aevae.io import write_atomic

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@functools.cache
def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tile_rows(rows: Sequence["Tensor"], pad: int = 1) -> "Tensor":
    """One canvas of every image, a row of the canvas per tensor (N, C, H, W), separated by `pad`
    white pixels; short rows are padded with white. Grey images (C = 1) give an (H', W') canvas,
    colour ones (C = 3) an (H', W', 3) one."""
    import torch

    channels, (height, width) = rows[0].shape[-3], rows[0].shape[-2:]
    colour = (3,) if channels == 3 else ()
    canvas = torch.ones(len(rows) * (height + pad) + pad, max(len(row) for row in rows) * (width + pad) + pad, *colour)
    for r, images in enumerate(rows):
        for c, image in enumerate(images.detach().float().cpu()):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            canvas[top : top + height, left : left + width] = image.permute(1, 2, 0) if colour else image[0]
    return canvas


def as_pictures(x: "Tensor") -> "Tensor":
    """Images (N, C, H, W) as they are; vectors (N, D) of standardised features as one strip of
    D pixels each (N, 1, 1, D), squashed into [0, 1] by a sigmoid (0 grey, the mean)."""
    return x if x.ndim == 4 else x.sigmoid().view(len(x), 1, 1, -1)


def save_image_rows(rows: Sequence["Tensor"], row_titles: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save a grid: one row per tensor of images (N, C, H, W) in [0, 1], titled on the left."""
    plt = pyplot()
    n_cols = max(len(row) for row in rows)
    fig, ax = plt.subplots(figsize=(1.0 + n_cols * 0.8, 0.4 + len(rows) * 0.8))
    ax.imshow(tile_rows(rows).clamp(0.0, 1.0).numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    height = rows[0].shape[-2]
    ax.set_yticks([1 + r * (height + 1) + (height - 1) / 2 for r in range(len(rows))], labels=row_titles, fontsize=8)
    ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_frame_on(False)
    return _save(fig, ax, title, path)


def save_png(fig: "Figure", path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as PNG, atomically, and release it."""
    plt = pyplot()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    plt.close(fig)
    return Path(path)


def _save(fig: "Figure", ax: "Axes", title: str, path: str | Path) -> Path:
    """Title the axes, lay out and save the figure."""
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)


def save_latent_map(points: "Tensor", labels: "Tensor", path: str | Path, title: str = "", projected: bool = False) -> Path:
    """Save a scatter plot of 2-D `points` (N, 2) coloured by integer `labels` (N,) (unlabelled,
    every label -1: one colour; more than 10 classes: a continuous colour map); `projected`: the
    points are principal components of the codes, not the codes themselves."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    xy, classes = points.detach().float().cpu().numpy(), labels.cpu().numpy()
    if (classes < 0).all():
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.8)
    else:
        n_classes = max(10, int(classes.max()) + 1)
        cmap = "tab10" if n_classes == 10 else "viridis"
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=classes, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, s=6, alpha=0.8)
        fig.colorbar(scatter, ax=ax, ticks=range(n_classes) if n_classes <= 20 else None, label="label")
    ax.set_xlabel("principal component 1" if projected else "latent dimension 1")
    ax.set_ylabel("principal component 2" if projected else "latent dimension 2")
    return _save(fig, ax, title, path)


def _read_roc_csv(path: Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{class: {method: (fpr, tpr)}} of a roc.csv (columns model,class,fpr,tpr), in file order."""
    import csv

    from aevae.errors import DataError

    if not path.is_file():
        raise DataError(f"{path}: ROC file not found (run the anomaly stage that writes it)")
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = {"model", "class", "fpr", "tpr"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: ROC file lacks column(s) {', '.join(sorted(missing))}")
        for row in reader:
            fpr, tpr = curves.setdefault(row["class"], {}).setdefault(row["model"], ([], []))
            fpr.append(float(row["fpr"]))
            tpr.append(float(row["tpr"]))
    return curves


def save_roc_curves(
    csv_paths_by_model: dict[str, Path],
    path: str | Path,
    title: str = "One-class anomaly detection: ROC curve per normal class (test split)",
    n_cols: int = 5,
) -> Path:
    """Save small multiples of ROC curves: one panel per normal class, one line per scoring
    method (the `model` column of each roc.csv, e.g. ae, vae_iwae, pca), a diagonal for chance.
    A method found in several files (a shared baseline such as pca) is drawn from the first."""
    from aevae.errors import DataError

    plt = pyplot()
    if not csv_paths_by_model:
        raise DataError("save_roc_curves: no roc.csv files given")
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for csv_path in csv_paths_by_model.values():
        for cls, methods in _read_roc_csv(Path(csv_path)).items():
            for method, xy in methods.items():
                curves.setdefault(cls, {}).setdefault(method, xy)
    if not curves:
        raise DataError(f"{', '.join(map(str, csv_paths_by_model.values()))}: no ROC points")
    classes = sorted(curves, key=lambda c: (0, int(c), "") if c.lstrip("-").isdigit() else (1, 0, c))
    methods = list(dict.fromkeys(m for c in classes for m in curves[c]))
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    n_cols = max(1, min(n_cols, len(classes)))
    n_rows = -(-len(classes) // n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.1 * n_cols, 2.1 * n_rows + 0.8), sharex=True, sharey=True, squeeze=False, layout="constrained"
    )
    for ax, cls in zip(axes.flat, classes):
        ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8, label="chance")
        for method, (fpr, tpr) in curves[cls].items():
            ax.plot(fpr, tpr, color=colors[method], linewidth=1.2, label=method)
        ax.set_title(f"normal class {cls}", fontsize=9)
        ax.set_xlim(-0.02, 1.0)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(classes) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("false positive rate", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("true positive rate", fontsize=8)
    handles = [plt.Line2D([], [], color=colors[m], linewidth=1.5, label=m) for m in methods]
    handles.append(plt.Line2D([], [], color="0.6", linestyle="--", linewidth=0.8, label="chance"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False, title="scoring method", title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path)


def save_accuracy_plot(summary: Sequence[Mapping[str, Any]], path: str | Path, title: str, all_labels: str) -> Path:
    """Probe test accuracy against labels per class (log x), one line with error bars per feature;
    the budget named `all_labels` (every training label) as a dotted vertical line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for feature in dict.fromkeys(row["feature"] for row in summary):
        rows = [row for row in summary if row["feature"] == feature]
        ax.errorbar(
            [row["labels_per_class"] for row in rows],
            [row["accuracy"] for row in rows],
            yerr=[row["accuracy_std"] for row in rows],
            marker="o",
            capsize=3,
            label=feature,
        )
    ax.set_xscale("log")
    budgets = {row["budget"]: row["labels_per_class"] for row in summary}
    ax.set_xticks([x for b, x in budgets.items() if b != all_labels], [b.removeprefix("n") for b in budgets if b != all_labels])
    ax.minorticks_off()
    if all_labels in budgets:
        x = budgets[all_labels]
        ax.axvline(x, color="gray", linestyle=":", linewidth=1)
        ax.annotate(f"all labels (~{x:.0f} / class)", (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=7, ha="right", va="bottom", color="gray")
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if summary:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def save_loss_curves(histories: Mapping[str, Path], path: str | Path, column: str = "val/loss") -> Path:
    """`column` of each model's history.csv against the epoch, one line per model (log y: the
    models' losses differ by a factor of two and their last epochs by under a percent)."""
    import pandas as pd

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, csv_path in histories.items():
        history = pd.read_csv(csv_path)
        ax.plot(history["epoch"], history[column], marker=".", label=name)
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel=f"{column} (nats per image)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, ax, f"{column} per epoch (validation split)", path)


def plot_metric(frame: "pd.DataFrame", x: str, y: str, line: str, ascending: bool) -> Any:
    """`y` against `x`, one line per value of `line`. Where several runs share a point (other
    params differ), the best one is drawn: the lowest `y` when `ascending`, else the highest."""
    import pandas as pd

    plt = pyplot()
    best = frame.dropna(subset=[y]).groupby([line, x], sort=True)[y]
    points = (best.min() if ascending else best.max()).reset_index()
    fig, ax = plt.subplots(figsize=(6, 4))
    for value, curve in points.groupby(line, sort=True):
        ax.plot(curve[x], curve[y], marker="o", label=f"{line}={value}")
    if pd.api.types.is_numeric_dtype(points[x]) and points[x].min() > 0 and points[x].max() >= 8 * points[x].min():
        ax.set_xscale("log", base=2)  # latent sizes and learning rates span octaves
    ax.set(xlabel=x, ylabel=y, title=f"{y} vs {x}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
