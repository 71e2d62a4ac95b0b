"""Shared fixtures: config composition, a temporary MLflow store, the vendored MNIST copy, one
`dvc repro` of the study with tiny params (shared by the session), a real `mlflow server`.

The session also checks that the tests leave the repository as they found it: any new path
(an `mlruns/`, `outputs/`, `mlflow.db`, ...) reported by `git status` fails the run.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from aevae.config import register_configs
from aevae.stages import schema

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
MNIST_ROOT = REPO_ROOT / "data" / "raw" / "mnist"

# Tiny settings shared by the tests that train: a few steps of a small net.
TINY = [
    "trainer=debug",
    "net.hidden_dims=[32]",
    "model.latent_dim=4",
    "data.batch_size=32",
]

# The study with tiny params: every stage runs, in a few minutes on two cores.
STUDY_PARAMS = {
    "data.name": "digits",  # the quick variant; the default study runs MNIST
    "models.ae.max_epochs": 2,
    "models.dae.max_epochs": 1,
    "models.vae.max_epochs": 2,
    "models.beta_vae.max_epochs": 1,
    "classifier.max_epochs": 1,
    "evaluate.iw_samples": 8,
    "anomaly.models": ["ae", "dae", "vae", "beta_vae"],  # every model (the default study: ae and vae)
    "anomaly.normal_classes": [0, 1],
    "epochs.digits.anomaly": 1,
    "anomaly.iw_samples": 4,
    "probe.labels_per_class": [1, 5],
    "probe.repeats": 2,
}
IMPORT_LOG_DIR = REPO_ROOT / "tests" / "import_log"  # its sitecustomize.py logs a process's aevae files
IMPORT_LOG = "AEVAE_IMPORT_LOG"  # the file it appends to


def lr_keys(lr: float) -> dict:
    """The learning-rate keys of a model config written by hand: conf/model/ae.yaml's Adam at
    `lr` and a constant schedule."""
    return {
        "lr": lr,
        "lr_schedule": "constant",
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr, "eps": 1e-8, "weight_decay": 0.0},
        "scheduler": {"_target_": "aevae.models.schedules.per_epoch", "_partial_": True, "schedule": "constant"},
    }


SERVER_START_TIMEOUT_S = 90
SERVER_STOP_TIMEOUT_S = 5

register_configs(*(schema(path.stem) for path in sorted((REPO_ROOT / "pipelines").glob("*.py"))))  # every stage's


# --- the repository stays clean -------------------------------------------------------------

# Paths that tools create as a matter of course; everything else new is left behind by a test.
NOISE = (".venv/", ".pytest_cache/", "__pycache__", ".egg-info")
REPO_STATE = pytest.StashKey[set]()
# every untracked and ignored file; no optional lock, so a concurrent git command is never blocked
GIT_STATUS = ["git", "--no-optional-locks", "status", "--porcelain", "--ignored", "--untracked-files=all"]


def repo_paths() -> set[str] | None:
    """Untracked and ignored files of the repository (None outside a git checkout).

    Changes to tracked files are not compared: they are the work in progress, not test output.
    """
    try:
        out = subprocess.run(
            [*GIT_STATUS, "--", ".", ":(exclude).venv"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = {line[3:] for line in out.splitlines() if line[:2] in ("??", "!!")}
    return {path for path in paths if not any(noise in path for noise in NOISE)}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # only the controlling process checks
        state = repo_paths()
        if state is not None:
            session.config.stash[REPO_STATE] = state


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n` (pytest-xdist, `--dist loadgroup`), every test that uses the shared
    study runs on one worker, in file order: the study is made once and its tests change it."""
    for item in items:
        if "study" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("study"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(REPO_STATE, None)
    after = repo_paths() if before is not None else None
    if after is None:
        return
    new = sorted(after - before)
    if new:
        shown = "\n".join(f"  {path}" for path in new[:50]) + (f"\n  ... {len(new) - 50} more" if len(new) > 50 else "")
        message = f"the tests left {len(new)} new path(s) in the repository (write to tmp_path instead):\n{shown}"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message)
        session.exitstatus = 1


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def mnist_root() -> Path:
    """The MNIST IDX gz files vendored in the repository."""
    return MNIST_ROOT


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite MLflow store (the file is created on first use)."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def make_config(tmp_path: Path, tracking_uri: str) -> Callable[..., DictConfig]:
    """Compose a primary config with overrides; outputs and the MLflow store (its artifacts
    beside it) go to tmp_path."""

    def make(overrides: list[str] = (), config_name: str = "train") -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        with open_dict(cfg):
            cfg.output_dir = str(tmp_path / "out")
            if "logger" in cfg and cfg.logger.tracking_uri is None:
                cfg.logger.tracking_uri = tracking_uri
        return cfg

    return make


