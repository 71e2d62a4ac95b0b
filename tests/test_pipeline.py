"""The real dvc.yaml, reproduced with `dvc repro` in a temporary git repository (tiny params)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from conftest import REPO_ROOT

TINY_PARAMS = {
    "models.ae.epochs": 2,
    "models.vae.epochs": 2,
    "evaluate.iw_samples": 8,
    "anomaly.normal_classes": "0,1",
    "anomaly.epochs": 1,
    "probe.labels_per_class": "1,5",
    "probe.repeats": 2,
}
AE_BRANCH = {"prepare", "train@ae", "anomaly@ae"}
VAE_BRANCH = {"train@vae", "anomaly@vae", "evaluate", "probe", "report"}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A git repository holding a copy of the project with tiny params, after one `dvc repro`."""
    repo = tmp_path_factory.mktemp("study")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO_ROOT / name).is_file() and not name.startswith(("data/", "models/", "reports/")):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in TINY_PARAMS.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("AEVAE_RUN_GROUP", None)
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "study"]):
        run(args, repo, env)
    first = run(["dvc", "repro"], repo, env)
    return repo, env, first


@pytest.mark.slow
def test_repro_runs_every_stage_and_writes_the_report(study):
    repo, env, first = study
    assert stages_run(first) == AE_BRANCH | VAE_BRANCH
    evaluation = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    assert {"ae/test/mse", "vae/test/mse", "vae/test/elbo", "vae/test/nll_iwae"} <= evaluation.keys()
    anomaly = json.loads((repo / "reports/anomaly/vae/metrics.json").read_text())
    assert {"anomaly/vae/auroc/class_0", "anomaly/vae/auroc/mean", "anomaly/pca/auroc/mean"} <= anomaly.keys()
    probe = json.loads((repo / "reports/probe/metrics.json").read_text())
    assert {"probe/ae/n5/acc_mean", "probe/vae/n1/acc_mean", "probe/pixels/all/acc_mean"} <= probe.keys()
    report = (repo / "reports/report.md").read_text()
    assert "| metric | ae | vae |" in report and "test/nll_iwae" in report and "anomaly/auroc/mean" in report
    assert (repo / "reports/report.html").read_text().startswith("<!DOCTYPE html>")

    metrics_show = run(["dvc", "metrics", "show", "--json"], repo, env)
    assert "val/elbo" in metrics_show and "anomaly/ae/auroc/mean" in metrics_show
    assert "nothing to reproduce" in run(["dvc", "repro"], repo, env).lower() or stages_run(run(["dvc", "status"], repo, env)) == set()


@pytest.mark.slow
def test_repro_groups_and_tags_every_stage_in_mlflow(study):
    repo, _, _ = study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aevae")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    children = [r for r in runs if r.data.tags.get("aevae.role") != "parent"]
    dvc_stages = {r.data.tags.get("aevae.dvc_stage") for r in children}
    assert AE_BRANCH - {"prepare"} | VAE_BRANCH <= dvc_stages
    parents = {r.data.tags.get("mlflow.parentRunId") for r in children}
    assert len(parents) == 1 and None not in parents  # one pipeline execution, one group
    assert all(r.data.tags.get("mlflow.source.git.commit") for r in children)
    assert {r.data.tags["aevae.dataset"] for r in children} == {"digits"}


@pytest.mark.slow
def test_a_vae_param_reruns_only_the_vae_branch(study):
    repo, env, _ = study
    output = run(["dvc", "exp", "run", "-S", "models.vae.latent_dim=3"], repo, env)
    assert stages_run(output) == VAE_BRANCH
    assert "models.vae.latent_dim" in run(["dvc", "params", "diff"], repo, env)
