"""Atomic file writes: a reader never sees a half-written output. (torch is imported by the
functions that save and load tensors: a stage that writes only text starts without it.)"""

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def plain(cfg: Any) -> dict[str, Any]:
    """A config (a typed one or an OmegaConf node) as plain values, resolved, enums by name: what
    config.yaml, MLflow params and checkpoints record."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, sync it to disk, then rename it
    into place: after a crash or a full disk, `path` holds the old content or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented, key-sorted JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV (columns in first-seen order), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, lambda tmp: tmp.write_text(buffer.getvalue()))


def save_tensors(path: str | Path, tensors: dict[str, Any]) -> Path:
    """Save a dict of tensors and plain values with torch.save, atomically and byte-stable.

    torch.save names the zip archive after the file it writes to, so saving straight into the
    randomly named temporary file would give different bytes each time; a buffer gets a fixed name.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    data = buffer.getvalue()
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def load_tensors(path: str | Path) -> dict[str, Any]:
    """Load a file written by `save_tensors` without unpickling arbitrary objects."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
