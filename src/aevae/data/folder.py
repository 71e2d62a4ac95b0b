"""A folder of images (docs/your-data.md), decoded in parallel.

Layouts, in the ImageFolder convention (sorted folder names are classes 0..K-1):
- `<class>/...`: labelled; images directly in the folder: unlabelled;
- `train/`, `val/`, `test/` (train required), each of them one of the above: the split kept;
- the anomaly layout of anomalib and MVTec AD, `train/good/`, `test/good/`, `test/<defect>/`:
  the same, `good` the normal class (`ground_truth/`, the defects' masks, is ignored).
Hidden files and folders and files that are not images are skipped and counted.
"""

import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from aevae.data.images import FORMATS, SUFFIXES, Decoded, Shape, decode_files
from aevae.data.manifest import SourceFile
from aevae.data.source import Source
from aevae.errors import DataError
from aevae.run.ownership import end_with_parent

SPLIT_FOLDERS = ("train", "val", "test")
MASKS = "ground_truth"  # the anomaly layout's defect masks
NORMAL = "good"  # the anomaly layout's normal class
CHUNK = 1024  # files per task of the decoding processes
MAX_LEVEL = 255


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def scan(root: Path) -> tuple[list[str], list[str]]:
    """The image files under `root` (relative, sorted) and notes on what was skipped."""
    images, hidden, others = [], 0, []
    for folder, dirs, files in os.walk(root):
        hidden += sum(name.startswith(".") for name in dirs + files)
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        base = Path(folder).relative_to(root)
        for name in sorted(files):
            if name.startswith("."):
                continue
            relative = (base / name).as_posix()
            (images if Path(name).suffix.lower() in SUFFIXES else others).append(relative)
    notes = [f"skipped {hidden} hidden files or folders"] if hidden else []
    if others:
        notes.append(f"skipped {len(others)} files that are not {FORMATS} images (first: {others[0]})")
    return sorted(images), notes


Entry = tuple[str, str | None]  # an image (relative path) and its class (None: unlabelled)


def labelled(root: Path, split: str, names: list[str]) -> list[Entry]:
    """Each image of one split folder (`split`: its prefix, '' for the whole folder) with its
    class; refuses images beside class folders and a class folder with a single image."""
    prefix = f"{split}/" if split else ""
    parts = [name[len(prefix):].split("/", 1) for name in names]
    flat = [name for name, part in zip(names, parts) if len(part) == 1]
    if flat and len(flat) < len(names):
        raise DataError(f"{root / flat[0]}: an image beside class folders; move it into a class folder (or all images out of them)")
    counts = Counter(part[0] for part in parts if not flat)
    for label, count in sorted(counts.items()):
        if count < 2:
            raise DataError(f"{root / prefix / label}: a class folder with one image; give every class two or more images, or remove the folder")
    return [(name, None if flat else part[0]) for name, part in zip(names, parts)]


def layout(root: Path, images: list[str]) -> tuple[dict[str, list[Entry]], list[str]]:
    """split -> its images with their classes ("train" holds everything when the folder has no
    split folders), and notes on what was ignored."""
    tops = {name.split("/", 1)[0] for name in images if "/" in name}
    split_layout = "train" in tops and tops - {MASKS} <= set(SPLIT_FOLDERS)
    if not split_layout:
        return {"train": labelled(root, "", images)}, []
    loose = [name for name in images if "/" not in name]
    if loose:
        raise DataError(f"{root / loose[0]}: an image beside the split folders {', '.join(sorted(tops - {MASKS}))}; move it into one of them")
    masks = [name for name in images if name.startswith(f"{MASKS}/")]
    notes = [f"ignored {len(masks)} images in {MASKS}/ (the defects' masks)"] if masks else []
    splits = {split: labelled(root, split, [name for name in images if name.startswith(f"{split}/")]) for split in SPLIT_FOLDERS if split in tops}
    kinds = {split: entries[0][1] is None for split, entries in splits.items()}
    if len(set(kinds.values())) > 1:
        unlabelled = [split for split, flat in kinds.items() if flat]
        raise DataError(f"{root / unlabelled[0]}: holds images without class folders while {', '.join(s for s in splits if s not in unlabelled)} has class folders; use class folders in every split or in none")
    return splits, notes


def decode_all(root: Path, names: list[str], shape: Shape, workers: int) -> list[Decoded]:
    """Decode every file, in order: `workers` processes share the files in chunks."""
    chunks = [names[i : i + CHUNK] for i in range(0, len(names), CHUNK)]
    if workers == 1 or len(chunks) == 1:
        return [decoded for chunk in chunks for decoded in decode_files(str(root), chunk, shape)]
    pool = ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context("fork"), initializer=end_with_parent)
    try:
        results = list(pool.map(decode_files, repeat(str(root)), chunks, repeat(shape)))
    finally:
        pool.shutdown(cancel_futures=True)
    return [decoded for chunk in results for decoded in chunk]


def stack(root: Path, names: list[str], decoded: list[Decoded], shape: Shape) -> np.ndarray:
    """The images (N, C, H, W) uint8; refuses mixed channels or sizes that the config does not settle."""
    channels = Counter(item.found_channels for item in decoded)
    if shape.channels is None and len(channels) > 1:
        odd = min(channels, key=lambda c: (channels[c], c))
        first = next(name for name, item in zip(names, decoded) if item.found_channels == odd)
        counts = " and ".join(f"{n} {'grey' if c == 1 else 'colour'}" for c, n in sorted(channels.items()))
        raise DataError(f"{root / first}: {'grey' if odd == 1 else 'colour'} among {counts} images; set data.channels=1 or data.channels=3 to convert them all")
    sizes = Counter(item.pixels.shape[1:] for item in decoded)
    if len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        name, item = next((name, item) for name, item in zip(names, decoded) if item.pixels.shape[1:] != common)
        raise DataError(
            f"{root / name}: {item.pixels.shape[2]}x{item.pixels.shape[1]} pixels where most images have "
            f"{common[1]}x{common[0]}; set data.image_size (e.g. data.image_size={max(common)}) to crop and resize them all"
        )
    return np.stack([item.pixels for item in decoded])


def read_folder(path: str, shape: Shape, workers: int) -> Source:
    """The images of the folder `path` (data=folder), labelled as its layout says."""
    root = Path(path)
    if not root.is_dir():
        hint = "; an array file is read with data=arrays" if root.is_file() else ""
        raise DataError(f"{root}: data.path is not a folder{hint}")
    images, notes = scan(root)
    if not images:
        raise DataError(f"{root}: no {FORMATS} images in this folder or below; point data.path at the folder of images")
    splits, ignored = layout(root, images)
    names = [name for entries in splits.values() for name, _ in entries]
    decoded = decode_all(root, names, shape, workers)
    pixels = torch.from_numpy(stack(root, names, decoded, shape))
    class_names = tuple(sorted({label for entries in splits.values() for _, label in entries if label is not None}))
    index = {name: i for i, name in enumerate(class_names)}
    parts, start = {}, 0
    for split, entries in splits.items():
        labels = torch.tensor([index.get(label, -1) for _, label in entries], dtype=torch.int64)
        parts[split] = (pixels[start : start + len(entries)].clone(), labels)
        start += len(entries)
    train_classes = {label for _, label in splits["train"]}
    normal = index[NORMAL] if train_classes == {NORMAL} and "test" in splits else None
    files = tuple(SourceFile(name, item.size, item.md5) for name, item in zip(names, decoded))
    return Source(parts, MAX_LEVEL, class_names, normal, path, files, tuple(notes + ignored))
