"""The configure stage, the study's first: check `params.yaml` and write, for every stage that
follows, the Hydra overrides it runs with and the code it runs.

Each file `<output_dir>/<stage>[/<model>].txt` holds one override per line (the entry points
read it as `@<file>`), then, as comments, the md5 of every source and config file that the
stage's entry point can read. DVC re-runs a stage exactly when its file changes: when a value
it reads or code it imports changes, and for no other edit. A bad key or value stops here, in
one line naming it, before DVC has removed any stage's outputs.
"""

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from aevae import study
from aevae.code_deps import entry_point_code
from aevae.config import register_configs, validate
from aevae.errors import ConfigError, hydra_message
from aevae.io import write_atomic
from aevae.workspace import best_checkpoint

log = logging.getLogger(__name__)

HEADER = "# Written by the configure stage from params.yaml (edit that, not this): the overrides of {stage}."
CODE_HEADER = "# The code it runs (md5); DVC re-runs the stage when one of these changes:"


def compose_checked(config_name: str, overrides: list[str], origin: Callable[[str], str]) -> Any:
    """The config composed with `overrides` and validated; a failure names the params.yaml key
    that the failing override came from (`origin` maps an override's key to it)."""
    try:
        cfg = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        choices = [o for o in overrides if "." not in o.split("=")[0]]
        trials = [[choice] for choice in choices] + [choices + [o] for o in overrides if o not in choices]
        for trial in trials:  # the first override that fails on its own (with the options chosen)
            try:
                compose(config_name=config_name, overrides=trial)
            except (HydraException, OmegaConfBaseException) as single:
                raise ConfigError(f"params.yaml {origin(trial[-1].split('=')[0].lstrip('+'))}: {hydra_message(single)}") from exc
        raise ConfigError(f"params.yaml: {hydra_message(exc)}") from exc
    try:
        validate(cfg)
    except ConfigError as exc:
        key, _, message = str(exc).partition(": ")
        raise ConfigError(f"params.yaml {origin(key)}: {message}") from exc
    return cfg


def training_overrides(params: study.StudyParams, name: str, one_class: bool = False) -> tuple[list[str], dict[str, str]]:
    """The train config's overrides of model `name` (for its one-class models: with the data
    set's `epochs.<data>.anomaly` instead of its own max_epochs), and for each override key the
    params.yaml key it came from."""
    keys = study.entry_keys(params, name)
    choices = [f"{choice}={study.override_value(keys.pop(choice)[1])}" for choice in study.CHOICES if choice in keys]
    base = [f"data={params.data.name.value}", f"trainer={params.trainer}", *choices]
    composed = compose_checked("train", base, lambda key: f"models.{name}.{key}" if key in study.CHOICES else key)
    origin = {"data": "data.name", "trainer": "trainer", "model": f"models.{name}.model", "net": f"models.{name}.net"}
    overrides = [*base, f"seed={params.seed}", f"model.label={name}"]
    if one_class:
        data = params.data.name.value
        keys["max_epochs"] = (f"epochs.{data}.anomaly", params.epochs[data].anomaly)
    for key, (where, value) in keys.items():
        target = f"{study.section_of(key, composed, where, name)}.{key}"
        overrides.append(f"{target}={study.override_value(value)}")
        origin[target] = where
    return overrides, origin


def stage_overrides(params: study.StudyParams, models_dir: str) -> dict[str, tuple[str, list[str]]]:
    """`<stage>[/<model>]` -> (its entry point's config name, its overrides), every one checked."""
    data = f"data={params.data.name.value}"
    checkpoints = [f"+models.{name}={best_checkpoint(Path(models_dir) / name)}" for name in params.models]
    pca = f"pca_components={study.override_value(params.pca_components)}"
    stages: dict[str, tuple[str, list[str]]] = {"prepare": ("prepare", [data, f"data.split_seed={params.data.split_seed}"])}
    for name in params.models:
        train, origin = training_overrides(params, name)
        stages[f"train/{name}"] = ("train", train)
        compose_checked("train", train, lambda key, origin=origin: origin.get(key, key))
    for name in params.anomaly.models:
        anomaly, origin = training_overrides(params, name, one_class=True)
        anomaly += [
            f"cases={params.anomaly.protocol}",
            f"normal_classes={study.override_value(params.anomaly.normal_classes)}",
            f"likelihood.samples={params.anomaly.iw_samples}",
            pca,
        ]
        stages[f"anomaly/{name}"] = ("anomaly", anomaly)
        compose_checked("anomaly", anomaly, lambda key, origin=origin: origin.get(key, f"anomaly.{key}"))
    stages["classifier"] = ("classifier", [data, f"trainer={params.trainer}", f"trainer.max_epochs={params.classifier.max_epochs}", f"seed={params.seed}"])
    stages["evaluate"] = ("evaluate", [data, *checkpoints, f"generation.classifier={best_checkpoint(Path(models_dir) / 'classifier')}", f"likelihood.samples={params.evaluate.iw_samples}", pca, f"seed={params.seed}"])
    stages["probe"] = ("probe", [data, *checkpoints, f"labels_per_class={study.override_value(params.probe.labels_per_class)}", f"repeats={params.probe.repeats}", pca, f"seed={params.seed}"])
    stages["report"] = ("report", [f"dataset={params.data.name.value}", f"models={study.override_value(list(params.models))}", f"one_class_models={study.override_value(params.anomaly.models)}"])
    for name in ("prepare", "classifier", "evaluate", "probe", "report"):
        config_name, overrides = stages[name]
        compose_checked(config_name, overrides, lambda key, name=name: f"{name}.{key}" if name in ("classifier", "evaluate", "probe") else key)
    return stages


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def run(cfg: Any) -> dict[str, float]:
    """Check `cfg.params`; write every stage's overrides file under `cfg.output_dir` (removing
    the files of models no longer listed). Returns no metrics."""
    validate(cfg)
    params = study.load(cfg.params)
    register_configs()  # the configs of the stages that follow, which it composes
    stages = stage_overrides(params, cfg.models_dir)
    root, output_dir = Path.cwd(), Path(cfg.output_dir)
    code: dict[str, list[str]] = {}
    for stage, (config_name, overrides) in stages.items():
        if config_name not in code:
            code[config_name] = [f"# {path} {md5(root / path)}" for path in entry_point_code(root, root / "pipelines" / f"{config_name}.py")]
        text = "\n".join([HEADER.format(stage=stage.replace("/", "@")), *overrides, CODE_HEADER, *code[config_name]]) + "\n"
        target = output_dir / f"{stage}.txt"
        if not target.is_file() or target.read_text() != text:
            write_atomic(target, lambda tmp, text=text: tmp.write_text(text))
    written = {output_dir / f"{stage}.txt" for stage in stages}
    for stale in sorted(set(output_dir.rglob("*.txt")) - written):
        log.info("%s: its model is no longer in params.yaml; removed", stale)
        stale.unlink()
    print(f"{cfg.stage} done: {len(params.models)} models ({', '.join(params.models)}), {len(stages)} stages", flush=True)
    return {}
