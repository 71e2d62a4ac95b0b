"""The real dvc.yaml, reproduced with `dvc repro` in a temporary git repository (tiny params;
the `study` fixture of conftest.py)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from conftest import IMPORT_LOG, REPO_ROOT, STUDY_PARAMS, run_command as run, stage_processes

OTHER_STAGES = {"configure", "prepare", "classifier", "train@ae", "train@dae", "train@beta_vae", "anomaly@ae", "anomaly@dae", "anomaly@beta_vae"}
VAE_BRANCH = {"configure", "train@vae", "anomaly@vae", "evaluate", "probe", "report"}
MODELS = ("ae", "dae", "vae", "beta_vae")
OVERRIDE_FILES = [f"{stage}/{m}" for stage in ("train", "anomaly") for m in MODELS]  # the test study's: every model also one-class
# what DVC itself prints around the stages' own lines
DVC_LINES = ("Running stage", "> ", "Updating lock file", "To track the changes", "To enable auto staging", "\tgit add", "\tdvc config", "Use `dvc push`")
# a training's progress under `dvc repro` (stdout not a terminal): `train/vae epoch 3/3 val/loss 109.3 eta 0s`
PROGRESS = re.compile(r"^(?P<run>\S+) epoch (?P<epoch>\d+)/(?P<epochs>\d+)( step \d+/\d+)?( \S+ \S+)? eta \S+$")
ITEM = re.compile(r"^\S+ \w+ \d+/\d+ eta \S+$")  # a stage's models trained in turn: `anomaly/ae class 3/10 eta 4m10s`


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.slow
def test_repro_runs_every_stage_and_writes_the_report(study):
    repo, env, first = study
    assert stages_run(first) == OTHER_STAGES | VAE_BRANCH
    evaluation = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    assert {f"{m}/test/mse" for m in MODELS} | {"vae/test/elbo", "vae/test/nll_iwae", "beta_vae/test/nll_iwae"} <= evaluation.keys()
    assert all(isinstance(value, float) for value in evaluation.values())  # numbers only; the protocol has its own file
    assert json.loads((repo / "reports/evaluate/protocol.json").read_text())["vae"]["iwae_samples"] == 8
    anomaly = json.loads((repo / "reports/anomaly/vae/metrics.json").read_text())
    assert {"anomaly/vae/auroc/class_0", "anomaly/vae/auroc/mean", "anomaly/pca16/auroc/mean", "anomaly/pixels_lof/auroc/mean", "anomaly/vae_latent_lof/auroc/mean"} <= anomaly.keys()
    probe = json.loads((repo / "reports/probe/metrics.json").read_text())
    assert {f"probe/{m}/n5/acc_mean" for m in MODELS} | {"probe/pixels/all/acc_mean"} <= probe.keys()
    report = (repo / "reports/report.md").read_text()
    assert report.index("## Summary") < report.index("## Training")
    assert "| metric | ae | dae | vae | beta_vae |" in report and "test/nll_iwae" in report and "| AUROC mean |" in report
    html = (repo / "reports/report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and 'src="reports' not in html
    assert (repo / "reports/roc.png").stat().st_size > 0

    metrics_show = run(["dvc", "metrics", "show", "--json"], repo, env)
    assert "val/elbo" in metrics_show and "anomaly/ae/auroc/mean" in metrics_show
    again = run(["dvc", "repro"], repo, env)
    assert stages_run(again) == set()
    assert "up to date" in run(["dvc", "status"], repo, env).lower()


@pytest.mark.slow
def test_repro_prints_one_line_per_stage_and_the_progress_of_every_training(study):
    progress = [match for line in study.output.splitlines() if (match := PROGRESS.match(line))]
    trainings = {f"train/{m}" for m in MODELS} | {f"anomaly/{m}/class_{c}" for m in MODELS for c in (0, 1)} | {"classifier"}
    assert {m["run"] for m in progress} == trainings  # each training's first and last epoch at least
    assert all(any(m["run"] == run and m["epoch"] == m["epochs"] for m in progress) for run in trainings)
    own = [line for line in study.output.splitlines() if line.strip() and not line.startswith(DVC_LINES) and not PROGRESS.match(line) and not ITEM.match(line)]
    assert len(own) <= len(stages_run(study.output)) + 1, "\n".join(own)  # + where the report and runs are
    assert any(line.startswith("  outputs: reports/report.md") and "runs table http" in line for line in own)
    assert not any(line.startswith("  outputs: models/") or "class_0 done" in line for line in own)


@pytest.mark.slow
def test_repro_nests_stage_and_class_runs_under_one_pipeline_parent(study):
    repo, _, _ = study
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aevae")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    by_id = {r.info.run_id: r for r in runs}
    (pipeline,) = [r for r in runs if r.data.tags.get("aevae.role") == "parent"]
    stage_runs = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == pipeline.info.run_id}
    assert set(stage_runs) == {*(f"train/{m}" for m in MODELS), *(f"anomaly/{m}" for m in MODELS), "classifier", "evaluate", "probe", "report"}
    # the parent spans its stages (not the milliseconds of its creation): MLflow shows the study's time
    assert pipeline.info.start_time <= min(r.info.start_time for r in stage_runs.values())
    assert pipeline.info.end_time >= max(r.info.end_time for r in stage_runs.values())
    for label in ("ae", "vae"):
        classes = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_runs[f"anomaly/{label}"].info.run_id)
        assert classes == [f"anomaly/{label}/class_0", f"anomaly/{label}/class_1"]
    per_model = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage_runs["evaluate"].info.run_id]
    assert sorted(r.info.run_name for r in per_model) == sorted(f"evaluate/{m}" for m in (*MODELS, "pca", "corrupted"))
    assert all("denoise/gaussian/psnr" in r.data.metrics for r in per_model)  # one column across models
    children = [r for r in runs if r is not pipeline]
    assert all(r.data.tags.get("aevae.dvc_stage") and r.data.tags.get("mlflow.source.git.commit") for r in children)
    assert {r.data.tags["aevae.dataset"] for r in children} == {"digits"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] in by_id for r in children)
    assert not (repo / "mlruns").exists()  # artifacts live beside the store


TRAININGS = {f"{stage}@{m}" for stage in ("train", "anomaly") for m in MODELS}
VAE_KIND = {f"{stage}@{m}" for stage in ("train", "anomaly") for m in ("vae", "beta_vae")}  # model kind vae (beta_vae: a config)
# A sample of files under src/ and conf/, each edited alone, and the stages whose code holds it:
# its import closure (lazy imports, the model kinds it composes or loads, the files its modules
# name) and the config options it composes. No stage of the study composes M2 or a conv net.
EDITS = [
    ("src/aevae/models/ssvae.py", set()),  # M2: no stage of this study trains or loads it
    ("conf/model/ssvae.yaml", set()),
    ("conf/net/conv.yaml", set()),  # an option no stage chooses
    ("src/aevae/models/vae.py", VAE_KIND | {"evaluate", "probe"}),  # evaluate and probe load every trained model
    ("conf/model/vae.yaml", VAE_KIND),  # beta_vae extends vae
    ("src/aevae/records/mlflow_model_code.py", TRAININGS | {"classifier", "report"}),  # the model code a training logs (report registers it)
    ("src/aevae/data/digits.py", TRAININGS | {"prepare", "classifier", "evaluate", "probe"}),
    ("conf/data/digits.yaml", TRAININGS | {"prepare", "classifier", "evaluate", "probe"}),
    ("src/aevae/reporting/report.py", {"report"}),
]


@pytest.mark.slow
def test_a_code_or_config_edit_marks_exactly_the_stages_that_run_it(study):
    """Each file of EDITS edited alone (a comment appended): after `configure`, `dvc status` names
    exactly the stages whose code holds it; with the file restored, everything is up to date."""
    repo, env, _ = study
    marked = {}
    for path, _ in EDITS:
        file = repo / path
        original = file.read_bytes()
        file.write_bytes(original + b"\n# edited\n")
        try:
            run(["dvc", "repro", "configure"], repo, env)
            marked[path] = set(json.loads(run(["dvc", "status", "--json"], repo, env).strip().splitlines()[-1]))
        finally:
            file.write_bytes(original)
    run(["dvc", "repro", "configure"], repo, env)
    assert "up to date" in run(["dvc", "status"], repo, env).lower()
    wrong = [f"{path}: marked {sorted(marked[path])}, expected {sorted(expected)}" for path, expected in EDITS if marked[path] != expected]
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_every_aevae_file_a_stage_ran_is_in_its_code_list(study):
    """Each stage process of the study's `dvc repro` (its aevae files logged at exit by
    tests/import_log) ran only files that its overrides file lists: lazy imports, model kinds
    found by name and Hydra's plugins included."""
    src = REPO_ROOT / "src"
    checked = set()
    for line in Path(study.env[IMPORT_LOG]).read_text().splitlines():
        record = json.loads(line)
        overrides = next((arg[1:] for arg in record["argv"] if arg.startswith("@overrides/")), None)
        if overrides is None:  # dvc itself, git hooks
            continue
        listed = {line.split()[1] for line in (study.repo / overrides).read_text().splitlines() if line.startswith("# ") and len(line.split()) == 3}
        ran = {str(Path(file).relative_to(REPO_ROOT)) for file in record["files"] if Path(file).is_relative_to(src)}
        assert ran <= listed, f"{overrides} lacks {sorted(ran - listed)}"
        checked.add(overrides)
    assert len(checked) == len(list((study.repo / "overrides").rglob("*.txt")))  # every stage of the study


