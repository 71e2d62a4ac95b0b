"""The entry points' one behaviour: compose the Hydra config (once, with the stage's schema),
run the stage, and turn a user's mistake (a bad override, value or file) into one line
`error: ...` and exit status 2.

Importing it ties the process to the one that started it (`aevae.run.ownership.end_with_parent`)
before anything slow is imported: every entry point imports it first."""

from aevae.run.ownership import end_with_parent

end_with_parent()

import errno
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from aevae.config import register_configs
from aevae.errors import AevaeError, hydra_message
from aevae.run.logs import one_line_warnings, quiet_libraries
from aevae.stages import schema

EXIT_USER_ERROR = 2
TRACEBACK_VARIABLE = "AEVAE_TRACEBACK"  # set (to 1): a failing stage shows the full traceback, not one line


def fail(message: str) -> None:
    """Print `error: <message>` on one line and exit with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def os_error_message(exc: OSError) -> str:
    """A file-system failure (disk full, read-only or missing folder) as `<path>: <reason>; <what to do>`."""
    path = exc.filename or "a file"
    hint = {errno.ENOSPC: "free disk space and run again", errno.EACCES: "make it writable or choose another output_dir", errno.EROFS: "choose a writable output_dir"}
    return f"{path}: {exc.strerror or exc}; {hint.get(exc.errno, 'check the path and run again')} (set {TRACEBACK_VARIABLE}=1 for the traceback)"


def expand_override_files(args: list[str]) -> list[str]:
    """`@<file>` arguments replaced by the file's lines (one override each; blank lines and
    `#` comments left out), as the configure stage writes them for `dvc repro`."""
    expanded = []
    for arg in args:
        if not arg.startswith("@"):
            expanded.append(arg)
            continue
        path = Path(arg[1:])
        if not path.is_file():
            fail(f"{path}: overrides file not found (`dvc repro` writes it in its configure stage)")
        expanded += [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return expanded


def main(stage: Callable[[DictConfig], Any], config_name: str) -> None:
    """Run `stage(cfg)` as a Hydra application with `conf/<config_name>.yaml` (its schema: the
    stage's, found by the name) and the command line's overrides (`@<file>`: those of a file). A
    train stage's `objective` metric goes back to Hydra's sweeper. An unknown key, a wrong type
    or an unknown choice fails in one line with status 2: Hydra raises it (HYDRA_FULL_ERROR)
    rather than printing it, before it creates any folder."""
    register_configs(schema(config_name))
    quiet_libraries()
    one_line_warnings()
    conf_dir = Path(sys.argv[0]).resolve().parents[1] / "conf"
    sys.argv[1:] = expand_override_files(sys.argv[1:])
    os.environ["HYDRA_FULL_ERROR"] = "1"

    def task(cfg: DictConfig) -> Any:
        try:
            result = stage(cfg)
        except (AevaeError, OSError) as exc:
            if os.environ.get(TRACEBACK_VARIABLE):
                raise
            fail(str(exc) if isinstance(exc, AevaeError) else os_error_message(exc))
        objective = cfg.get("objective")
        return result[objective] if objective and isinstance(result, dict) and objective in result else None

    try:
        hydra.main(version_base="1.3", config_path=str(conf_dir), config_name=config_name)(task)()
    except (HydraException, OmegaConfBaseException) as exc:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        fail(hydra_message(exc))
    finally:
        # The objects left (torch, Lightning, MLflow and their modules) are freed at exit anyway:
        # frozen, the interpreter's exit skips collecting them, about 2.4 s of every stage's
        # process (benchmarks/process_exit.py). Exit handlers (MLflow's, logging's) still run.
        gc.freeze()