# --- the study: one `dvc repro` in a temporary git repository -------------------------------


class Study(NamedTuple):
    repo: Path  # a git repository holding a copy of the project
    env: dict[str, str]  # the environment DVC runs in (the venv's python first on PATH)
    output: str  # what the first `dvc repro` printed


def run_command(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command, fail the test with its output unless it succeeds; stdout + stderr."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


OUTPUT_DIRS = ("data/prepared/", "models/", "reports/")  # what the pipelines write


def copy_project(repo: Path, pipelines: tuple[str, ...] = ()) -> None:
    """The project's tracked and untracked files without the pipelines' outputs: the default
    study, and the study pipelines under `studies/` named in `pipelines` (e.g. `reference`)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    left_out = OUTPUT_DIRS + tuple(f"studies/{path.name}/" for path in (REPO_ROOT / "studies").iterdir() if path.name not in pipelines)
    for name in listed.stdout.split():
        if (REPO_ROOT / name).is_file() and not name.startswith(left_out):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)


def set_params(params_file: Path, values: dict[str, object]) -> None:
    """Set dotted keys (`models.vae.epochs`) of a params.yaml."""
    params = yaml.safe_load(params_file.read_text())
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def study_env() -> dict[str, str]:
    """The environment of `dvc repro`: the venv first on PATH, no analytics, the default store."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("AEVAE_RUN_GROUP", None)
    return env


def stage_processes(repo: Path, entry_point: str) -> list[int]:
    """Processes whose command line runs the stage's entry point in `repo` (its shell included)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if entry_point in command and cwd == str(repo):
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """A git repository holding a copy of the project with tiny params, after one `dvc repro`
    (its MLflow store: `mlflow.db` in the repository). Tests may change it; they run in order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' temporary directories share one parent
        try:
            (tmp_path_factory.getbasetemp().parent / "study.built").touch(exist_ok=False)
        except FileExistsError:
            pytest.fail("a second pytest-xdist worker builds the study: its tests must share one worker (--dist loadgroup)")
    repo = tmp_path_factory.mktemp("study")
    copy_project(repo)
    set_params(repo / "params.yaml", STUDY_PARAMS)
    # each Python process logs the aevae files it ran (tests/import_log/sitecustomize.py)
    env = {**study_env(), "PYTHONPATH": str(IMPORT_LOG_DIR), IMPORT_LOG: str(tmp_path_factory.mktemp("imports") / "imports.jsonl")}
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "study"]):
        run_command(args, repo, env)
    return Study(repo, env, run_command(["dvc", "repro"], repo, env))


# --- a real MLflow tracking server ----------------------------------------------------------


def free_port() -> int:
    """A loopback port that nothing listens on (the OS picks it, the socket releases it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} not healthy after {timeout_s}s")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group led by `process`, SIGKILL it if the leader has not exited in time."""
    with contextlib.suppress(ProcessLookupError):  # the whole group may be gone already
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def mlflow_server(store_uri: str, workdir: Path) -> Iterator[str]:
    """A real `mlflow server` for `store_uri` on a free loopback port (its log, artifacts and
    working directory in `workdir`); yields its URL and stops it on exit.

    The server runs in its own process group (the CLI, its uvicorn worker, its job runner), and
    the whole group is stopped: SIGTERM, then SIGKILL if uvicorn still waits on open connections.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", store_uri, "--artifacts-destination", str(workdir / "mlartifacts"),
    ]
    log = workdir / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log, SERVER_START_TIMEOUT_S)
        yield url
    finally:
        stop_process_group(server)
