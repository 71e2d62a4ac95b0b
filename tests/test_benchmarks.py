"""The throughput benchmark still runs against the current code (a tiny run, not a measurement)."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_throughput_benchmark_runs_and_prints_its_ratios(tmp_path):
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput.py"), "--epochs", "1", "--train-limit", "256"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(a) aevae" in result.stdout and "a/b = " in result.stdout and "a/c = " in result.stdout
    assert list(tmp_path.iterdir()) == []  # writes nothing
