"""Training and evaluation throughput of aevae against a plain PyTorch loop and a common Lightning set-up,
on each compute path (fp32, bf16 autocast, `compile`, both), and what fraction of the machine's
matrix-multiply peak in its dtype each one reaches.

Three ways to train the same network with the same optimizer and batch size on MNIST:

  (a) aevae      the project's LightningModule and `InMemoryDataModule` through a Lightning
                 Trainer configured from `conf/trainer/`, with the path's `trainer.precision`
                 and `compile` (its loss compiled, `BaseAutoencoder.compile_loss`), as the train
                 stage does (logger, checkpointing, progress and model summary off; validation
                 off with `limit_val_batches=0`);
  (b) plain      a hand-written loop over the same per-epoch permutation and batch boundaries as
                 (a), slicing a pre-shuffled tensor: the model's `loss_terms` (compiled and under
                 autocast as in (a)), its Adam and learning-rate schedule, nothing else (the
                 practical limit);
  (c) dataloader the same Trainer fed by `DataLoader(TensorDataset(...), shuffle=True)`, on the
                 configured path only.

The training is the study's: model `--model` of `params.yaml` with the overrides that the
configure stage writes for its train stage (batch size, learning rate and schedule, model and
net), on MNIST. Each variant runs `--warmup` untimed epochs (compilation happens there), then
`--epochs` timed ones, the variants' epochs alternating (round r runs epoch r of each); the
table shows the median. Evaluation throughput is `score_anomaly` and
`loss_terms` over the test split in `data.eval_batch_size` batches under `torch.no_grad`, in
each dtype.

Beside s/epoch and images/s, each row shows its GFLOP/s and their fraction of the GEMM peak in
the path's dtype: the fastest of several square `torch.mm`s after warm-up, in the variants'
thread count. FLOPs per image are those of the matrix products and convolutions (torch's
`FlopCounterMode`, 2 per multiply-add); a training step counts 3 x its forward's (backward: the
input and the weight gradients). Below the table, per path: a/b, and (a)'s speed-up over fp32 (a).

    python benchmarks/throughput.py --epochs 3
    python benchmarks/throughput.py --paths fp32,compiled --batch-size 128
    python benchmarks/throughput.py --train-limit 5000 --epochs 2 net.hidden_dims=[512]

Trailing arguments are Hydra overrides of the training config (`conf/train.yaml`), after the study's.
"""

import argparse
import contextlib
import dataclasses
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from aevae.config import study
from aevae.stages import schema
from aevae.config import register_configs, validate
from aevae.run.devices import native_bf16, resolve_precision
from aevae.data import InMemoryDataModule, Splits, load_or_prepare
from aevae.models import BaseAutoencoder, build_model
from aevae.models.losses import corrupt
from aevae.stages.configure import training_stage

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST_ROOT = os.environ.get("AEVAE_MNIST_ROOT", str(REPO_ROOT / "data" / "raw" / "mnist"))
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
PATHS = {  # name: (trainer.precision, compile)
    "fp32": ("32-true", False),
    "bf16": ("bf16-mixed", False),
    "compiled": ("32-true", True),
    "bf16 compiled": ("bf16-mixed", True),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs before the timed ones")
    parser.add_argument("--batch-size", type=int, default=None, help="instead of the study's (params.yaml)")
    parser.add_argument("--model", default="vae", help="a model of params.yaml's `models` (ae, dae, vae, beta_vae)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated compute paths of {', '.join(PATHS)}")
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own, as in training)")
    parser.add_argument("--gemm-size", type=int, default=None, help="side of the GEMM-peak matrices (default: 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--mnist-root", default=DEFAULT_MNIST_ROOT, help="directory of the MNIST IDX files (env AEVAE_MNIST_ROOT)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, after the study's")
    return parser.parse_args()


