"""The benchmarks still run against the current code (tiny runs, not measurements)."""

import subprocess
import sys

from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, REPO_ROOT


def test_throughput_benchmark_trains_as_the_study_and_prints_its_fraction_of_the_gemm_peak(tmp_path):
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "throughput.py"), "--epochs", "1", "--train-limit", "256", "--gemm-size", "256", "--paths", "fp32,bf16", "net.hidden_dims=[32]"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        study_vae = compose("train", overrides=["model=vae", "data=mnist"])  # conf/'s defaults are the study's
    assert f"batch={study_vae.data.batch_size} lr={study_vae.model.lr} lr_schedule={study_vae.model.lr_schedule}" in result.stdout
    # 784-32-(2x16) encoder and 16-32-784 decoder: 51,712 multiply-adds forward, 2 FLOPs each, 3 forwards a step
    assert "training step 0.310 (3 x its forward)" in result.stdout
    assert "GEMM peak (256x256 torch.mm): fp32 " in result.stdout and "of peak" in result.stdout
    assert "(a) aevae" in result.stdout and "a/b = " in result.stdout and "a/c = " in result.stdout
    rows = {tuple(line.split()[:3]) for line in result.stdout.splitlines()}
    assert {("fp32", "(a)", "aevae"), ("fp32", "(b)", "plain"), ("bf16", "(a)", "aevae"), ("bf16", "(b)", "plain"), ("bf16", "a/b", "=")} <= rows
    assert "GEMM peak (256x256 torch.mm): fp32 " in result.stdout and ", bf16 " in result.stdout  # each path against the peak in its dtype
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


def test_startup_benchmark_times_entry_points_beside_torch(tmp_path):
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "startup.py"), "--repeats", "1", "prepare", "report"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0] for line in result.stdout.splitlines()[2:]}
    assert "x torch" in result.stdout and rows == {"import", "prepare", "report"}
    assert list(tmp_path.iterdir()) == []


def test_prepare_benchmark_exports_pngs_and_times_the_stage(tmp_path):
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "prepare.py"), "--limit", "100", "--repeats", "1", "--workers", "2"]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exported 200 PNG files of 28x28" in result.stdout and "prepare (whole process), 1 runs: median" in result.stdout
    assert list(tmp_path.iterdir()) == []
