"""The study shared through a DVC remote and varied through DVC's experiment queue, for real: the
session's reproduced study (tiny params) committed and pushed with `make remote` + `dvc push` to a
local directory remote, `git clone` + `dvc pull` elsewhere, then queued experiments run by
`dvc queue start` workers into the clone's one MLflow store."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from mlflow import MlflowClient

from aevae.records.tracking import GROUP_TAG, ROLE_TAG

from conftest import Study, run_command, study_env

QUEUE_TIMEOUT_S = 600
QUEUE_STATES = {"Queued", "Running", "Success", "Failed"}
UP_TO_DATE = "Data and pipelines are up to date."
PROBE_BRANCH = {"probe", "report"}  # the stages (and MLflow runs) that a change of probe.repeats re-runs, cheap ones
RERUN = {"configure"} | PROBE_BRANCH  # configure checks params.yaml first and writes the probe's overrides
VENV = Path(sys.executable).parents[1]


def environment(repo: Path) -> dict[str, str]:
    """The study's environment; the stages import the repository's own `src` (what DVC hashes)."""
    identity = {f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER") for key, value in (("NAME", "t"), ("EMAIL", "t@t"))}
    return {**study_env(), **identity, "PYTHONPATH": str(repo / "src")}


def run(args: list[str], cwd: Path) -> str:
    """Run a command in `cwd` (a repository); fail the test with its output when it fails."""
    return run_command(args, cwd, environment(cwd))


def make(target: str, repo: Path, *variables: str) -> str:
    """`make <target>` of the repository's Makefile with this interpreter's venv (not set up again)."""
    return run(["make", "-s", "-o", f"{VENV}/.installed", target, f"VENV={VENV}", *variables], repo)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def without_dvc_tmp(directory: str, names: list[str]) -> list[str]:
    """copytree's filter: leave out DVC's locks, queue and temporary workspaces."""
    return ["tmp"] if Path(directory).name == ".dvc" else []


@pytest.fixture(scope="module")
def origin(study: Study, tmp_path_factory) -> Path:
    """A copy of the session's reproduced study (which stays as it is), committed with its lock
    file and metrics, given a local directory as its remote by `make remote` and pushed."""
    repo, store = tmp_path_factory.mktemp("origin") / "aevae", tmp_path_factory.mktemp("dvc-store")
    shutil.copytree(study.repo, repo, symlinks=True, ignore=without_dvc_tmp)
    run(["git", "add", "-A"], repo)  # dvc.lock, the uncached metrics and plots
    run(["git", "commit", "-qm", "reproduced"], repo)
    make("remote", repo, f"DVC_STORE={store}")
    run(["git", "commit", "-qm", "remote", "--", ".dvc/config"], repo)
    run(["dvc", "push"], repo)
    return repo


@pytest.fixture(scope="module")
def clone(origin, tmp_path_factory) -> tuple[Path, str]:
    """A `git clone` of the origin and its `dvc status` before `dvc pull`, after which it holds the data."""
    path = tmp_path_factory.mktemp("clone") / "aevae"
    run(["git", "clone", "-q", str(origin), str(path)], origin)
    before = run(["dvc", "status"], path)
    run(["dvc", "pull"], path)
    return path, before


@pytest.mark.slow
def test_a_clone_pulls_the_study_from_the_remote_and_reproduces_nothing(origin, clone):
    path, before = clone
    assert "Cache and remote 'store' are in sync." in run(["dvc", "status", "--cloud"], origin)
    assert UP_TO_DATE not in before and "not in cache" in before  # git alone does not carry the data
    assert run(["dvc", "status"], path).strip() == UP_TO_DATE
    assert stages_run(run(["dvc", "repro"], path)) == set()
    for name in ("data/prepared/digits.pt", "models/vae/checkpoints/best.ckpt", "reports/report.html"):
        assert digest(path / name) == digest(origin / name), name


def queue_status(repo: Path) -> dict[str, str]:
    """Experiment name -> state (Queued, Running, Success, Failed) from `dvc queue status`."""
    rows = [line.split() for line in run(["dvc", "queue", "status"], repo).splitlines()]
    return {row[1]: row[-1] for row in rows if len(row) >= 3 and row[-1] in QUEUE_STATES}


def wait_for_queue(repo: Path, timeout_s: float = QUEUE_TIMEOUT_S) -> tuple[dict[str, str], int]:
    """Poll `dvc queue status` until no experiment is queued or running: the final states, and the
    most experiments seen running at once."""
    most_running = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = queue_status(repo)
        most_running = max(most_running, list(states.values()).count("Running"))
        if not {"Queued", "Running"} & set(states.values()):
            return states, most_running
        time.sleep(2)
    raise TimeoutError(f"dvc queue still busy after {timeout_s}s: {states}")


def shown_experiments(repo: Path) -> dict[str, dict]:
    """Experiment name -> its `data` (params, metrics) in `dvc exp show --json`."""
    shown, _ = json.JSONDecoder().raw_decode(run(["dvc", "exp", "show", "--json"], repo))  # stdout, then any warnings
    return {
        rev["name"]: rev["data"]
        for commit in shown for experiment in commit.get("experiments") or [] for rev in experiment["revs"] if rev.get("data")
    }


def start_workers(repo: Path, jobs: int) -> None:
    """`dvc queue start --jobs <jobs>`. Its workers outlive it and keep its output open, so that
    goes to a file (a pipe would wait for the workers to finish)."""
    with (repo.parent / "queue-start.log").open("w") as log:
        result = subprocess.run(["dvc", "queue", "start", "--jobs", str(jobs)], cwd=repo, env=environment(repo), stdout=log, stderr=subprocess.STDOUT, timeout=120)
    assert result.returncode == 0, (repo.parent / "queue-start.log").read_text()


class Queued(NamedTuple):
    repo: Path
    repeats: dict[str, int]  # experiment name -> its probe.repeats
    states: dict[str, str]  # experiment name -> final queue state
    most_running: int  # the most experiments seen running at once


@pytest.fixture(scope="module")
def queued(clone) -> Queued:
    """The clone after two queued experiments (probe.repeats one and two above the baseline's) ran
    two at a time."""
    path, _ = clone
    baseline = yaml.safe_load((path / "params.yaml").read_text())["probe"]["repeats"]
    repeats = {f"repeats-{n}": n for n in (baseline + 1, baseline + 2)}
    for name, n in repeats.items():
        run(["dvc", "exp", "run", "--queue", "--name", name, "-S", f"probe.repeats={n}"], path)
    start_workers(path, jobs=2)
    try:
        return Queued(path, repeats, *wait_for_queue(path))
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=path, env=environment(path), capture_output=True, timeout=120)


def probe_runs(repo: Path) -> tuple[list, list]:
    """(every run, the `probe` runs) of the repository's MLflow store."""
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("aevae").experiment_id], max_results=500)
    return runs, [run for run in runs if run.info.run_name == "probe"]


