"""A `dvc repro`'s parent run spans its stages, and `make repro` ends with each stage's wall time
read from the stages' runs (a real SQLite MLflow store). No training, but MLflow's store and a
second process: about 20 s, outside the fast lane."""

import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from omegaconf import OmegaConf

from aevae.records.timings import stage_times
from aevae.records.tracking import GROUP_TAG, ROLE_TAG, open_run, repro_group


def test_the_group_parent_spans_its_runs_and_the_table_shows_each(tmp_path, tracking_uri, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the group is that of the repro of tmp_path's params.yaml
    Path("params.yaml").write_text("seed: 0\n")
    group = repro_group(Path("params.yaml"))
    logger = OmegaConf.create({"name": "mlflow", "tracking_uri": tracking_uri, "experiment_name": "aevae", "tags": {}})
    for stage, seconds in (("prepare", 0.1), ("train/vae", 1.2)):
        with open_run(logger, name=stage, root=tmp_path, group=group):
            time.sleep(seconds)

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get(ROLE_TAG) == "parent"]
    first, last = sorted((run for run in runs if run is not parent), key=lambda run: run.info.start_time)
    assert parent.data.tags[GROUP_TAG] == group and parent.info.status == "FINISHED"
    assert parent.info.start_time <= first.info.start_time and parent.info.end_time >= last.info.end_time
    assert parent.info.end_time - parent.info.start_time >= 1300  # ms: both stages, not the 8 ms of creating it

    rows, span = stage_times(client, group)
    assert [name for name, _ in rows] == ["prepare", "train/vae"]
    assert rows[1][1] >= 1.2 and span >= rows[0][1] + rows[1][1]

    shown = subprocess.run(
        [sys.executable, "-m", "aevae.records.timings"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=os.environ | {"MLFLOW_TRACKING_URI": tracking_uri},
    )
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout.splitlines()
    assert table[0].startswith(f"stage wall times ({group}") and [row.split()[0] for row in table[1:3]] == ["prepare", "train/vae"]
    assert table[2].split()[-1] in ("1s", "2s") and table[3].split()[:2] == ["first", "start"]
