"""The disentangle stage: how well trained checkpoints separate the known factors of variation of
a data set (sprites). Per model: MIG, DCI and the FactorVAE score of the posterior means of one
split, a latent traversal whose rows are ordered and named by the factor each dimension shares the
most information with; then a Markdown report of the scores per model and beta, beside
published ranges."""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from omegaconf import MISSING
from torch import Tensor

from aevae.config import DataConfig, Dataset, LoggerConfig, validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.errors import DataError, require
from aevae.evaluation.batches import map_batches
from aevae.evaluation.disentanglement import SCORE_NAMES, dci, dimension_factors, factor_vae_score, mig
from aevae.evaluation.latent import traverse
from aevae.evaluation.latent_stats import ACTIVE_UNIT_THRESHOLD, posterior_mean_variance
from aevae.io import plain, write_atomic, write_csv, write_json
from aevae.models import BaseAutoencoder, Capability, load_model
from aevae.reporting.plots import save_image_rows
from aevae.reporting.report import markdown_table
from aevae.run.devices import check_device
from aevae.stages.common import open_stage_run, print_summary

@dataclass
class ScoresConfig:
    mig_bins: int = MISSING  # equal-width bins per code dimension for the mutual information
    dci_train_fraction: float = MISSING  # of the scored images, fit the DCI regressors; the rest test them
    dci_estimators: int = MISSING  # boosting stages of each DCI regressor
    factor_vae_batch: int = MISSING  # images sharing the fixed factor in one vote
    factor_vae_train_votes: int = MISSING
    factor_vae_eval_votes: int = MISSING
    prune_variance: float = MISSING  # the FactorVAE score leaves out dimensions whose codes vary less

    def __post_init__(self) -> None:
        for key in ("mig_bins", "dci_estimators", "factor_vae_train_votes", "factor_vae_eval_votes"):
            require(getattr(self, key) > 0, f"scores.{key}", f"must be > 0, got {getattr(self, key)}")
        require(self.factor_vae_batch >= 2, "scores.factor_vae_batch", f"must be >= 2 (a variance needs two), got {self.factor_vae_batch}")
        require(0 < self.dci_train_fraction < 1, "scores.dci_train_fraction", f"must be in (0, 1), got {self.dci_train_fraction}")
        require(self.prune_variance >= 0, "scores.prune_variance", f"must be >= 0, got {self.prune_variance}")


@dataclass
class PublishedRange:
    metric: str = MISSING  # one of aevae.evaluation.disentanglement.SCORE_NAMES (checked by the stage)
    low: float = MISSING
    high: float = MISSING
    source: str = MISSING  # paper, figure and setting


@dataclass
class DisentangleConfig:
    data: DataConfig = MISSING
    logger: LoggerConfig = MISSING
    models: dict[str, str] = MISSING  # model name -> checkpoint
    split: str = MISSING  # the split whose images are encoded and scored
    scores: ScoresConfig = MISSING
    traversal_steps: int = MISSING
    traversal_range: float = MISSING  # offsets span +-range standard deviations of a dimension's codes
    published: list[PublishedRange] = MISSING  # the report sets these beside ours
    device: str = MISSING
    seed: int = MISSING
    output_dir: str = MISSING
    report: str = MISSING  # the Markdown report
    stage: str = MISSING

    def __post_init__(self) -> None:
        require(len(self.models) > 0, "models", "name at least one checkpoint to score")
        require(self.data.name == Dataset.sprites, "data.name", f"the scores need known factors of variation: use sprites, got {self.data.name}")
        require(self.split in ("train", "val", "test"), "split", f"must be train, val or test, got {self.split!r}")
        require(self.traversal_steps >= 2, "traversal_steps", f"must be >= 2, got {self.traversal_steps}")
        require(self.traversal_range > 0, "traversal_range", f"must be > 0, got {self.traversal_range}")


class Column(NamedTuple):
    heading: str
    format: str


COLUMNS = {  # the report's columns, by metric
    "mig": Column("MIG", ".3f"),
    "dci/disentanglement": Column("DCI disentanglement", ".3f"),
    "dci/completeness": Column("DCI completeness", ".3f"),
    "dci/informativeness": Column("DCI informativeness", ".3f"),
    "factor_vae": Column("FactorVAE score", ".3f"),
    "latent/active_units": Column("active dims", ".1f"),
    "elbo": Column("ELBO (nats)", ".2f"),
}


