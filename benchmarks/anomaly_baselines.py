"""What the anomaly stage's detectors cost beside its training: for one case of the protocol
(default: digit 0 normal, MNIST), the stage's three parts timed in one process, with the study's
settings for model `--model` (params.yaml through the configure stage's overrides for
anomaly@<model>): (a) training the one-class model, (b) scoring the test images by the model's
methods (reconstruction error, IS -log p(x), latent and residual detectors, error per total
variation, ensemble), (c) the baselines (PCA, and kNN / LOF / Isolation Forest / one-class SVM
on pixels and on PCA features). Prints each part's seconds and (c) / (a + b + c).

    python benchmarks/anomaly_baselines.py --model ae --normal-class 0 [hydra overrides]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from aevae.stages import schema
from aevae.config import register_configs, validate
from aevae.data import InMemoryDataModule, load_or_prepare
from aevae.evaluation.anomaly import protocol_cases
from aevae.evaluation.probe import resolve_pca_components
from aevae.models import load_model
from aevae.stages import anomaly, train

ROOT = Path(__file__).resolve().parents[1]


def study_overrides(model: str) -> list[str]:
    """The overrides the configure stage wrote for anomaly@<model> (comments left out)."""
    lines = (ROOT / "overrides" / "anomaly" / f"{model}.txt").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ae")
    parser.add_argument("--normal-class", type=int, default=0)
    parser.add_argument("--mnist-root", default=os.environ.get("AEVAE_MNIST_ROOT", str(ROOT / "data" / "raw" / "mnist")))
    args, overrides = parser.parse_known_args()
    register_configs(schema("anomaly"))
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("anomaly", [*study_overrides(args.model), f"data.root={args.mnist_root}", "logger=none", "trainer.enable_progress_bar=false",
                                  f"output_dir={tmp}", f"train_dir={tmp}/classes", f"normal_classes=[{args.normal_class}]", *overrides])  # fmt: skip
        cfg = validate(cfg)
        detectors = {name: instantiate(node, _partial_=True) for name, node in cfg.detectors.items()}
        datamodule = InMemoryDataModule(load_or_prepare(cfg.data), cfg.data, seed=cfg.seed)
        datamodule.setup()
        data = {split: datamodule.tensors[split] for split in ("train", "val", "test")}
        (case,) = protocol_cases(cfg.cases, data["test"][1].unique().tolist(), cfg.normal_classes)
        class_cfg = anomaly.class_config(cfg, case)
        start = time.perf_counter()
        train.run(class_cfg)
        trained = time.perf_counter()
        model = load_model(Path(class_cfg.output_dir) / "checkpoints" / "best.ckpt")
        (train_images, train_labels), (test_images, _) = data["train"], data["test"]
        normal = train_images[torch.isin(train_labels, torch.tensor(case.normal, device=train_labels.device))]
        loaded = time.perf_counter()
        anomaly.model_scores(model, test_images, normal, cfg, detectors)
        scored = time.perf_counter()
        n_components = resolve_pca_components(cfg.pca_components, {cfg.model.label: model})
        anomaly.baseline_scores(normal, test_images, n_components, cfg, detectors)
        done = time.perf_counter()
    parts = {"(a) training": trained - start, "(b) model's methods": scored - loaded, "(c) baselines": done - scored}
    print(f"anomaly@{args.model}, {case.name} ({len(normal)} normal training images, {len(test_images)} test images), "
          f"{cfg.trainer.max_epochs} epochs, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for name, seconds in parts.items():
        print(f"{name:<22} {seconds:8.1f} s")
    print(f"baselines / stage      {parts['(c) baselines'] / sum(parts.values()):8.3f}  (target <= 0.20)")


if __name__ == "__main__":
    sys.exit(main())
