"""The benchmarks still run against the current code (tiny runs, not measurements)."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_throughput_benchmark_runs_and_prints_its_ratios(tmp_path):
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput.py"), "--epochs", "1", "--train-limit", "256"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(a) aevae" in result.stdout and "a/b = " in result.stdout and "a/c = " in result.stdout
    assert list(tmp_path.iterdir()) == []  # writes nothing


def test_run_end_benchmark_runs_both_variants_and_prints_the_saving(tmp_path):
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "run_end.py"), "--repeats", "1", "--epochs", "1"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mlflow default (0)" in result.stdout and "aevae (1)" in result.stdout and "default/aevae = " in result.stdout
    assert list(tmp_path.iterdir()) == []  # the store and the runs live in a temporary directory


def test_process_exit_benchmark_runs_both_variants_and_prints_the_saving(tmp_path):
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "process_exit.py"), "--repeats", "1"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "as it comes" in result.stdout and "gc.freeze() last (aevae)" in result.stdout and "saved per process: " in result.stdout
    assert list(tmp_path.iterdir()) == []
