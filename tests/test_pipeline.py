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
    "models.dae.epochs": 1,
    "models.vae.epochs": 2,
    "models.beta_vae.epochs": 1,
    "evaluate.iw_samples": 8,
    "anomaly.normal_classes": "0,1",
    "anomaly.epochs": 1,
    "probe.labels_per_class": "1,5",
    "probe.repeats": 2,
}
OTHER_STAGES = {"prepare", "train@ae", "train@dae", "train@beta_vae", "anomaly@ae", "anomaly@dae", "anomaly@beta_vae"}
VAE_BRANCH = {"train@vae", "anomaly@vae", "evaluate", "probe", "report"}
MODELS = ("ae", "dae", "vae", "beta_vae")


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
        if (REPO_ROOT / name).is_file() and not name.startswith(("data/prepared/", "models/", "reports/")):
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
    assert stages_run(first) == OTHER_STAGES | VAE_BRANCH
    evaluation = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    assert {f"{m}/test/mse" for m in MODELS} | {"vae/test/elbo", "vae/test/nll_iwae", "beta_vae/test/nll_iwae"} <= evaluation.keys()
    assert all(isinstance(value, float) for value in evaluation.values())  # numbers only; the protocol has its own file
    assert json.loads((repo / "reports/evaluate/protocol.json").read_text())["vae"]["iwae_samples"] == 8
    anomaly = json.loads((repo / "reports/anomaly/vae/metrics.json").read_text())
    assert {"anomaly/vae/auroc/class_0", "anomaly/vae/auroc/mean", "anomaly/pca/auroc/mean"} <= anomaly.keys()
    probe = json.loads((repo / "reports/probe/metrics.json").read_text())
    assert {f"probe/{m}/n5/acc_mean" for m in MODELS} | {"probe/pixels/all/acc_mean"} <= probe.keys()
    report = (repo / "reports/report.md").read_text()
    assert report.index("## Summary") < report.index("## Training")
    assert "| metric | ae | dae | vae | beta_vae |" in report and "test/nll_iwae" in report and "anomaly/auroc/mean" in report
    html = (repo / "reports/report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and 'src="reports' not in html
    assert (repo / "reports/roc.png").stat().st_size > 0

    metrics_show = run(["dvc", "metrics", "show", "--json"], repo, env)
    assert "val/elbo" in metrics_show and "anomaly/ae/auroc/mean" in metrics_show
    again = run(["dvc", "repro"], repo, env)
    assert stages_run(again) == set()
    assert "up to date" in run(["dvc", "status"], repo, env).lower()


@pytest.mark.slow
def test_repro_nests_stage_and_class_runs_under_one_pipeline_parent(study):
    repo, _, _ = study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aevae")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    by_id = {r.info.run_id: r for r in runs}
    (pipeline,) = [r for r in runs if r.data.tags.get("aevae.role") == "parent"]
    stage_runs = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == pipeline.info.run_id}
    assert set(stage_runs) == {*(f"train/{m}" for m in MODELS), *(f"anomaly/{m}" for m in MODELS), "evaluate", "probe", "report"}
    for label in ("ae", "vae"):
        classes = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_runs[f"anomaly/{label}"].info.run_id)
        assert classes == [f"anomaly/{label}/class_0", f"anomaly/{label}/class_1"]
    per_model = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_runs["evaluate"].info.run_id]
    assert sorted(r.info.run_name for r in per_model) == sorted(f"evaluate/{m}" for m in MODELS)
    assert all("test/mse" in r.data.metrics for r in per_model)  # one column across models
    children = [r for r in runs if r is not pipeline]
    assert all(r.data.tags.get("aevae.dvc_stage") and r.data.tags.get("mlflow.source.git.commit") for r in children)
    assert {r.data.tags["aevae.dataset"] for r in children} == {"digits"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] in by_id for r in children)
    assert not (repo / "mlruns").exists()  # artifacts live beside the store


@pytest.mark.slow
def test_a_data_config_change_marks_every_stage_that_composes_it(study):
    repo, env, _ = study
    conf = repo / "conf/data/digits.yaml"
    original = conf.read_text()
    conf.write_text(original.replace("batch_size: 64", "batch_size: 32"))
    try:
        status = json.loads(run(["dvc", "status", "--json"], repo, env).strip().splitlines()[-1])
    finally:
        conf.write_text(original)
    expected = {*(f"train@{m}" for m in MODELS), *(f"anomaly@{m}" for m in MODELS), "evaluate", "probe"}
    assert expected <= set(status), status
    assert "up to date" in run(["dvc", "status"], repo, env).lower()


@pytest.mark.slow
def test_a_vae_param_reruns_only_the_vae_branch(study):
    repo, env, _ = study
    output = run(["dvc", "exp", "run", "-S", "models.vae.latent_dim=3"], repo, env)
    assert stages_run(output) == VAE_BRANCH
    assert "models.vae.latent_dim" in run(["dvc", "params", "diff"], repo, env)
