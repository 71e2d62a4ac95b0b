"""What a run prints: the libraries' set-up chatter and known-harmless warnings are silenced, so
that what remains (the stage summaries, real warnings, errors) is what a user needs. A warning
prints as one line, once. Under `dvc repro` the stages' own INFO lines (one per anomaly class,
the probe's table) are silenced too: the tables are in the report."""

import logging
import os
import sys
import warnings
from pathlib import Path

QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "mlflow", "alembic")
QUIET_UNDER_DVC = ("aevae.stages",)  # progress lines and tables; warnings still show
HARMLESS_WARNINGS = (
    ".*LeafSpec.*",  # a deprecation inside Lightning's own code
    ".*litlogger.*",  # Lightning's advertisement of its hosted logger
    ".*Checkpoint directory .* exists and is not empty.*",  # the resume record lives there
    ".*is smaller than the logging interval.*",  # small data sets: epoch metrics are logged anyway
    ".*does not have many workers.*",  # batches are sliced from memory: no workers by design
    ".*Couldn't infer the batch indices.*",
)
SHOWN_WARNINGS: set[tuple[str, str]] = set()  # (category, first line) of every warning printed


SILENT_STORE_ERRORS = "mlflow.store.db.utils"


def quiet_libraries() -> None:
    """Raise the libraries' loggers (under DVC, the stages' too) to WARNING and ignore the
    harmless warnings (in this process; Lightning's spawned ranks call it again from
    `callbacks.FitOutputs.setup`)."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its level when imported
    quiet = QUIET_LOGGERS + (QUIET_UNDER_DVC if os.environ.get("DVC_STAGE") else ())
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    # a store that cannot be written is reported in one line by `aevae.records.tracking.open_run`; MLflow
    # would first log the whole SQLAlchemy error (80-odd lines)
    logging.getLogger(SILENT_STORE_ERRORS).setLevel(logging.CRITICAL)
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None, line: str | None = None) -> None:
    """`warnings.showwarning` on one line, `warning: <Category>: <first line> (<file>:<line>)`,
    each at most once per process (scikit-learn's ConvergenceWarning is 8 lines, once per fit)."""
    first = next((part.strip() for part in str(message).splitlines() if part.strip()), "")
    if (category.__name__, first) in SHOWN_WARNINGS:
        return
    SHOWN_WARNINGS.add((category.__name__, first))
    print(f"warning: {category.__name__}: {first} ({Path(filename).name}:{lineno})", file=file or sys.stderr, flush=True)


def one_line_warnings() -> None:
    """Print every warning of this process with `show_warning`."""
    warnings.showwarning = show_warning


def duration(seconds: float) -> str:
    """`45s`, `1m40s`, `2h05m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