def compose_config(args: argparse.Namespace) -> DictConfig:
    """The train stage's config of the study's model `args.model`, on MNIST, with the benchmark's choices."""
    register_configs(schema("train"))
    params = study.load(REPO_ROOT / "params.yaml")
    if args.model not in params.models:
        raise SystemExit(f"--model {args.model}: not a model of params.yaml; its models: {', '.join(params.models)}")
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        runtime = compose("train", return_hydra_config=True)
        runtime.hydra.runtime.output_dir = "unused"  # `output_dir` resolves as in a Hydra run; nothing is written
        HydraConfig.instance().set_config(runtime)
        _, overrides, _ = training_stage(params, args.model)
        overrides += ["data=mnist", f"data.path={args.mnist_root}", f"trainer={'gpu' if args.device == 'cuda' else 'cpu'}", "logger=none"]
        if args.batch_size is not None:
            overrides.append(f"data.batch_size={args.batch_size}")
        cfg = compose("train", overrides=[*overrides, *args.overrides])
    validate(cfg)
    return cfg


def limit_train(splits: Splits, n: int | None) -> Splits:
    """The splits with only the first `n` training images (all of them for `n=None`)."""
    images, labels = dict(splits.images), dict(splits.labels)
    images["train"], labels["train"] = images["train"][:n], labels["train"][:n]
    return dataclasses.replace(splits, images=images, labels=labels)


