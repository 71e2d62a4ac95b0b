"""What a stage's process costs after its work is done: a Python process that imports what the
stages import (torch, Lightning, MLflow's SQL store, aevae's stages) and then exits, timed from
its last statement to its end, as it comes and with `gc.freeze()` as its last statement (what
`aevae.entry.main` does). The variants alternate, `--repeats` times each; the table shows the
median. `dvc repro` runs 13 stage processes; the tests run about as many more.

    python benchmarks/process_exit.py --repeats 5
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = "import mlflow.store.tracking.sqlalchemy_store, aevae.stages.train, aevae.stages.evaluate, aevae.stages.anomaly"
VARIANTS = {"as it comes": "", "gc.freeze() last (aevae)": "import gc; gc.freeze()"}


def exit_seconds(last_statement: str, stamp: Path) -> tuple[float, float]:
    """(seconds from the process's last statement to its end, seconds of the whole process)."""
    code = f"{IMPORTS}\nimport time\n{last_statement}\nopen({str(stamp)!r}, 'w').write(repr(time.time()))"
    start = time.time()
    subprocess.run([sys.executable, "-c", code], check=True)
    end = time.time()
    return end - float(stamp.read_text()), end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="processes per variant (median reported)")
    args = parser.parse_args()
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        stamp = Path(tmp) / "last_statement"
        exit_seconds("", stamp)  # warm-up: the file system cache
        for _ in range(args.repeats):
            for name, statement in VARIANTS.items():
                seconds[name].append(exit_seconds(statement, stamp))
    exits = {name: statistics.median(pair[0] for pair in pairs) for name, pairs in seconds.items()}
    print(f"median of {args.repeats} processes per variant")
    print(f"{'variant':28s} {'exit (s)':>9s} {'process (s)':>12s}")
    for name, pairs in seconds.items():
        print(f"{name:28s} {exits[name]:9.2f} {statistics.median(pair[1] for pair in pairs):12.2f}")
    as_it_comes, frozen = exits.values()
    print(f"saved per process: {as_it_comes - frozen:.2f} s")


if __name__ == "__main__":
    main()
