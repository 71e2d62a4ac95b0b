"""A stage pays at start-up only for what it uses (`benchmarks/startup.py` times it): the stages
that train nothing compose their config and exit (`--cfg job`) without importing Lightning,
torchmetrics, MLflow, scikit-learn or matplotlib; those import them when they run, where used."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.fast  # no training: part of `make test-fast`

HEAVY = ("lightning", "torchmetrics", "mlflow", "sklearn", "matplotlib")
LIGHT_STAGES = ["prepare", "report", "configure", "probe", "compare", "reference_report", "score"]
# run an entry point as `python <entry point> --cfg job`, then name the heavy packages it imported
START = """
import runpy, sys
sys.argv = [sys.argv[1], "--cfg", "job"]
runpy.run_path(sys.argv[0], run_name="__main__")
print("imported:", *sorted(name for name in {heavy!r} if name in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("stage", LIGHT_STAGES)
def test_a_stage_that_trains_nothing_starts_without_lightning_mlflow_sklearn_or_matplotlib(stage, tmp_path):
    code = START.format(heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "pipelines" / f"{stage}.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "imported:"
    assert list(tmp_path.iterdir()) == []  # `--cfg job` writes nothing