def clock(device: torch.device) -> float:
    """Wall time after the device has finished the queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def on_path(cfg: DictConfig, path: str) -> DictConfig:
    """`cfg` with the precision and compilation of compute path `path` (see `PATHS`)."""
    precision, compiled = PATHS[path]
    cfg = cfg.copy()
    cfg.trainer.precision, cfg.compile = precision, compiled
    return cfg


def compute_dtype(cfg: DictConfig) -> torch.dtype:
    """The dtype the configured trainer's precision multiplies in (`32-true`: fp32)."""
    precision = resolve_precision(str(cfg.trainer.precision), cfg.trainer.accelerator)
    return torch.bfloat16 if precision.startswith("bf16") else torch.float16 if precision.startswith("16") else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` (as a `*-mixed` precision of the trainer), none for fp32."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def gemm_peak(n: int, dtype: torch.dtype, device: torch.device, seconds: float = 0.5) -> float:
    """GFLOP/s of the fastest `n` x `n` `torch.mm` in `dtype`, timed for about `seconds` after two warm-up ones."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    for _ in range(2):
        torch.mm(a, b)
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = clock(device)
        torch.mm(a, b)
        took = clock(device) - start
        best, spent = min(best, took), spent + took
    return 2 * n**3 / best / 1e9


@torch.no_grad()
def forward_flops(fn: Callable[[torch.Tensor], object], images: torch.Tensor) -> float:
    """FLOPs per image of `fn(images)` in matrix products and convolutions (2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn(images)
    return counter.get_total_flops() / len(images)


class EpochTimer(L.Callback):
    """Epoch durations of a `fit`: from each epoch start to the next (the last one to train end)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.starts, self.end = device, [], 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.starts.append(clock(self.device))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = clock(self.device)

    @property
    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, [*self.starts[1:], self.end])]


def fresh_model(cfg: DictConfig, splits: Splits, device: torch.device) -> BaseAutoencoder:
    """The configured model, with the same initial weights every time."""
    L.seed_everything(cfg.seed, verbose=False)
    typed = validate(cfg)
    return build_model(typed.model, typed.net, splits.image_shape).to(device)


def as_trained(cfg: DictConfig, model: BaseAutoencoder) -> BaseAutoencoder:
    """The model as the train stage fits it: its loss compiled where the config says so."""
    if cfg.compile:
        model.compile_loss()
    return model


def fit_lightning(cfg: DictConfig, model: torch.nn.Module, epochs: int, device: torch.device, **data) -> list[float]:
    """Epoch durations of `trainer.fit(model, **data)` with the configured Trainer, validation off."""
    timer = EpochTimer(device)
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True, enum_to_str=True) | {
        "max_epochs": epochs,
        "limit_val_batches": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "precision": resolve_precision(str(cfg.trainer.precision), cfg.trainer.accelerator),
    }
    del trainer_kwargs["progress"]  # aevae's key, not the Trainer's
    trainer = L.Trainer(**trainer_kwargs, logger=False, enable_checkpointing=False, callbacks=[timer])
    trainer.fit(model, **data)
    return timer.durations


def shuffled_batches(images: torch.Tensor, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """`TensorBatches`' permutation of `(seed, epoch)` and batch boundaries, from one gather per epoch."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    shuffled = images[order.to(images.device)]
    return (shuffled[start : start + batch_size] for start in range(0, len(shuffled), batch_size))


def lightning_epochs(cfg: DictConfig, model: torch.nn.Module, epochs: int, device: torch.device, **data) -> Iterator[float]:
    """The duration of each of `epochs` epochs of `fit_lightning`, one a step (a Trainer each:
    epochs of several variants can then alternate)."""
    for _ in range(epochs):
        yield fit_lightning(cfg, model, 1, device, **data)[0]


def fit_plain(cfg: DictConfig, model: BaseAutoencoder, images: torch.Tensor, epochs: int, device: torch.device) -> Iterator[float]:
    """The duration of each epoch of a hand-written loop, one a step: `loss_terms`, backward, the
    model's optimizer and per-epoch schedule."""
    optimizer = instantiate(model.cfg.optimizer)(model.parameters())  # as configure_optimizers, without a Trainer
    schedule = instantiate(model.cfg.scheduler)(optimizer, max_epochs=epochs)  # over the run's epochs, as (a)'s Trainer
    model.train()
    dtype = compute_dtype(cfg)
    for epoch in range(epochs):
        start = clock(device)
        for x in shuffled_batches(images, cfg.data.batch_size, cfg.seed, epoch):
            with autocast(device, dtype):
                loss = model.loss_terms(corrupt(x, model.cfg.corruption, model.cfg.corruption_level), x)["loss"].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        yield clock(device) - start


@torch.no_grad()
def eval_durations(fn: Callable[[torch.Tensor], object], images: torch.Tensor, batch_size: int, passes: int, device: torch.device, dtype: torch.dtype) -> list[float]:
    """Durations of `passes` passes of `fn` over `images` in batches of `batch_size`."""
    durations = []
    for _ in range(passes):
        start = clock(device)
        for first in range(0, len(images), batch_size):
            with autocast(device, dtype):
                fn(images[first : first + batch_size])
        durations.append(clock(device) - start)
    return durations


def main() -> None:
    args = parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-fit banners between the variants
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = compose_config(args)
    paths = [path for path in args.paths.split(",") if path]
    unknown = [path for path in paths if path not in PATHS]
    if unknown:
        raise SystemExit(f"--paths {','.join(unknown)}: not a path; the paths: {', '.join(PATHS)}")
    gemm_size = args.gemm_size or (8192 if device.type == "cuda" else 2048)
    dtypes = list(dict.fromkeys(compute_dtype(on_path(cfg, path)) for path in paths))
    peaks = {d: gemm_peak(gemm_size, d, device) for d in dict.fromkeys([torch.float32, torch.bfloat16, *dtypes])}
    # Lightning applies `trainer.deterministic` process-wide; set it up front so all variants share it.
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic))
    splits = limit_train(load_or_prepare(cfg.data), args.train_limit)
    prepared = InMemoryDataModule(splits, cfg.data, seed=cfg.seed)  # the tensors (a) trains on, for (b) and (c)
    prepared.setup()
    train_x, train_y = (t.to(device) for t in prepared.tensors["train"])
    test_x = prepared.tensors["test"][0].to(device)
    total = args.warmup + args.epochs

    variants: dict[tuple[str, str], Iterator[float]] = {}  # (path, variant): its epochs, one a step
    for path in paths:
        path_cfg = on_path(cfg, path)
        data = InMemoryDataModule(splits, path_cfg.data, seed=path_cfg.seed)
        variants[path, "(a) aevae"] = lightning_epochs(path_cfg, as_trained(path_cfg, fresh_model(path_cfg, splits, device)), total, device, datamodule=data)
        variants[path, "(b) plain"] = fit_plain(path_cfg, as_trained(path_cfg, fresh_model(path_cfg, splits, device)), train_x, total, device)
    configured = next((path for path in paths if PATHS[path] == (str(cfg.trainer.precision), bool(cfg.compile))), None)
    if configured:
        variants[configured, "(c) dataloader"] = lightning_epochs(
            cfg, as_trained(cfg, fresh_model(cfg, splits, device)), total, device,
            train_dataloaders=DataLoader(TensorDataset(train_x, train_y), batch_size=cfg.data.batch_size, shuffle=True),
        )
    # the variants' epochs alternate (round r: epoch r of each), so that a load that comes and goes
    # on a shared machine slows them alike, and their ratios hold where the absolute figures do not
    runs: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    for _ in range(total):
        for key, epochs in variants.items():
            runs[key].append(next(epochs))

    model = fresh_model(cfg, splits, device).eval()  # untrained: the speed does not depend on the weights
    evals = {"score_anomaly": model.score_anomaly, "loss_terms": lambda x: model.loss_terms(x, x)}
    flops = {f"eval {name}": forward_flops(fn, test_x[:64]) for name, fn in evals.items()}
    step_flops = 3 * flops["eval loss_terms"]
    for dtype in dtypes:
        for name, fn in evals.items():
            runs[DTYPE_NAMES[dtype], f"eval {name}"] = eval_durations(fn, test_x, cfg.data.eval_batch_size, total, device, dtype)

    print(f"\n{cfg.model.name} {cfg.net.name} hidden_dims={list(cfg.net.get('hidden_dims', []))} latent_dim={cfg.model.latent_dim} "
          f"batch={cfg.data.batch_size} lr={cfg.model.lr} lr_schedule={cfg.model.lr_schedule} device={device} "
          f"threads={torch.get_num_threads()} configured: precision={cfg.trainer.precision} compile={cfg.compile}; "
          f"native bf16: {native_bf16() if device.type == 'cpu' else torch.cuda.is_bf16_supported()}; "
          f"train={len(train_x)} test={len(test_x)} (eval batch {cfg.data.eval_batch_size}); median of {args.epochs} after {args.warmup} warm-up; "
          f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"GEMM peak ({gemm_size}x{gemm_size} torch.mm): " + ", ".join(f"{DTYPE_NAMES[d]} {p:.1f}" for d, p in peaks.items())
          + " GFLOP/s; 'of peak' is of the peak in the row's dtype")
    print(f"MFLOP per image (matrix products and convolutions): training step {step_flops / 1e6:.3f} (3 x its forward), "
          + ", ".join(f"{name.removeprefix('eval ')} {f / 1e6:.3f}" for name, f in flops.items()))
    print(f"{'path':<15}{'variant':<22}{'s/epoch':>9}{'images/s':>11}{'GFLOP/s':>9}{'of peak':>9}   timed epochs (s)")
    rate = {}
    for (path, name), durations in runs.items():
        median = statistics.median(durations[args.warmup :])
        rate[path, name] = (len(test_x) if name.startswith("eval") else len(train_x)) / median
        dtype = next(d for d in peaks if DTYPE_NAMES[d] == path) if name.startswith("eval") else compute_dtype(on_path(cfg, path))
        gflops = rate[path, name] * flops.get(name, step_flops) / 1e9
        timed = " ".join(f"{d:.2f}" for d in durations[args.warmup :])
        print(f"{path:<15}{name:<22}{median:>9.3f}{rate[path, name]:>11.0f}{gflops:>9.1f}{gflops / peaks[dtype]:>9.1%}   {timed}")
    for path in paths:
        a = rate[path, "(a) aevae"]
        versus_fp32 = f"   (a) over fp32 (a) = {a / rate['fp32', '(a) aevae']:.3f}" if "fp32" in paths else ""
        versus_c = f"   a/c = {a / rate[path, '(c) dataloader']:.3f}" if (path, "(c) dataloader") in rate else ""
        print(f"{path:<15}a/b = {a / rate[path, '(b) plain']:.3f}{versus_fp32}{versus_c}")


if __name__ == "__main__":
    main()