class Result(NamedTuple):
    """One model's scores and where they came from."""

    metrics: dict[str, float]
    label: str  # the model's variant (vae, beta_vae)
    beta: float | None
    dimensions: list[dict[str, Any]]  # one row per latent dimension, for dimensions.csv
    figure: Path


def group_name(label: str, beta: float | None) -> str:
    """The models that differ only in their seed: `<label>_beta<beta>` (`vae_beta1`)."""
    return label if beta is None else f"{label}_beta{beta:g}"


@torch.no_grad()
def elbo_terms(model: BaseAutoencoder, images: Tensor, batch_size: int) -> dict[str, float]:
    """Mean ELBO, KL and reconstruction term per image (nats), one posterior sample each (the
    `loss_terms` of a model with a likelihood)."""
    sums = {"elbo": 0.0, "kl": 0.0, "recon": 0.0}
    for batch in images.split(batch_size):
        terms = model.loss_terms(batch, batch)
        sums = {name: total + float(terms[name].sum()) for name, total in sums.items()}
    return {name: total / len(images) for name, total in sums.items()}


def middle_sample(factors: np.ndarray) -> int:
    """The sample nearest the middle of every factor's range of indices (ties: the first)."""
    spread = np.maximum(factors.max(0), 1)
    return int(np.abs(factors / spread - 0.5).sum(1).argmin())


@torch.no_grad()
def traversal_figure(
    model: BaseAutoencoder, codes: Tensor, base: int, named: Sequence[tuple[int, int, float]], factor_names: Sequence[str], cfg: Any, path: Path, title: str
) -> Path:
    """Decode one row per named dimension: its code varied around sample `base`'s code by
    +-traversal_range standard deviations, the others fixed; each row titled with the dimension,
    its factor and their normalised mutual information."""
    dims = torch.tensor([dim for dim, _, _ in named])
    paths = traverse(codes[base], dims, codes.std(0), cfg.traversal_steps, cfg.traversal_range)
    rows = list(model.decode(paths.flatten(0, 1)).unflatten(0, paths.shape[:2]))
    titles = [f"z{dim}: {factor_names[k]} ({mi:.2f})" for dim, k, mi in named]
    return save_image_rows(rows, titles, path, title=title)


def score_model(name: str, model: BaseAutoencoder, images: Tensor, factors: np.ndarray, factor_names: Sequence[str], cfg: Any) -> Result:
    """The scores, per-dimension table and traversal figure of one model."""
    batch_size, scores = cfg.data.eval_batch_size, cfg.scores
    codes = map_batches(model.embed, images, batch_size)
    array = codes.double().cpu().numpy()
    gap = mig(array, factors, scores.mig_bins)
    dci_scores = dci(array, factors, seed=cfg.seed, train_fraction=scores.dci_train_fraction, estimators=scores.dci_estimators)
    factor_vae = factor_vae_score(
        array,
        factors,
        seed=cfg.seed,
        batch_size=scores.factor_vae_batch,
        train_votes=scores.factor_vae_train_votes,
        eval_votes=scores.factor_vae_eval_votes,
        prune_variance=scores.prune_variance,
    )
    variance = posterior_mean_variance(codes).cpu().numpy()
    active = np.flatnonzero(variance > ACTIVE_UNIT_THRESHOLD)
    metrics = {
        "mig": gap.score,
        "dci/disentanglement": dci_scores.disentanglement,
        "dci/completeness": dci_scores.completeness,
        "dci/informativeness": dci_scores.informativeness,
        "factor_vae": factor_vae.score,
        "latent/active_units": float(len(active)),
        **{f"mig/{factor}": float(value) for factor, value in zip(factor_names, gap.per_factor)},
        **{f"dci/r2/{factor}": float(value) for factor, value in zip(factor_names, dci_scores.r2)},
    }
    if model.supports(Capability.likelihood):
        torch.manual_seed(cfg.seed)
        metrics |= elbo_terms(model, images, batch_size)
    beta = getattr(model.cfg, "beta", None)  # the KL weight of a model config that has one
    beta = None if beta is None else float(beta)
    dimensions = [
        {
            "model": name,
            "dim": j,
            "mean_variance": f"{variance[j]:.6g}",
            **{f"mi/{factor}": f"{gap.normalized_mi[j, k]:.4f}" for k, factor in enumerate(factor_names)},
            **{f"importance/{factor}": f"{dci_scores.importance[j, k]:.4f}" for k, factor in enumerate(factor_names)},
        }
        for j in range(array.shape[1])
    ]
    shown = active if len(active) else variance.argmax(keepdims=True)  # every unit collapsed: the busiest one
    named = dimension_factors(gap.normalized_mi, shown)
    path = Path(cfg.output_dir) / "figures" / f"{name}_traversals.png"
    title = f"{name}: one active dimension per row, named by its factor (normalised MI)"
    figure = traversal_figure(model, codes, middle_sample(factors), named, factor_names, cfg, path, title)
    return Result(metrics, str(model.cfg.label), beta, dimensions, figure)