def latest_run(repo, name: str):
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aevae").experiment_id
    return client.search_runs([experiment], f"attributes.run_name = '{name}'", order_by=["attributes.start_time DESC"], max_results=1)[0]


@pytest.mark.slow
def test_a_training_by_hand_is_the_studys_training(study):
    """`pipelines/train.py model=vae` with the study's data and epochs and no other override: the
    config and metrics of `train@vae` (conf/'s defaults are the study's)."""
    repo, env, _ = study
    data, epochs = STUDY_PARAMS["data.name"], STUDY_PARAMS["models.vae.max_epochs"]
    hand = ["model=vae", f"data={data}", f"data.prepared=data/prepared/{data}.pt", f"trainer.max_epochs={epochs}", "output_dir=outputs/hand"]
    run([sys.executable, "pipelines/train.py", *hand, "hydra.run.dir=outputs/hand/hydra"], repo, env)
    config = yaml.safe_load((repo / "outputs/hand/config.yaml").read_text())
    assert config["output_dir"] == "outputs/hand"
    assert config | {"output_dir": "models/vae"} == yaml.safe_load((repo / "models/vae/config.yaml").read_text())
    assert json.loads((repo / "outputs/hand/metrics.json").read_text()) == json.loads((repo / "models/vae/metrics.json").read_text())


