"""The whole study (`dvc repro`) on the user's own data: a colour folder of class sub-folders, an
anomaly-layout folder (`train/good`, `test/good`, `test/<defect>`) and a table of vectors, each
built by the test in a temporary git repository holding a copy of the project."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import copy_project, run_command, set_params, study_env
from test_own_data import sample_photo_crops, save_png, shapes

# Tiny settings of every run here; `models` and the data are set per test.
TINY_STUDY = {
    "epochs.folder": {"train": 2, "anomaly": 2},
    "epochs.arrays": {"train": 2, "anomaly": 2},
    "train.batch_size": 16,
    "classifier.max_epochs": 1,
    "evaluate.iw_samples": 4,
    "anomaly.iw_samples": 4,
    "probe.labels_per_class": [1, 2],
    "probe.repeats": 2,
}


def own_study(tmp_path: Path, build_data, params: dict) -> tuple[Path, dict, str]:
    """A copy of the project with the data that `build_data(repo)` writes (returning its path
    relative to the repository) and `params`, committed, after one `dvc repro`."""
    repo = tmp_path / "study"
    copy_project(repo)
    path = build_data(repo)
    set_params(repo / "params.yaml", TINY_STUDY | params | {"data.path": path})
    env = study_env()
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "study"]):
        run_command(args, repo, env)
    return repo, env, run_command(["dvc", "repro"], repo, env)


def one_model(data: str, name: str, net: str, latent_dim: int) -> dict:
    """Params of a study of `data` (folder, arrays) with one model, `name` of its own kind, which
    also gets the anomaly stage."""
    entry = {"model": name, "net": net, "latent_dim": latent_dim}
    return {"data.name": data, "models": {name: entry}, "anomaly.models": [name]}


def metrics(repo: Path, path: str) -> dict[str, float]:
    return json.loads((repo / path).read_text())


def colour_photos(repo: Path) -> str:
    sample_photo_crops(repo / "data" / "raw" / "photos")
    return "data/raw/photos"


def anomaly_layout(repo: Path) -> str:
    """Normal parts are squares; a defect is the same with a scratch or a blob."""
    root = repo / "data" / "raw" / "part"
    for i, image in enumerate(shapes(120, 0)):
        save_png(root / "train" / "good" / f"{i:03d}.png", image)
    yy, xx = np.ogrid[:28, :28]
    for i, image in enumerate(shapes(60, 1)):
        defect = ("good", "scratch", "blob")[i % 3]
        if defect == "scratch":
            image[4:24, 14] = 255
        if defect == "blob":
            image[(yy - 20) ** 2 + (xx - 8) ** 2 <= 9] = 255
        save_png(root / "test" / defect / f"{i:03d}.png", image)
    return "data/raw/part"


def cancer_table(repo: Path) -> str:
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer()
    (repo / "data" / "raw").mkdir(parents=True, exist_ok=True)
    np.savez(repo / "data" / "raw" / "cancer.npz", x=table.data, y=table.target)
    return "data/raw/cancer.npz"


def test_a_colour_folder_runs_the_whole_study_with_conv_nets(tmp_path):
    repo, env, _ = own_study(tmp_path, colour_photos, one_model("folder", "vae", "conv", 8))
    evaluated = metrics(repo, "reports/evaluate/metrics.json")
    assert {"vae/test/psnr", "vae/test/bits_per_dim", "vae/gen/fid"} <= set(evaluated)
    assert metrics(repo, "reports/probe/metrics.json")["probe/vae/n2/acc_mean"] > 0
    assert 0 <= metrics(repo, "reports/anomaly/vae/metrics.json")["anomaly/vae/auroc/mean"] <= 1
    assert (repo / "models/vae/reconstructions.png").is_file() and (repo / "reports/evaluate/figures").is_dir()
    report = (repo / "reports/report.md").read_text()
    card = report[: report.index("## Summary")]
    assert "data/raw/photos" in card and "china" in card and "flower" in card and "3" in card
    assert run_command(["dvc", "status"], repo, env).strip().endswith("Data and pipelines are up to date.")
    save_png(repo / "data/raw/photos/china/extra.png", np.zeros((32, 32, 3), np.uint8))
    assert "prepare" in run_command(["dvc", "status"], repo, env)


def test_an_anomaly_layout_gives_each_defects_auroc_in_the_report_and_in_mlflow(tmp_path):
    repo, _, _ = own_study(tmp_path, anomaly_layout, one_model("folder", "ae", "mlp", 4))
    found = metrics(repo, "reports/anomaly/ae/metrics.json")
    for case in ("defects", "defect_scratch", "defect_blob"):
        assert 0 <= found[f"anomaly/ae/auroc/{case}"] <= 1 and 0 <= found[f"anomaly/pca4/auroc/{case}"] <= 1
    assert found["anomaly/pixels_lof/auroc/defects"] > 0.8  # a blob or scratch on a square stands out
    report = (repo / "reports/report.md").read_text()
    assert "defect_scratch" in report and "defect_blob" in report
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    (run,) = client.search_runs(client.search_experiments()[0].experiment_id.split(), "attributes.run_name = 'anomaly/ae'")
    assert {"anomaly/ae/auroc/defect_scratch", "anomaly/pixels_lof/auroc/defect_blob"} <= set(run.data.metrics)


def test_a_table_of_vectors_runs_the_one_class_protocol_beside_the_baselines(tmp_path):
    repo, _, output = own_study(tmp_path, cancer_table, one_model("arrays", "vae", "mlp", 4))
    found = metrics(repo, "reports/anomaly/vae/metrics.json")
    benign = 1  # scikit-learn's target: 0 malignant, 1 benign
    assert found[f"anomaly/pixels_lof/auroc/class_{benign}"] > 0.8
    assert 0 <= found[f"anomaly/vae/auroc/class_{benign}"] <= 1 and "anomaly/vae_iwae/auroc/mean" in found
    assert "anomaly/vae_ensemble/auroc/mean" in found and not any("error_per" in key for key in found)  # vectors: no total variation
    assert "vae/test/mse" in metrics(repo, "reports/evaluate/metrics.json")
    assert "skipped" in (repo / "reports/report.md").read_text()  # denoising and pictures: vectors have none
    assert "Traceback" not in output