class Group(NamedTuple):
    """Models that differ only in their seed."""

    label: str
    beta: float | None
    stats: dict[str, tuple[float, float, int]]  # metric -> mean, std (n - 1), number of models


def group_metrics(results: Mapping[str, Result]) -> dict[str, Group]:
    """The models grouped by label and beta (`<label>_beta<beta>`), ordered by beta then label."""
    members: dict[str, list[Result]] = {}
    for result in sorted(results.values(), key=lambda r: (-1.0 if r.beta is None else r.beta, r.label)):
        members.setdefault(group_name(result.label, result.beta), []).append(result)
    groups = {}
    for name, group in members.items():
        values = {metric: [m.metrics[metric] for m in group] for metric in group[0].metrics}
        stats = {metric: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for metric, v in values.items()}
        groups[name] = Group(group[0].label, group[0].beta, stats)
    return groups


def _beta(beta: float | None) -> str:
    return "" if beta is None else f"{beta:g}"


def _mean_std(stats: tuple[float, float, int], form: str) -> str:
    mean, std, n = stats
    return f"{mean:{form}} ± {std:{form}}" if n > 1 else f"{mean:{form}}"


def render_report(results: Mapping[str, Result], factor_names: Sequence[str], cfg: Any, n_images: int) -> str:
    """The study's Markdown report."""
    groups = group_metrics(results)
    first = next(iter(results.values()))
    columns = [metric for metric in COLUMNS if metric in first.metrics]
    scores = cfg.scores
    lines = [
        "# Sprites: disentanglement of VAE and beta-VAE",
        "",
        f"Codes: the posterior means of the {n_images:,} {cfg.split} images of `{cfg.data.name}` (docs/sprites.md). "
        f"Every score is in [0, 1], higher is more disentangled. MIG (Chen et al. 2018): mutual information from "
        f"{scores.mig_bins} equal-width bins per dimension. DCI (Eastwood & Williams 2018): importances of "
        f"gradient-boosted regression trees ({scores.dci_estimators} stages), one per factor, fit on "
        f"{scores.dci_train_fraction:.0%} of the images; informativeness is their mean R² on the rest. "
        f"FactorVAE score (Kim & Mnih 2018): "
        f"{scores.factor_vae_train_votes} + {scores.factor_vae_eval_votes} votes of {scores.factor_vae_batch} images, "
        f"dimensions whose codes vary less than {scores.prune_variance} left out. Active dims: posterior means varying "
        f"more than {ACTIVE_UNIT_THRESHOLD} (Burda et al. 2015). ELBO: nats per image.",
        "",
        "## Scores per model and beta (mean ± std over seeds)",
        "",
        markdown_table(
            ["model", "beta", "runs", *(COLUMNS[m].heading for m in columns)],
            [[g.label, _beta(g.beta), str(g.stats[columns[0]][2]), *(_mean_std(g.stats[m], COLUMNS[m].format) for m in columns)] for g in groups.values()],
        ),
        "",
        "## MIG per factor (mean over seeds)",
        "",
        markdown_table(
            ["model", "beta", *factor_names], [[g.label, _beta(g.beta), *(f"{g.stats[f'mig/{f}'][0]:.3f}" for f in factor_names)] for g in groups.values()]
        ),
        "",
        "## Every run",
        "",
        markdown_table(
            ["run", "model", "beta", *(COLUMNS[m].heading for m in columns)],
            [[name, r.label, _beta(r.beta), *(f"{r.metrics[m]:{COLUMNS[m].format}}" for m in columns)] for name, r in results.items()],
        ),
        "",
        "## Beside published ranges",
        "",
        "Context, not a target: the published models trained on dSprites itself (64x64, 737,280 images, 300k steps).",
        "",
        markdown_table(
            ["score", "ours (lowest to highest run)", "published", "source"],
            [
                [
                    COLUMNS[p.metric].heading,
                    f"{min(r.metrics[p.metric] for r in results.values()):.2f} to {max(r.metrics[p.metric] for r in results.values()):.2f}",
                    f"{p.low:g} to {p.high:g}",
                    p.source,
                ]
                for p in cfg.published
            ],
        ),
        "",
        "## Latent traversals",
        "",
        f"Each row varies one active dimension by ±{cfg.traversal_range:g} standard deviations of its codes around "
        f"the code of the {cfg.split} image nearest the middle of every factor's range, the others fixed. Rows are "
        "ordered and named by the factor the dimension shares the most information with (I(z; v) / H(v) in brackets).",
        "",
    ]
    base = Path(cfg.report).parent
    for name, result in results.items():
        lines += [f"![{name}]({Path(os.path.relpath(result.figure, base)).as_posix()})", ""]
    return "\n".join(lines)


