"""Shared behaviour of the entry points: user errors become one line and a non-zero exit."""

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from aevae.errors import AevaeError

T = TypeVar("T")


def run_reporting_errors(fn: Callable[[Any], T], cfg: Any) -> T:
    """Run `fn(cfg)`; on an `AevaeError` print `error: <message>` and exit with status 2."""
    try:
        return fn(cfg)
    except AevaeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
