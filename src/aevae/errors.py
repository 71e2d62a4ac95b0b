"""User-facing errors: each one is reported as a single line and a non-zero exit."""

import re

# Hydra lists a config group's options one per line, indented, after this header
GROUP_OPTIONS = re.compile(r"^(Available options in '[^']+':)\n((?:\t.*\n?)*)", re.MULTILINE)


class AevaeError(Exception):
    """Base class of errors caused by the user's input, not by a bug."""


class ConfigError(AevaeError, ValueError):
    """A config value is out of range or unknown."""


def require(ok: bool, key: str, message: str) -> None:
    """Raise ConfigError `<key>: <message>` unless `ok` (the schemas' checks of their values)."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


class DataError(AevaeError):
    """A data file is missing, corrupt or of the wrong shape."""


class TrackingError(AevaeError):
    """The MLflow tracking store cannot be reached."""


class TrainingError(AevaeError):
    """Training cannot go on (a non-finite loss)."""


def group_options(message: str) -> str:
    """Hydra's list of a group's options on the header's line: `...: ae, dae, vae` (schemas left out)."""

    def joined(match: re.Match) -> str:
        options = [option for option in match.group(2).split() if not option.endswith("_schema")]
        return f"{match.group(1)} {', '.join(options)}\n"

    return GROUP_OPTIONS.sub(joined, message)


def hydra_message(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, as one line that names the key or option."""
    lines = []
    while exc is not None:
        lines += [line.strip() for line in group_options(str(exc)).splitlines() if line.strip()]
        exc = exc.__cause__
    wanted = [line for line in lines if not line.startswith(("full_key:", "object_type=", "reference_type=", "Error merging override", "Could not override"))]
    overrides = [line for line in lines if line.startswith(("Could not override", "Error merging override"))]
    parts = list(dict.fromkeys((overrides[:1] + wanted[:2]) or lines[:1]))
    return " ".join(parts)
