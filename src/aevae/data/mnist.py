"""MNIST from the standard IDX gz files in a local directory, verified by md5.

Nothing is downloaded: the repository ships the four files in `data/raw/mnist`.
"""

import gzip
import hashlib
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from aevae.errors import DataError

MAX_LEVEL = 255
IDX_UBYTE = 0x08


class IdxFile(NamedTuple):
    """What one MNIST file must be: md5 of the gz file, md5 of its decompressed bytes, IDX dims."""

    gz_md5: str
    md5: str
    shape: tuple[int, ...]


# name -> md5 of the gz file, md5 of the decompressed bytes, IDX dims
FILES = {
    "train-images-idx3-ubyte.gz": IdxFile(
        "56f11203c65dcbeead45b51e76a4d637", "6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)
    ),
    "train-labels-idx1-ubyte.gz": IdxFile(
        "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624", (60000,)
    ),
    "t10k-images-idx3-ubyte.gz": IdxFile(
        "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea", (10000, 28, 28)
    ),
    "t10k-labels-idx1-ubyte.gz": IdxFile(
        "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637", (10000,)
    ),
}


def _check_md5(path: Path, data: bytes, expected: str) -> None:
    got = hashlib.md5(data).hexdigest()
    if got != expected:
        raise DataError(f"{path}: md5 {got} does not match the expected {expected} (corrupt or altered file)")


def read_idx(path: Path, expected: IdxFile) -> np.ndarray:
    """Verify, decompress and parse one IDX gz file; raise a one-line DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (data.path must hold the four MNIST IDX gz files)")
    packed = path.read_bytes()
    _check_md5(path, packed, expected.gz_md5)
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from exc
    _check_md5(path, raw, expected.md5)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE:
        raise DataError(f"{path}: wrong IDX magic number {raw[:4].hex()}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if shape != tuple(expected.shape):
        raise DataError(f"{path}: IDX shape {shape}, expected {tuple(expected.shape)}")
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path}: IDX data is {len(raw) - header} bytes, expected {int(np.prod(shape))}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist_raw(root: str | Path) -> dict[str, tuple[Tensor, Tensor]]:
    """Return {"train": ..., "test": ...} as (images (N, 1, 28, 28) uint8, labels (N,) int64)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: MNIST directory not found (set data.path to the directory of the IDX gz files)")
    arrays = {name: read_idx(root / name, expected) for name, expected in FILES.items()}

    def split(prefix: str) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(arrays[f"{prefix}-images-idx3-ubyte.gz"].copy()).unsqueeze(1)
        labels = torch.from_numpy(arrays[f"{prefix}-labels-idx1-ubyte.gz"].astype(np.int64))
        return images, labels

    return {"train": split("train"), "test": split("t10k")}