def run(cfg: DisentangleConfig) -> dict[str, float]:
    """Score every checkpoint of `cfg.models` on `cfg.split`. Writes `metrics.json`
    (`<name>/<score>`, `<name>/mig/<factor>`, and `<label>_beta<beta>/<score>/{mean,std}` over the
    models that differ only in their seed), `dimensions.csv` (per latent dimension: normalised
    mutual information and DCI importance of each factor) and `figures/<name>_traversals.png`
    under `cfg.output_dir`, and the report `cfg.report`. MLflow: the stage's run, with one run per
    model nested under it. Returns the metrics."""
    cfg = validate(cfg)
    for published in cfg.published:
        require(published.metric in SCORE_NAMES, "published", f"unknown score {published.metric!r}; expected one of {', '.join(SCORE_NAMES)}")
    device = check_device("device", cfg.device)
    for checkpoint in cfg.models.values():
        if not Path(checkpoint).is_file():
            raise DataError(f"{checkpoint}: checkpoint not found (train the model first)")
    splits = load_or_prepare(cfg.data)
    if not splits.factor_names:
        raise DataError(f"{cfg.data.prepared or cfg.data.name}: no factors of variation recorded (prepare it again)")
    models = {name: load_model(checkpoint, map_location=device) for name, checkpoint in cfg.models.items()}
    for name, model in models.items():
        if model.image_shape != splits.image_shape:
            raise DataError(f"{cfg.models[name]}: model expects images {model.image_shape}, data has {splits.image_shape}")
    images = InMemoryDataModule(splits, cfg.data, seed=cfg.seed).split(cfg.split)[0].to(device)
    factors = splits.factors[cfg.split].numpy()
    output_dir = Path(cfg.output_dir)
    with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, params=plain(cfg)) as stage_run:
        results = {name: score_model(name, model, images, factors, splits.factor_names, cfg) for name, model in models.items()}
        for name, result in results.items():
            with open_stage_run(cfg, stage=cfg.stage, dataset=cfg.data.name, label=name, parent=stage_run.run_id) as model_run:
                model_run.log_metrics(result.metrics)
                model_run.log_artifact(result.figure, "figures")
        metrics = {f"{name}/{key}": value for name, result in results.items() for key, value in result.metrics.items()}
        for group_key, group in group_metrics(results).items():
            for metric in (*SCORE_NAMES, "latent/active_units", "elbo"):
                if metric in group.stats:
                    metrics |= {f"{group_key}/{metric}/mean": group.stats[metric][0], f"{group_key}/{metric}/std": group.stats[metric][1]}
        text = render_report(results, splits.factor_names, cfg, len(images))
        outputs = [
            write_json(output_dir / "metrics.json", metrics),
            write_csv(output_dir / "dimensions.csv", [row for result in results.values() for row in result.dimensions]),
            write_atomic(cfg.report, lambda tmp: tmp.write_text(text)),
        ]
        stage_run.log_metrics(metrics)
        for path in outputs:
            stage_run.log_artifact(path)
    print_summary(f"{cfg.stage} done", metrics, output_dir, stage_run)
    return metrics