def overrides_of(repo, stage: str) -> list[str]:
    """The overrides that configure wrote for `stage` (`train/vae`), without its comments."""
    return [line for line in (repo / "overrides" / f"{stage}.txt").read_text().splitlines() if not line.startswith("#")]


@pytest.mark.slow
def test_a_train_key_reaches_every_model_whose_entry_does_not_set_it(study):
    repo, env, _ = study
    params = (repo / "params.yaml").read_bytes()
    try:
        run(["dvc", "exp", "run", "-S", "+train.lr=2e-3", "-S", "+models.dae.lr=1e-3", "configure"], repo, env)
        with initialize_config_dir(config_dir=str(repo / "conf"), version_base="1.3"):
            lrs = {stage: compose(stage.split("/")[0], overrides_of(repo, stage)).model.lr for stage in OVERRIDE_FILES}
    finally:
        (repo / "params.yaml").write_bytes(params)
        run(["dvc", "repro", "configure"], repo, env)
    assert lrs == {stage: 1e-3 if stage.endswith("/dae") else 2e-3 for stage in OVERRIDE_FILES}
    assert "up to date" in run(["dvc", "status"], repo, env).lower()


@pytest.mark.slow
def test_a_vae_param_reaches_its_run_and_reruns_only_the_vae_branch(study):
    repo, env, _ = study
    output = run(["dvc", "exp", "run", "-S", "+models.vae.lr=0.003"], repo, env)
    assert stages_run(output) == VAE_BRANCH
    assert "models.vae.lr" in run(["dvc", "params", "diff"], repo, env)
    assert latest_run(repo, "train/vae").data.params["model.lr"] == "0.003"
    assert latest_run(repo, "anomaly/vae/class_0").data.params["model.lr"] == "0.003"


