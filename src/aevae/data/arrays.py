"""An array file (docs/your-data.md): `.npz` with `x`, optional `y` and `split`, or `.npy` (`x`).

`x` holds images, (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3, uint8 (or integers in
0..255) or float in [0, 1] (stored as round(255 x)); or vectors (N, D), any real numbers (stored
as float32). `y` (N,) holds labels: integers >= 0, or strings (sorted names are classes 0..K-1).
`split` (N,) names each row's split, train, val or test (strings).
"""

import zipfile
from pathlib import Path

import numpy as np
import torch

from aevae.data.images import Shape, shaped_array
from aevae.data.manifest import file_of
from aevae.data.source import Source
from aevae.errors import DataError

KEYS = ("x", "y", "split")
SPLIT_VALUES = ("train", "val", "test")
MAX_LEVEL = 255
COLOUR = (1, 3)  # the channel counts an image may have


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz (its keys) or an .npy (as `x`), without unpickling objects."""
    try:
        if path.suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise DataError(f"{path}: no array `x` (found {', '.join(archive.files) or 'none'}); save the images or vectors as x, e.g. np.savez(path, x=images, y=labels)")
            unknown = sorted(set(archive.files) - set(KEYS))
            if unknown:
                raise DataError(f"{path}: unknown array {unknown[0]!r}; an array file holds x, y and split only")
            return {key: archive[key] for key in archive.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable .npz or .npy file ({message}); save it with np.savez or np.save (no object arrays)") from exc


def images_of(path: Path, x: np.ndarray, shape: Shape) -> np.ndarray:
    """Images (N, C, H, W) uint8 from `x` in one of the accepted layouts and dtypes."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[1] in COLOUR and x.shape[-1] not in COLOUR:
        pass  # (N, C, H, W)
    elif x.shape[-1] in COLOUR and x.shape[1] not in COLOUR:
        x = x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: x has shape {x.shape}; images need their channels (1 or 3) either second (N, C, H, W) or last (N, H, W, C), not both or neither")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"{path}: x holds floats outside [0, 1] (min {np.nanmin(x):g}, max {np.nanmax(x):g}); scale the images to [0, 1] or save them as uint8")
        x = np.rint(x * MAX_LEVEL)
    elif x.dtype.kind in "iu":
        if x.min() < 0 or x.max() > MAX_LEVEL:
            raise DataError(f"{path}: x holds integers outside 0..255 (min {x.min()}, max {x.max()}); save 8-bit images")
    else:
        raise DataError(f"{path}: x has dtype {x.dtype}; save images as uint8 or as floats in [0, 1]")
    x = np.ascontiguousarray(x.astype(np.uint8))
    if shape.channels is None and shape.image_size is None:
        return x
    return shaped_array(x, shape, str(path))


def labels_of(path: Path, y: np.ndarray | None, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels (N,) int64 (-1 without `y`) and the class names (strings in `y`)."""
    if y is None:
        return np.full(n, -1, dtype=np.int64), ()
    if y.shape != (n,):
        raise DataError(f"{path}: y has shape {y.shape}, x has {n} rows; save one label per row, shape ({n},)")
    if y.dtype.kind == "U":
        names, labels = np.unique(y, return_inverse=True)
        return labels.astype(np.int64), tuple(map(str, names))
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise DataError(f"{path}: y must hold integers >= 0 or strings, got dtype {y.dtype}{f' with min {y.min()}' if y.dtype.kind in 'iuf' else ''}")
    return y.astype(np.int64), ()


def split_of(path: Path, split: np.ndarray | None, n: int) -> np.ndarray | None:
    """The split of every row (strings), checked."""
    if split is None:
        return None
    if split.shape != (n,) or split.dtype.kind != "U":
        raise DataError(f"{path}: split has shape {split.shape} and dtype {split.dtype}; save one string per row (train, val or test), shape ({n},)")
    unknown = sorted(set(np.unique(split).tolist()) - set(SPLIT_VALUES))
    if unknown:
        raise DataError(f"{path}: split holds unknown names {', '.join(map(repr, unknown))}; use train, val and test")
    if "train" not in split:
        raise DataError(f"{path}: split names no train rows; mark the rows to train on as train")
    return split


def read_arrays(path: str, shape: Shape) -> Source:
    """The images or vectors of the array file `path` (data=arrays)."""
    file = Path(path)
    if not file.is_file() or file.suffix not in (".npz", ".npy"):
        raise DataError(f"{file}: data.path is not an .npz or .npy file{'; a folder of images is read with data=folder' if file.is_dir() else ''}")
    return arrays_source(file, load_arrays(file), shape, path)


def arrays_source(file: Path, arrays: dict[str, np.ndarray], shape: Shape, path: str) -> Source:
    """The images or vectors of `arrays` (`x`, optional `y` and `split`, as in an array file),
    read from `file` (named in messages; its manifest entry) as `data.path` = `path` gives it."""
    x = arrays["x"]
    if x.ndim not in (2, 3, 4) or len(x) == 0:
        raise DataError(f"{file}: x has shape {x.shape}; save images (N, H, W), (N, H, W, C) or (N, C, H, W), or vectors (N, D)")
    if x.ndim == 2:
        if shape.channels is not None or shape.image_size is not None:
            raise DataError(f"{file}: x holds vectors (N, D); data.image_size and data.channels apply to images, set them to null")
        if x.dtype.kind not in "iuf" or not np.isfinite(x).all():
            raise DataError(f"{file}: vectors x must be finite numbers, got dtype {x.dtype}{' with NaN or inf' if x.dtype.kind == 'f' else ''}")
        values, max_level = x.astype(np.float32), 1
    else:
        values, max_level = images_of(file, x, shape), MAX_LEVEL
    labels, class_names = labels_of(file, arrays.get("y"), len(x))
    split = split_of(file, arrays.get("split"), len(x))
    rows = {"train": np.arange(len(x))} if split is None else {name: np.flatnonzero(split == name) for name in SPLIT_VALUES if name in split}
    parts = {name: (torch.from_numpy(values[index]), torch.from_numpy(labels[index])) for name, index in rows.items()}
    return Source(parts, max_level, class_names, None, path, (file_of(file, file.name),))
