"""The score entry point (not a stage of the study): a trained model, from MLflow or a checkpoint,
applied to new images; one result per image (see `aevae.records.mlflow_model`) written to a file. MLflow
and matplotlib (which reads PNG files) are imported when the stage runs, not when it starts."""

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import MISSING

from aevae.config import validate
from aevae.errors import DataError, require
from aevae.io import write_atomic, write_csv
from aevae.records import tracking
from aevae.stages.common import print_summary
from aevae.workspace import project_root

ARRAY_KEY = "images"  # the array read from an .npz file that holds several


@dataclass
class ScoreConfig:
    model_uri: str = MISSING  # runs:/<run id>/model, models:/<name>/<version>, or a checkpoint file
    images: str = MISSING  # an .npy/.npz array or a folder of PNG files
    result: Optional[str] = MISSING  # what to write per image; null: the model's default
    batch_size: int = MISSING  # images per forward pass
    tracking_uri: Optional[str] = MISSING  # the store of runs:/ and models:/ URIs; null: as for every run
    output: str = MISSING  # .npy (the array) or .csv (a row per image)
    stage: str = MISSING

    def __post_init__(self) -> None:
        require(self.batch_size > 0, "batch_size", f"must be > 0, got {self.batch_size}")
        require(self.output.endswith((".npy", ".csv")), "output", f"must end in .npy or .csv, got {self.output!r}")


def read_png(path: Path) -> np.ndarray:
    """A grayscale PNG file (or a gray one stored as RGB or RGBA) as float32 (H, W) in [0, 1]."""
    from matplotlib.image import imread

    try:
        image = imread(path)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"images: cannot read {path}: {exc}") from exc
    if image.ndim == 3 and image.shape[2] in (3, 4) and (image[..., 1:3] == image[..., :1]).all():
        image = image[..., 0]
    if image.ndim != 2:
        raise DataError(f"images: {path} is not a grayscale PNG (its shape is {image.shape})")
    return image


def read_images(path: Path) -> tuple[np.ndarray, list[str]]:
    """The images of an .npy/.npz file or a folder of PNG files, and their names (file names, or
    indices in the array)."""
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise DataError(f"images: no PNG files in {path}")
        images = [read_png(file) for file in files]
        if len({image.shape for image in images}) > 1:
            raise DataError(f"images: the PNG files in {path} differ in size")
        return np.stack(images), [file.name for file in files]
    if path.suffix not in (".npy", ".npz"):
        raise DataError(f"images: expected an .npy or .npz file or a folder of PNG files, got {path}")
    try:
        with open(path, "rb") as file:
            loaded = np.load(file, allow_pickle=False)  # never anything that runs code
            if isinstance(loaded, np.lib.npyio.NpzFile):
                keys = list(loaded.keys())
                if len(keys) != 1 and ARRAY_KEY not in keys:
                    raise DataError(f"images: {path} holds {', '.join(keys) or 'no arrays'}; name the images' array {ARRAY_KEY!r}")
                loaded = loaded[ARRAY_KEY if ARRAY_KEY in keys else keys[0]]
    except OSError as exc:
        raise DataError(f"images: cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:  # numpy's text would suggest allow_pickle
        raise DataError(f"images: {path} is not a readable {path.suffix} array of numbers (truncated, corrupt, or holding Python objects); write it with numpy.save or numpy.savez") from exc
    return loaded, [str(index) for index in range(loaded.shape[0] if loaded.ndim else 0)]


def write_results(path: Path, results: np.ndarray, names: list[str], result: str) -> Path:
    """`.npy`: the array; `.csv`: a row per image, its name and its (flattened) values."""
    if path.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, results)
        return write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    flat = results.reshape(len(results), -1)
    columns = [result] if results.ndim == 1 else [f"{result}_{i}" for i in range(flat.shape[1])]
    return write_csv(path, [{"image": name, **dict(zip(columns, values))} for name, values in zip(names, flat.tolist())])


def run(cfg: ScoreConfig) -> dict[str, float]:
    """Apply `cfg.model_uri` to `cfg.images` and write each image's `cfg.result` to `cfg.output`.
    A bad model URI or path, images of the wrong shape or value range, or an unknown result is
    one `AevaeError` naming it. Returns the number of images."""
    from aevae.records.mlflow_model import open_model

    cfg = validate(cfg)
    images, names = read_images(Path(cfg.images))
    model = open_model(cfg.model_uri, tracking.tracking_uri(cfg.tracking_uri, project_root()))
    if images.ndim == len(model.image_shape) and model.image_shape[0] == 1:  # (N, H, W) for one channel
        images = images[:, None]
    result = cfg.result or model.results[0]
    output = write_results(Path(cfg.output), model.predict(images, result, cfg.batch_size), names, result)
    metrics = {"images": float(len(images))}
    print_summary(f"{cfg.stage} done ({result})", metrics, output, tracking.Run())
    return metrics
