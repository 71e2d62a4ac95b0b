"""What a training costs beyond its steps when it logs to MLflow: one short training (`stages.train.run`
on the bundled digits, a real SQLite store in a temporary directory) timed with MLflow's async
logging queue as it comes (`MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=0`: the queue's thread polls
with a 1 s timeout, which each run's end waits out) and as aevae sets it (`=1`: the thread waits on
its stop event, so ending the run returns at once). The variants alternate, `--repeats` times each;
the table shows the median. The anomaly stage trains one such model per class (40 in the study).

    python benchmarks/run_end.py --repeats 3
"""

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from aevae.stages import schema
from aevae.config import register_configs
from aevae.run.logs import quiet_libraries
from aevae.stages import train

REPO_ROOT = Path(__file__).resolve().parents[1]
BUFFERING = "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"
VARIANTS = {"mlflow default (0)": "0", "aevae (1)": "1"}


def timed_training(workdir: Path, run: int, epochs: int) -> float:
    """Seconds of one `train.run` of a digits VAE logging to the store under `workdir`."""
    overrides = [
        f"trainer.max_epochs={epochs}",
        "trainer.progress=none",
        f"logger.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
        f"output_dir={workdir / f'run_{run}'}",
    ]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    start = time.perf_counter()
    train.run(cfg)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed trainings per variant (median reported)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    register_configs(schema("train"))
    quiet_libraries()
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        runs = itertools.count()
        timed_training(workdir, next(runs), args.epochs)  # warm-up: creates the store, imports, first-call costs
        for _ in range(args.repeats):
            for name, value in VARIANTS.items():
                os.environ[BUFFERING] = value
                seconds[name].append(timed_training(workdir, next(runs), args.epochs))
    print(f"digits VAE, {args.epochs} epochs, MLflow SQLite store; median of {args.repeats}; 1-min load average {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<22}{'s/training':>12}   all (s)")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, values in seconds.items():
        print(f"{name:<22}{medians[name]:>12.2f}   " + " ".join(f"{v:.2f}" for v in values))
    default, ours = medians.values()
    print(f"saved per training: {default - ours:.2f} s   default/aevae = {default / ours:.2f}")


if __name__ == "__main__":
    main()
