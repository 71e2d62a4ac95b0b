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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from aevae.config import studies, study
from aevae.run.code_deps import stage_code
from aevae.config import register_configs, validate
from aevae.errors import ConfigError, hydra_message, require
from aevae.io import write_atomic
from aevae.stages import schema
from aevae.workspace import best_checkpoint

log = logging.getLogger(__name__)

HEADER = "# Written by the configure stage from {params} (edit that, not this): the overrides of {stage}."
CODE_HEADER = "# The code it runs (md5); DVC re-runs the stage when one of these changes:"


@dataclass
class ConfigureConfig:
    params: str = MISSING  # the study's params.yaml
    study: str = MISSING  # default (the root study) | reference | sprites: which study's params.yaml
    models_dir: str = MISSING  # the trained models' (or recipes' results') <name>/ folders, which later stages read
    output_dir: str = MISSING  # the overrides files
    stage: str = MISSING

    def __post_init__(self) -> None:
        valid = [studies.DEFAULT_STUDY, *studies.STUDIES]
        require(self.study in valid, "study", f"not a study: {self.study!r}; valid: {', '.join(valid)}")


def named(origin: dict[str, str], key: str) -> str:
    """The params.yaml key that config key `key` was set from (itself, when none)."""
    return origin.get(key, key)


def composed(config_name: str, overrides: list[str], origin: dict[str, str]) -> DictConfig:
    """The config composed with `overrides`, with Hydra's node (its `runtime.choices` name the
    options composed); a failure names the params.yaml key that the failing override came from
    (`origin` maps an override's key to it; a key not in it is its own)."""
    register_configs(schema(config_name))  # the stage's schema, found by its name
    try:
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        choices = [o for o in overrides if "." not in o.split("=")[0]]
        trials = [[choice] for choice in choices] + [choices + [o] for o in overrides if o not in choices]
        for trial in trials:  # the first override that fails on its own (with the options chosen)
            try:
                compose(config_name=config_name, overrides=trial)
            except (HydraException, OmegaConfBaseException) as single:
                raise ConfigError(f"params.yaml {named(origin, trial[-1].split('=')[0].lstrip('+'))}: {hydra_message(single)}") from exc
        raise ConfigError(f"params.yaml: {hydra_message(exc)}") from exc
    return cfg


def with_values(cfg: DictConfig, values: list[str], origin: dict[str, str]) -> DictConfig:
    """`cfg` with each override of `values` (`key=value`, a key `cfg` holds) set as Hydra sets a
    value override once the defaults are composed: its value parsed by Hydra's override grammar,
    merged in with `OmegaConf.update`."""
    for override in OverridesParser.create().parse_overrides(list(values)):
        try:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"params.yaml {named(origin, override.key_or_group)}: Error merging override {override.input_line} {hydra_message(exc)}") from exc
    return cfg


def checked(cfg: DictConfig, origin: dict[str, str]) -> DictConfig:
    """`cfg` (with Hydra's node), once its stage's part validates; a failure names the params.yaml key."""
    stage_cfg = cfg.copy()
    with open_dict(stage_cfg):
        del stage_cfg["hydra"]
    try:
        validate(stage_cfg)
    except ConfigError as exc:
        key, _, message = str(exc).partition(": ")
        raise ConfigError(f"params.yaml {named(origin, key)}: {message}") from exc
    return cfg


Item = str | tuple[str, str, Any]  # an override as is, or (config key, params.yaml key, value)


