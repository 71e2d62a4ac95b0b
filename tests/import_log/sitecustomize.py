"""Imported by every Python process started with this folder on PYTHONPATH (the `study` fixture's
`dvc repro`): with AEVAE_IMPORT_LOG set, the process appends one JSON line to that file when it
exits: its command line and the files of the aevae modules (and aevae's Hydra plugins) it ran.
tests/test_pipeline.py checks them against the code each stage's overrides file lists."""

import atexit
import json
import os
import sys

LOG = os.environ.get("AEVAE_IMPORT_LOG")


def record(argv: list[str]) -> None:
    """`argv`: the command line as the process started (entry points expand `@file` in place)."""
    modules = list(sys.modules.items())
    files = sorted({module.__file__ for name, module in modules if name.split(".")[0] in ("aevae", "hydra_plugins") and getattr(module, "__file__", None)})
    with open(LOG, "a") as log:
        log.write(json.dumps({"argv": argv, "files": files}) + "\n")


if LOG:
    atexit.register(record, list(sys.argv))
