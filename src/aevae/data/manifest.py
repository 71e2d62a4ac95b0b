"""The manifest of a data set's source files (relative path, size in bytes, md5 of each), written
beside the prepared file as JSON; its md5 names the data in the report's data card."""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from aevae.io import write_atomic


class SourceFile(NamedTuple):
    path: str  # relative to data.path, with / separators
    size: int
    md5: str


def manifest_path(prepared: str | Path) -> Path:
    """Where the manifest of the prepared file `prepared` goes: `<stem>.manifest.json` beside it."""
    prepared = Path(prepared)
    return prepared.with_name(f"{prepared.stem}.manifest.json")


def manifest_text(files: Iterable[SourceFile]) -> str:
    """The manifest as JSON text, one file per line, sorted by path (the same files: the same text)."""
    rows = [json.dumps(entry._asdict()) for entry in sorted(files)]
    return '{"files": [\n' + ",\n".join(rows) + "\n]}\n" if rows else '{"files": []}\n'


def text_md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def write_manifest(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def file_of(path: Path, relative: str) -> SourceFile:
    """The manifest entry of one file, read whole."""
    data = path.read_bytes()
    return SourceFile(relative, len(data), hashlib.md5(data).hexdigest())
