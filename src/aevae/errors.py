"""User-facing errors: each one is reported as a single line and a non-zero exit."""


class AevaeError(Exception):
    """Base class of errors caused by the user's input, not by a bug."""


class ConfigError(AevaeError, ValueError):
    """A config value is out of range or unknown."""


class DataError(AevaeError):
    """A data file is missing, corrupt or of the wrong shape."""


class TrackingError(AevaeError):
    """The MLflow tracking store cannot be reached."""


class TrainingError(AevaeError):
    """Training cannot go on (a non-finite loss)."""