def with_origins(items: list[Item], origin: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The overrides of `items`, and for each config key set from params.yaml the key there
    (added to `origin`), so that an error names the key the user wrote."""
    origin = {} if origin is None else origin
    overrides = []
    for item in items:
        if isinstance(item, str):
            overrides.append(item)
        else:
            key, where, value = item
            origin[key] = where
            overrides.append(f"{key}={study.override_value(value)}")
    return overrides, origin


Stages = dict[str, tuple[str, list[str], DictConfig]]  # `<stage>[/<model>]` -> (config name, overrides, composed config)


def composed_stages(stages: dict[str, tuple[str, list[Item]]]) -> Stages:
    """Each stage of `stages` (its config name and override items) with its overrides and its
    config composed with them and checked."""
    result = {}
    for stage, (config_name, items) in stages.items():
        overrides, origin = with_origins(items)
        result[stage] = (config_name, overrides, checked(composed(config_name, overrides, origin), origin))
    return result


def training_stage(params: study.StudyParams, name: str, one_class: bool = False) -> tuple[str, list[str], DictConfig]:
    """Model `name`'s training stage (with `one_class`, its anomaly stage: the data set's
    `epochs.<data>.anomaly` instead of its own max_epochs): its config name, its overrides, and
    its config, composed once with the options chosen, the entry's keys then set in the sections
    that hold them, and checked."""
    config_name, data = ("anomaly" if one_class else "train"), params.data.name.value
    keys = study.entry_keys(params, name)
    choices = [(choice, f"models.{name}.{choice}", keys.pop(choice)[1]) for choice in study.CHOICES if choice in keys]
    base, origin = with_origins([("data", "data.name", data), ("trainer", "trainer", params.trainer), *choices])
    cfg = composed(config_name, base, origin)
    if one_class:
        keys["max_epochs"] = (f"epochs.{data}.anomaly", params.epochs[data].anomaly)
    entry = [(f"{study.section_of(key, cfg, where, name)}.{key}", where, value) for key, (where, value) in keys.items()]
    items: list[Item] = [("seed", "seed", params.seed), ("model.label", f"models.{name}", name), *entry]
    if one_class:
        items += [("cases", "anomaly.protocol", params.anomaly.protocol), ("normal_classes", "anomaly.normal_classes", params.anomaly.normal_classes), ("likelihood.samples", "anomaly.iw_samples", params.anomaly.iw_samples), ("pca_components", "pca_components", params.pca_components)]
    values, origin = with_origins(items, origin)
    return config_name, base + values, checked(with_values(cfg, values, origin), origin)


def stage_overrides(params: study.StudyParams, models_dir: str) -> Stages:
    """`<stage>[/<model>]` -> (its entry point's config name, its overrides, its config composed
    once and checked: a bad value names the params.yaml key it came from)."""
    data, seed, pca = ("data", "data.name", params.data.name.value), ("seed", "seed", params.seed), ("pca_components", "pca_components", params.pca_components)
    checkpoints = [f"+models.{name}={best_checkpoint(Path(models_dir) / name)}" for name in params.models]
    trainings: Stages = {f"train/{name}": training_stage(params, name) for name in params.models}
    trainings |= {f"anomaly/{name}": training_stage(params, name, one_class=True) for name in params.anomaly.models}
    others: dict[str, list[Item]] = {
        "prepare": params.data.overrides(),
        "classifier": [data, ("trainer", "trainer", params.trainer), ("trainer.max_epochs", "classifier.max_epochs", params.classifier.max_epochs), seed],
        "evaluate": [data, *checkpoints, f"generation.classifier={best_checkpoint(Path(models_dir) / 'classifier')}", ("likelihood.samples", "evaluate.iw_samples", params.evaluate.iw_samples), pca, seed],
        "probe": [data, *checkpoints, ("labels_per_class", "probe.labels_per_class", params.probe.labels_per_class), ("repeats", "probe.repeats", params.probe.repeats), pca, seed],
        "report": [("dataset", "data.name", params.data.name.value), ("models", "models", list(params.models)), ("one_class_models", "anomaly.models", params.anomaly.models)],
    }
    return trainings | composed_stages({name: (name, items) for name, items in others.items()})


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def stages_code(root: Path, stages: Stages) -> dict[str, list[Path]]:
    """`<stage>[/<model>]` -> the files its entry point reads as code or config, run with its
    overrides: the config options it composes, the model kind it trains, and for a stage that
    loads the trained models (its config maps `models` to checkpoints) the kinds of the models
    that the study's stages train (aevae.run.code_deps)."""
    trained = {cfg.model.name for _, _, cfg in stages.values() if "model" in cfg}
    code = {}
    for stage, (name, _, cfg) in stages.items():
        kinds = ({cfg.model.name} if "model" in cfg else set()) | (trained if isinstance(cfg.get("models"), DictConfig) else set())
        code[stage] = stage_code(root, name, OmegaConf.to_container(cfg.hydra.runtime.choices), kinds)
    return code


def other_study_overrides(name: str, params_file: str, models_dir: str) -> Stages:
    """The stages of study `name` (aevae.config.studies) with their overrides and composed
    configs, every one checked as the default study's are."""
    return composed_stages(studies.load(name, params_file).stages(models_dir))


def run(cfg: ConfigureConfig) -> dict[str, float]:
    """Check `cfg.params` (of study `cfg.study`); write every stage's overrides file under
    `cfg.output_dir` (removing the files of models no longer listed). Returns no metrics."""
    cfg = validate(cfg)
    if cfg.study == studies.DEFAULT_STUDY:
        params = study.load(cfg.params)
        stages = stage_overrides(params, cfg.models_dir)
        summary = f"{len(params.models)} models ({', '.join(params.models)}), "
    else:
        stages, summary = other_study_overrides(cfg.study, cfg.params, cfg.models_dir), ""
    root, output_dir = Path.cwd(), Path(cfg.output_dir)
    code = stages_code(root, stages)
    for stage, (_, overrides, _) in stages.items():
        lines = [f"# {path} {md5(root / path)}" for path in code[stage]]
        text = "\n".join([HEADER.format(params=cfg.params, stage=stage.replace("/", "@")), *overrides, CODE_HEADER, *lines]) + "\n"
        target = output_dir / f"{stage}.txt"
        if not target.is_file() or target.read_text() != text:
            write_atomic(target, lambda tmp, text=text: tmp.write_text(text))
    written = {output_dir / f"{stage}.txt" for stage in stages}
    for stale in sorted(set(output_dir.rglob("*.txt")) - written):
        log.info("%s: its model is no longer in %s; removed", stale, cfg.params)
        stale.unlink()
    print(f"{cfg.stage} done: {summary}{len(stages)} stages", flush=True)
    return {}
