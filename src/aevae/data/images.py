"""Image files and arrays to uint8 (C, H, W) pixels with Pillow: channels and size as asked.

A grey image (modes 1, L, LA, I;16) has one channel, any other (RGB, RGBA, P, CMYK, ...) three;
alpha is dropped and 16-bit grey keeps its high byte. `channels` converts grey to colour (three
equal channels) or colour to grey (Pillow's ITU-R 601-2 luma); `image_size` centre-crops to the
largest square and resizes it with the named Pillow filter.
"""

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aevae.errors import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # what a folder's images are
FORMATS = "PNG, JPEG, BMP or TIFF"
GREY_MODES = ("1", "L", "LA", "La")
HIGH_DEPTH_GREY = ("I;16", "I;16L", "I;16B", "I;16N")  # 16-bit grey: the high byte is kept


class Shape(NamedTuple):
    """What every image becomes: `channels` 1 or 3 (None: as found), a square side (None: as found)
    and the Pillow filter that resizes (a `PIL.Image.Resampling` name, lower case)."""

    channels: int | None = None
    image_size: int | None = None
    resize: str = "lanczos"


class Decoded(NamedTuple):
    """One file: its pixels (C, H, W) uint8, its channels before any conversion, size and md5."""

    pixels: np.ndarray
    found_channels: int
    size: int
    md5: str


def _eight_bit(image: Image.Image, name: str) -> tuple[Image.Image, int]:
    """`image` as mode L or RGB, and the channels it has (1 grey, 3 colour)."""
    if image.mode in HIGH_DEPTH_GREY:
        return Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8), "L"), 1
    if image.mode in ("I", "F"):
        raise DataError(f"{name}: 32-bit integer or floating-point pixels (mode {image.mode}); save it with 8 or 16 bits per channel")
    if image.mode in GREY_MODES:
        return (image if image.mode == "L" else image.convert("L")), 1
    return (image if image.mode == "RGB" else image.convert("RGB")), 3


def shaped(image: Image.Image, shape: Shape, name: str) -> tuple[np.ndarray, int]:
    """`image` as (C, H, W) uint8 of `shape`, and the channels it was found with."""
    image, found = _eight_bit(image, name)
    if shape.channels is not None and shape.channels != found:
        image = image.convert("L" if shape.channels == 1 else "RGB")
    if shape.image_size is not None:
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
        if side == shape.image_size:
            image = image.crop(box)
        else:
            image = image.resize((shape.image_size, shape.image_size), Image.Resampling[shape.resize.upper()], box=box)
    pixels = np.asarray(image)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels), found


def decode(path: Path, name: str, shape: Shape) -> Decoded:
    """Read, check and decode one image file (`name`: how errors name it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{name}: cannot be read ({exc.strerror or exc}); check its permissions") from exc
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)  # a photo's orientation tag applied
            pixels, found = shaped(image, shape, name)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{name}: not a readable {FORMATS} image ({message}); replace or remove the file") from exc
    return Decoded(pixels, found, len(data), hashlib.md5(data).hexdigest())


def decode_files(root: str, names: Sequence[str], shape: Shape) -> list[Decoded]:
    """Decode the files `names` (relative to `root`): one worker's share of a folder."""
    return [decode(Path(root) / name, str(Path(root) / name), shape) for name in names]


def shaped_array(pixels: np.ndarray, shape: Shape, name: str) -> np.ndarray:
    """Images (N, C, H, W) uint8 with C 1 or 3 converted and resized to `shape` (an array file's)."""
    modes = {1: "L", 3: "RGB"}
    return np.stack([shaped(Image.fromarray(image[0] if len(image) == 1 else image.transpose(1, 2, 0), modes[len(image)]), shape, name)[0] for image in pixels])
