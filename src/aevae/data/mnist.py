"""MNIST from the standard IDX gz files in a local directory, verified by md5."""

import gzip
import hashlib
import logging
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from aevae.errors import DataError

log = logging.getLogger(__name__)

MAX_LEVEL = 255
# name -> md5 of the decompressed bytes, expected IDX dims
FILES = {
    "train-images-idx3-ubyte.gz": ("6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)),
    "train-labels-idx1-ubyte.gz": ("a25bea736e30d166cdddb491f175f624", (60000,)),
    "t10k-images-idx3-ubyte.gz": ("2646ac647ad5339dbf082846283269ea", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": ("27ae3e4e09519cfbb04c329615203637", (10000,)),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IDX_UBYTE = 0x08


def read_idx(path: Path, expected_md5: str, expected_shape: tuple[int, ...]) -> np.ndarray:
    """Decompress, verify and parse one IDX file; raise DataError naming the file otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from exc
    md5 = hashlib.md5(raw).hexdigest()
    if md5 != expected_md5:
        raise DataError(f"{path}: md5 {md5} does not match the expected {expected_md5} (corrupt or wrong file)")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE:
        raise DataError(f"{path}: wrong IDX magic number {raw[:4].hex()}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if shape != expected_shape:
        raise DataError(f"{path}: IDX shape {shape}, expected {expected_shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def download(root: Path) -> None:
    """Fetch the missing MNIST files from the public mirrors into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = root / name
        if target.exists():
            continue
        for mirror in MIRRORS:
            try:
                log.info("downloading %s%s", mirror, name)
                urllib.request.urlretrieve(mirror + name, target)
                break
            except OSError as exc:
                log.warning("mirror %s failed: %s", mirror, exc)
        else:
            raise DataError(f"{target}: could not download from any mirror")


def load_mnist_raw(root: str | Path, allow_download: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
    """Return {"train": ..., "test": ...} as (images (N, 1, 28, 28) uint8, labels (N,) int64)."""
    root = Path(root)
    if allow_download and not all((root / name).exists() for name in FILES):
        download(root)
    if not root.is_dir():
        raise DataError(f"{root}: MNIST directory not found (set data.root to the directory of the IDX files)")
    arrays = {name: read_idx(root / name, md5, shape) for name, (md5, shape) in FILES.items()}

    def split(prefix: str) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(arrays[f"{prefix}-images-idx3-ubyte.gz"].copy()).unsqueeze(1)
        labels = torch.from_numpy(arrays[f"{prefix}-labels-idx1-ubyte.gz"].astype(np.int64))
        return images, labels

    return {"train": split("train"), "test": split("t10k")}
