"""The reference report: our numbers beside the published ones, one row per published number,
then each recipe's protocol and every metric. Reads what the reference stage wrote."""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aevae.errors import DataError
from aevae.reporting.report import markdown_table


class RecipeResult(NamedTuple):
    protocol: dict[str, Any]  # protocol.json
    metrics: dict[str, float]  # metrics.json: <name>/mean, <name>/std, <name>/seed_<s>
    figures: list[Path]  # figures/seed_<s>/*.png of the budget's first seed, where the recipe draws any


def load_result(directory: str | Path) -> RecipeResult:
    """The protocol and metrics the reference stage wrote to `directory`."""
    directory = Path(directory)
    files = [directory / "protocol.json", directory / "metrics.json"]
    for path in files:
        if not path.is_file():
            raise DataError(f"{path} not found (run the reference stage of this recipe first)")
    protocol, metrics = (json.loads(path.read_text()) for path in files)
    figures = sorted((directory / "figures" / f"seed_{protocol['budget']['seeds'][0]}").glob("*.png"))
    return RecipeResult(protocol, metrics, figures)


def spread(mean: float, std: float) -> str:
    """The std to two digits; 0 where it is rounding noise (identical values across seeds)."""
    return f"{0 if std <= 1e-9 * abs(mean) else std:.2g}"


def ours(metrics: Mapping[str, float], metric: str, seeds: int) -> str:
    """`mean ± std (n seeds)`, or `mean (1 seed)`."""
    mean, std = metrics[f"{metric}/mean"], metrics[f"{metric}/std"]
    return f"{mean:.4g} ± {spread(mean, std)} ({seeds} seeds)" if seeds > 1 else f"{mean:.4g} (1 seed)"


def verdict(value: float, published: Mapping[str, Any]) -> str:
    """Whether `value` reaches the target (or, without one, the published number), and by how much."""
    goal = published.get("target")
    goal = published["value"] if goal is None else goal
    gap = value - goal if published["better"] == "higher" else goal - value
    return f"reached ({gap:+.3g})" if gap >= 0 else f"missed by {-gap:.3g}"


def budget_text(budget: Mapping[str, Any]) -> str:
    limit = f", {budget['limit_train_batches']} batches/epoch" if budget.get("limit_train_batches") else ""
    k = f", k={budget['iw_samples']}" if budget.get("iw_samples") else ""
    return f"{budget['name']}: {budget['epochs']} epochs, batch {budget['batch_size']}{limit}{k}"


def recipe_name(protocol: Mapping[str, Any]) -> str:
    return f"{protocol['recipe']} ({protocol['model']})"


def comparison_table(results: Sequence[RecipeResult]) -> str:
    """One row per published number: ours beside it, the verdict against its target, the budget,
    device and wall time of our run."""
    header = ["recipe", "metric", "published", "ours", "target", "budget", "device", "wall time"]
    rows = []
    for protocol, metrics, _ in results:
        seeds = len(protocol["budget"]["seeds"])
        for published in protocol["published"]:
            metric = published["metric"]
            target = "" if published.get("target") is None else f"{published['target']:.4g}: "
            cells = [
                recipe_name(protocol),
                f"`{metric}`",
                f"{published['value']:.4g} ({published['source']})",
                ours(metrics, metric, seeds),
                target + verdict(metrics[f"{metric}/mean"], published),
                budget_text(protocol["budget"]),
                protocol["device"],
                f"{protocol['wall_seconds'] / 60:.1f} min",
            ]
            rows.append([cell.replace("|", "/") for cell in cells])
    return markdown_table(header, rows) + "\n"


SAMPLE_METRICS = {  # the semi-supervised recipes' samples, beside their classifier
    "test/accuracy": "q(y|x) test accuracy",
    "gen/accuracy": "samples classified as asked",
    "gen/nearest_labelled": "samples nearest a labelled image",
    "gen/nearest_random": "the same, random same-class sets",
}


def samples_table(results: Sequence[RecipeResult]) -> str:
    """One row per recipe that generates the class asked for: its classifier's test accuracy, the
    share of its samples the judge sees as the class asked for, and the share whose nearest
    training image is a labelled one beside that share for random same-class sets (chance);
    empty when no recipe does."""
    rows = [
        [recipe_name(protocol), *(ours(metrics, metric, len(protocol["budget"]["seeds"])) for metric in SAMPLE_METRICS)]
        for protocol, metrics, _ in results
        if all(f"{metric}/mean" in metrics for metric in SAMPLE_METRICS)
    ]
    return markdown_table(["recipe", *SAMPLE_METRICS.values()], rows) + "\n" if rows else ""


def metrics_table(protocol: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
    """Every metric of a recipe: mean ± std over seeds and the value of each seed."""
    seeds = protocol["budget"]["seeds"]
    names = sorted(name.removesuffix("/mean") for name in metrics if name.endswith("/mean"))
    header = ["metric", "mean ± std", *(f"seed {seed}" for seed in seeds)]
    rows = []
    for name in names:
        mean = metrics[f"{name}/mean"]
        cells = [f"`{name}`", f"{mean:.4g} ± {spread(mean, metrics[f'{name}/std'])}"]
        cells += [f"{metrics[f'{name}/seed_{seed}']:.4g}" for seed in seeds]
        rows.append(cells)
    return markdown_table(header, rows) + "\n"


def figure_links(figures: Sequence[Path], report_dir: Path) -> list[str]:
    """Markdown images of `figures` (in `figures/seed_<s>`), linked relative to the report's folder."""
    return [f"![{path.stem}, {path.parent.name.replace('_', ' ')}]({os.path.relpath(path, report_dir)})\n" for path in figures]


def render_reference(results: Sequence[RecipeResult], title: str, report_dir: str | Path) -> str:
    """The whole Markdown report, to be written in `report_dir`."""
    parts = [
        f"# {title}\n",
        "Each published number beside ours on the same task; ours is the mean ± sample std over "
        "the seeds of the budget named in the row (the recipe's `full` budget is the paper's).\n",
        comparison_table(results),
    ]
    samples = samples_table(results)
    if samples:
        parts += [
            "\n## Samples of the class asked for\n",
            "Conditional samples of each semi-supervised recipe: the share the judge sees as the "
            "class asked for, and the share whose nearest training image (L2 in pixels) is one of the "
            "labelled images, beside the same share for random sets of as many training images of "
            "the same classes (what samples that recall no image give).\n",
            samples,
        ]
    for protocol, metrics, figures in results:
        parts += [
            f"\n## {recipe_name(protocol)}\n",
            f"Task `{protocol['task']}` on `{protocol['data']}`. {protocol['protocol']}\n",
            f"Budget {budget_text(protocol['budget'])}, seeds {protocol['budget']['seeds']}, "
            f"learning rate {protocol['budget']['lr']:g} ({protocol['budget']['lr_schedule']}); "
            f"{protocol['device']}, {protocol['wall_seconds'] / 60:.1f} min.\n",
            metrics_table(protocol, metrics),
            *figure_links(figures, Path(report_dir)),
        ]
    return "\n".join(parts)