@pytest.mark.slow
def test_only_the_main_trainings_rerun_when_their_epochs_change(study):
    repo, env, _ = study
    output = run(["dvc", "exp", "run", "-S", "epochs.digits.train=1", "-S", "models.ae.max_epochs=1"], repo, env)
    assert stages_run(output) == {"configure", "train@ae", "evaluate", "probe", "report"}  # the one-class models keep epochs.digits.anomaly


def outputs_bytes(repo) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for d in ("models", "reports") for p in sorted((repo / d).rglob("*")) if p.is_file()} | {
        "dvc.lock": (repo / "dvc.lock").read_bytes()
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["-S", "+seeed=1"], "error: params.yaml seeed: unknown key (did you mean seed?)"),
        (["-S", "+models.vae.lrr=0.003"], "error: params.yaml models.vae.lrr: not a key of vae's model, net, trainer or data config (did you mean lr?)"),
        (["-S", "+models.vae.latent_dim=abc"], "error: params.yaml models.vae.latent_dim: Error merging override model.latent_dim=abc"),
        (["-S", "models.vae.lrr=0.003"], "Could not override 'models.vae.lrr'"),  # refused by DVC itself: a key params.yaml lacks needs `+`
        (["-S", "+train.max_epochs=3"], "error: params.yaml train.max_epochs: every model sets its own (models.<name>.max_epochs), so it reaches no training"),
        (["-S", "+train.lrr=0.003"], "error: params.yaml train.lrr: not a key of ae's model, net, trainer or data config (did you mean lr?)"),
    ],
    ids=["top-level typo", "entry typo", "wrong type", "typo without +", "train key every entry overrides", "train key of no config"],
)
def test_a_bad_param_fails_in_one_line_and_changes_nothing(study, args, message):
    repo, env, _ = study
    before, params = outputs_bytes(repo), (repo / "params.yaml").read_bytes()
    result = subprocess.run(["dvc", "exp", "run", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    # not `git checkout`: DVC rewrites params.yaml and refreshes git's index, so an edit that keeps
    # the file's size (`+models.vae.lrr=0.003` here) reads as unchanged to git and stays
    (repo / "params.yaml").write_bytes(params)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output and len([line for line in output.splitlines() if line.startswith("error:")]) <= 1, output
    assert outputs_bytes(repo) == before


@pytest.mark.slow
def test_every_use_has_its_number_in_dvc_metrics(study):
    shown, _ = json.JSONDecoder().raw_decode(run(["dvc", "metrics", "show", "--json"], study.repo, study.env))
    metrics = {key: value for file in shown[""]["data"].values() for key, value in file["data"].items()}
    per_model = ["test/mse", "test/psnr", "test/fid", "denoise/gaussian/psnr", "denoise/mask/psnr"]
    per_vae = ["test/nll_iwae", "gen/fid", "gen/classes_covered", "latent/kl", "latent/active_units"]
    expected = [f"{m}/{key}" for m in (*MODELS, "pca") for key in per_model]
    expected += [f"{m}/{key}" for m in ("vae", "beta_vae") for key in per_vae]
    expected += [f"anomaly/{m}/auroc/mean" for m in (*MODELS, "pca16")] + [f"probe/{m}/n5/acc_mean" for m in (*MODELS, "pca", "pixels")]
    expected += [f"anomaly/{m}/auroc/mean" for m in ("pixels_knn", "pixels_lof", "pixels_iforest", "pixels_ocsvm", "pca16_lof", "ae_latent_lof", "ae_ensemble")]
    expected += ["anomaly/vae_iwae/auroc/mean", "anomaly/vae/levelled_off/mean", "corrupted/denoise/gaussian/psnr", "classifier/test/accuracy"]
    missing = [key for key in expected if not isinstance(metrics.get(key), float)]
    assert not missing, missing
    headline = json.loads((study.repo / "reports/summary.json").read_text())
    assert {"vae/latent/active_units", "dae/denoise/gaussian/psnr"} <= headline.keys()
    assert any(key.startswith("anomaly/pca16") for key in headline) and any(key.startswith("anomaly/pixels_") for key in headline)  # the best of each baseline
    client = MlflowClient(f"sqlite:///{study.repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("aevae").experiment_id
    (report,) = client.search_runs([experiment], "attributes.run_name = 'report'", order_by=["attributes.start_time DESC"], max_results=1)
    pipeline = client.get_run(report.data.tags["mlflow.parentRunId"])  # the latest reproduction's parent
    assert pipeline.data.metrics == pytest.approx(headline)  # the runs table compares reproductions
    card, summary = (study.repo / "reports/report.md").read_text().split("\n## ")[1:3]  # the data card, then the summary
    assert card.startswith("Data") and "| train | 1150 |" in card
    assert summary.startswith("Summary") and "| Generation: FID of prior samples" in summary


@pytest.mark.slow
def test_killing_dvc_ends_its_training_and_the_rerun_logs_each_epoch_once(study):
    repo, env, _ = study
    epochs = 60
    run(["dvc", "exp", "run", "-S", f"models.vae.max_epochs={epochs}", "configure"], repo, env)
    dvc = subprocess.Popen(["dvc", "repro", "train@vae"], cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = repo / "models/vae/checkpoints/last.ckpt"
    started = history.stat().st_mtime if history.exists() else 0
    deadline = time.monotonic() + 300
    while not (history.exists() and history.stat().st_mtime > started + 1):  # a few epochs in
        assert dvc.poll() is None and time.monotonic() < deadline, "the training ended before it could be killed"
        time.sleep(0.1)
    os.kill(dvc.pid, signal.SIGKILL)  # dvc alone: its shell and training are left to notice
    dvc.wait()
    killed_at = time.monotonic()
    while stage_processes(repo, "pipelines/train.py") and time.monotonic() < killed_at + 5:
        time.sleep(0.2)
    assert not stage_processes(repo, "pipelines/train.py"), "a training outlived the dvc that started it by 5 s"
    run(["dvc", "repro", "train@vae"], repo, env)
    rows = (repo / "models/vae/history.csv").read_text().strip().splitlines()[1:]
    assert len(rows) == epochs
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    resumed = latest_run(repo, "train/vae")
    steps = [point.step for point in client.get_metric_history(resumed.info.run_id, "val/loss")]
    assert len(steps) == epochs and len(set(steps)) == epochs


@pytest.mark.slow
def test_a_model_added_or_removed_in_params_is_the_only_edit(study):
    """Last: it changes the study's list of models."""
    repo, env, _ = study
    params = yaml.safe_load((repo / "params.yaml").read_text())
    models = params["models"]
    models["vae32"] = {**models["vae"], "latent_dim": 32, "max_epochs": 1}
    del models["dae"]
    params["anomaly"]["models"] = [name for name in models if name != "beta_vae"]  # one-class runs: a subset of models
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = run(["dvc", "repro"], repo, env)
    assert {"train@vae32", "anomaly@vae32", "evaluate", "probe", "report"} <= stages_run(output)
    shown, _ = json.JSONDecoder().raw_decode(run(["dvc", "metrics", "show", "--json"], repo, env))
    files = shown[""]["data"]
    assert "models/vae32/metrics.json" in files and not any("dae" in name.replace("beta_vae", "") for name in files)
    metrics = {key for file in files.values() for key in file["data"]}
    assert {"vae32/test/nll_iwae", "anomaly/vae32/auroc/mean", "probe/vae32/n5/acc_mean"} <= metrics
    assert not [key for key in metrics if key.startswith(("dae/", "anomaly/dae/", "probe/dae/", "anomaly/beta_vae/"))]
    report = (repo / "reports/report.md").read_text()
    assert "| use | better | ae | vae | beta_vae | vae32 | pca |" in report.replace(" †", "")  # † marks a model still improving
    tables = [line for line in report.splitlines() if line.startswith("| metric |")]
    assert all("dae |" not in line.replace("beta_vae", "") for line in tables) and any("vae32" in line for line in tables)
    assert "vae32/test/nll_iwae" in json.loads((repo / "reports/summary.json").read_text())
    plots = run(["dvc", "plots", "show", "--json"], repo, env)
    assert "models/vae32/history.csv" in plots and "reports/anomaly/vae32/roc.csv" in plots and "models/dae/" not in plots
    trained = latest_run(repo, "train/vae32")
    assert trained.data.tags["aevae.model"] == "vae32" and trained.data.params["model.latent_dim"] == "32"
    assert latest_run(repo, "anomaly/vae32").data.metrics["anomaly/vae32/auroc/mean"] > 0
    assert "up to date" in run(["dvc", "status"], repo, env).lower()