@pytest.mark.slow
def test_queued_experiments_report_their_results_in_exp_show(queued):
    logs = {name: run(["dvc", "queue", "logs", name], queued.repo) for name in queued.repeats}
    assert queued.states == dict.fromkeys(queued.repeats, "Success"), "\n".join(text[-3000:] for text in logs.values())
    assert all(stages_run(text) == RERUN for text in logs.values()), {name: sorted(stages_run(text)) for name, text in logs.items()}

    shown = shown_experiments(queued.repo)
    workspace = {name: json.loads((queued.repo / name).read_text()) for name in ("reports/probe/metrics.json", "reports/evaluate/metrics.json")}
    for name, n in queued.repeats.items():
        assert shown[name]["params"]["params.yaml"]["data"]["probe"]["repeats"] == n
        metrics = {file: value["data"] for file, value in shown[name]["metrics"].items()}
        assert metrics["reports/evaluate/metrics.json"] == workspace["reports/evaluate/metrics.json"]  # not re-run
        assert metrics["reports/probe/metrics.json"].keys() == workspace["reports/probe/metrics.json"].keys()
        assert metrics["reports/probe/metrics.json"] != workspace["reports/probe/metrics.json"]  # its own repeats
    first, second = (shown[name]["metrics"]["reports/probe/metrics.json"]["data"] for name in queued.repeats)
    assert first != second
    header, _, *rows = [line for line in make("exps", queued.repo).splitlines() if line.startswith("|")]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[0] == "Experiment" and "reports/summary.json:vae/test/nll_iwae" in columns and len(columns) <= 7, columns
    assert all(any(f"[{name}]" in row for row in rows) for name in queued.repeats), rows
    assert run(["dvc", "status"], queued.repo).strip() == UP_TO_DATE  # the workspace itself is untouched


@pytest.mark.slow
def test_queued_experiments_log_into_the_project_store(queued):
    runs, probes = probe_runs(queued.repo)
    assert sorted(int(run.data.params["repeats"]) for run in probes) == sorted(queued.repeats.values())
    stage_runs = [run for run in runs if run.info.run_name in PROBE_BRANCH]
    assert len(stage_runs) == 2 * len(queued.repeats) and all(run.info.status == "FINISHED" for run in stage_runs)
    assert all(run.data.tags["aevae.dvc_stage"] == run.info.run_name for run in stage_runs)
    assert queued.most_running == 2, "`dvc queue start --jobs 2` ran the experiments one after the other"


@pytest.mark.slow
def test_each_queued_experiment_has_its_own_pipeline_parent(queued):
    runs, probes = probe_runs(queued.repo)
    parents = {run.info.run_id: run for run in runs if run.data.tags.get(ROLE_TAG) == "parent"}
    assert len({run.data.tags["mlflow.parentRunId"] for run in probes}) == len(queued.repeats)
    for probe in probes:
        parent = parents[probe.data.tags["mlflow.parentRunId"]]
        siblings = {run.info.run_name for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
        assert siblings == PROBE_BRANCH and parent.data.tags[GROUP_TAG] == probe.data.tags[GROUP_TAG]
