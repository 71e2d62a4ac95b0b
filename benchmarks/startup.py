"""What a stage costs before it does anything: each entry point of `pipelines/` run so that it
exits at once (`--cfg job`: Hydra composes the config, prints it and returns), timed as a whole
process beside `python -c "import torch"`, the floor every stage that touches a tensor pays. The
variants alternate, `--repeats` rounds of all of them; the table shows the median seconds and
the ratio to torch's, after one untimed round. Nothing is written; the processes run in a
temporary working directory. The figures are wall-clock: the header prints the load average.

    python benchmarks/startup.py --repeats 5
    python benchmarks/startup.py --repeats 3 prepare report   # some stages only
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "import torch"
EXIT_AT_ONCE = ("--cfg", "job")


def stages() -> list[str]:
    """The entry points in `pipelines/`, by name."""
    return sorted(path.stem for path in (ROOT / "pipelines").glob("*.py"))


def command(variant: str) -> list[str]:
    if variant == BASELINE:
        return [sys.executable, "-c", BASELINE]
    return [sys.executable, str(ROOT / "pipelines" / f"{variant}.py"), *EXIT_AT_ONCE]


def seconds(variant: str, cwd: str) -> float:
    """The wall-clock seconds of one process of `variant`; it must exit with status 0."""
    start = time.perf_counter()
    result = subprocess.run(command(variant), cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command(variant))} exited with {result.returncode}: {result.stderr.strip()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="processes per variant (median reported)")
    parser.add_argument("stages", nargs="*", help="entry points to time (default: all of pipelines/)")
    args = parser.parse_args()
    unknown = sorted(set(args.stages) - set(stages()))
    if unknown:
        parser.error(f"no entry point {', '.join(unknown)} in pipelines/")
    variants = [BASELINE, *(args.stages or stages())]
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:  # warm-up: the file system cache
            seconds(variant, tmp)
        for _ in range(args.repeats):
            for variant in variants:
                times[variant].append(seconds(variant, tmp))
    loads = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"`<entry point> {' '.join(EXIT_AT_ONCE)}` vs `python -c \"{BASELINE}\"`; median of {args.repeats}; 1-min load average {loads} on {os.cpu_count()} CPUs")
    print(f"{'variant':20s} {'s':>6s} {'x torch':>8s}   all (s)")
    floor = statistics.median(times[BASELINE])
    for variant, values in times.items():
        median = statistics.median(values)
        print(f"{variant:20s} {median:6.2f} {median / floor:8.2f}   {' '.join(f'{v:.2f}' for v in values)}")


if __name__ == "__main__":
    main()
