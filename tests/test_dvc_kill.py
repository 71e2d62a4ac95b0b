"""`kill -9` of `dvc` at any moment of a stage, start-up included: no stage process is left
5 s later, and the next `dvc repro` logs each epoch and step once and ends with the metrics of
an uninterrupted run (a copy of the project with tiny params in a temporary git repository)."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import STUDY_PARAMS, copy_project, run_command, set_params, study_env

KILL_AFTER_S = (0.5, 1, 2, 5)  # after DVC prints `Running stage 'train@vae'`
GONE_WITHIN_S = 5
STAGE = "train@vae"
ENTRY_POINT = "pipelines/train.py"


def stage_processes(repo: Path) -> list[int]:
    """Processes whose command line runs the stage's entry point in `repo` (its shell included)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if ENTRY_POINT in command and cwd == str(repo):
            found.append(int(proc.name))
    return found


def kill_dvc_after(repo: Path, env: dict[str, str], seconds: float) -> None:
    """Start `dvc repro` of the stage, `kill -9` dvc alone `seconds` after it starts the stage."""
    log = repo.parent / f"dvc-{seconds}.log"
    with log.open("w") as out:
        dvc = subprocess.Popen(["dvc", "repro", STAGE], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while f"Running stage '{STAGE}'" not in log.read_text():
        assert dvc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)
    time.sleep(seconds)
    assert dvc.poll() is None, f"the stage ended within {seconds} s: nothing to kill"
    os.kill(dvc.pid, signal.SIGKILL)  # dvc alone: its shell and stage are left to notice
    dvc.wait()
    killed_at = time.monotonic()
    while stage_processes(repo) and time.monotonic() < killed_at + GONE_WITHIN_S:
        time.sleep(0.1)
    assert not stage_processes(repo), f"a stage outlived the dvc killed {seconds} s into it by {GONE_WITHIN_S} s"


def steps_by_metric(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    return {name: sorted(point.step for point in client.get_metric_history(run_id, name)) for name in client.get_run(run_id).data.metrics}


@pytest.mark.slow
def test_killing_dvc_at_any_moment_of_a_stage_ends_it_and_the_rerun_is_whole(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project(repo)
    set_params(repo / "params.yaml", {**STUDY_PARAMS, "models.vae.max_epochs": 3})
    env = study_env()
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "study"]):
        run_command(args, repo, env)
    run_command(["dvc", "repro", STAGE], repo, env)  # uninterrupted
    uninterrupted = (repo / "models/vae/metrics.json").read_bytes()
    shutil.rmtree(repo / "models/vae/checkpoints")
    (repo / "models/vae/metrics.json").unlink()

    for seconds in KILL_AFTER_S:
        kill_dvc_after(repo, env, seconds)
    run_command(["dvc", "repro", STAGE], repo, env)

    assert (repo / "models/vae/metrics.json").read_bytes() == uninterrupted
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aevae").experiment_id
    first, *_, last = client.search_runs([experiment], "attributes.run_name = 'train/vae'", order_by=["attributes.start_time ASC"])
    assert first.info.status == last.info.status == "FINISHED"
    expected, got = steps_by_metric(client, first.info.run_id), steps_by_metric(client, last.info.run_id)
    # each step once (`epoch`: Lightning logs it beside both an epoch's validation and its training metrics)
    assert all(len(steps) == len(set(steps)) for name, steps in expected.items() if name != "epoch"), expected
    assert got == expected  # every metric at every step of the uninterrupted run, once
