"""How long the prepare stage takes on a folder of images: MNIST's 70,000 images exported as
28x28 PNG files (`train/<digit>/`, `test/<digit>/`, in a temporary folder), then
`python pipelines/prepare.py data=folder data.path=<folder>` timed as a whole process (start-up,
the parallel decode, the split, the prepared file and the manifest), `--repeats` times.

It also checks what it timed: the prepared test split holds MNIST's test images (ordered by
class, as the folder lists them) and train + val hold its training images.

    python benchmarks/prepare.py                 # the whole of MNIST, one decoding process per CPU
    python benchmarks/prepare.py --limit 5000 --workers 1
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from aevae.data import load_splits
from aevae.data.folder import available_cpus
from aevae.data.mnist import load_mnist_raw

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown CPU"


def export(mnist_root: Path, folder: Path, limit: int | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """MNIST as PNG files under `folder`; returns the exported images and labels per split, in
    the order the folder lists them (class, then index)."""
    exported = {}
    for split, (images, labels) in load_mnist_raw(mnist_root).items():
        images, labels = images[:limit], labels[:limit]
        order = torch.argsort(labels, stable=True)
        for index in order.tolist():
            target = folder / split / str(int(labels[index])) / f"{index:05d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index, 0].numpy()).save(target)
        exported[split] = (images[order], labels[order])
    return exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", type=Path, default=ROOT / "data" / "raw" / "mnist")
    parser.add_argument("--limit", type=int, default=None, help="export the first N images of each split only")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per available CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder, output = Path(tmp) / "mnist", Path(tmp) / "folder.pt"
        start = time.perf_counter()
        exported = export(args.mnist_root, folder, args.limit)
        export_s = time.perf_counter() - start
        files = sum(len(labels) for _, labels in exported.values())
        command = [sys.executable, str(ROOT / "pipelines" / "prepare.py"), "data=folder", f"data.path={folder}", f"output={output}", f"hydra.run.dir={tmp}/h"]
        if args.workers:
            command.append(f"workers={args.workers}")
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
        splits = load_splits(output)
        assert torch.equal(splits.images["test"], exported["test"][0]) and torch.equal(splits.labels["test"], exported["test"][1])
        pool = torch.cat([splits.images["train"], splits.images["val"]])
        assert len(pool) == len(exported["train"][0]) and splits.images["train"].dtype == torch.uint8
        size_mb = output.stat().st_size / 1e6

    workers = args.workers or available_cpus()
    loads = ", ".join(f"{load:.1f}" for load in os.getloadavg())
    print(f"{cpu_name()}, {available_cpus()} CPUs available, load average {loads}; {workers} decoding processes")
    print(f"exported {files} PNG files of 28x28 in {export_s:.1f} s; prepared file {size_mb:.1f} MB (uint8: {files * 784 / 1e6:.1f} MB of pixels)")
    print(f"prepare (whole process), {args.repeats} runs: median {statistics.median(times):.2f} s, min {min(times):.2f} s ({files / min(times):.0f} files/s); all: {' '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
