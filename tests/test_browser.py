"""Pages in a real browser (Debian's Chromium driven by Playwright): the HTML report, offline, and
the MLflow runs table of the study, served by a real `mlflow server`.

Skipped only when the browser (/usr/bin/chromium) or the playwright module is missing; `.ci/run`
installs the browser. `AEVAE_UPDATE_SCREENSHOT=1` also writes the README's picture of the runs
table (docs/mlflow-runs.png).
"""

import json
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import pytest
from mlflow import MlflowClient

from aevae.reporting import plots, report
from aevae.records.tracking import PARENT_TAG, ROLE_TAG
from conftest import REPO_ROOT, mlflow_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README_SCREENSHOT = REPO_ROOT / "docs" / "mlflow-runs.png"
UPDATE_SCREENSHOT = "AEVAE_UPDATE_SCREENSHOT"
SCREENSHOT_MAX_BYTES = 200_000
# The runs table is an ag-grid; its pinned left part holds one row per shown run, with the name.
ROWS = ".ag-pinned-left-cols-container [role=row][row-id]"
SHOWN_RUNS = f"""() => Array.from(document.querySelectorAll('{ROWS}'), row => {{
    const link = row.querySelector('a[href*="/runs/"]');
    return {{index: +row.getAttribute('row-index'), id: row.getAttribute('row-id'), name: link.textContent,
             indent: link.getBoundingClientRect().x}};
}}).sort((a, b) => a.index - b.index)"""
COLUMNS_SHOWN = ("val/mse", "val/elbo", "test/mse")
COLUMNS_HIDDEN = ("Dataset", "Source", "Models")


def browser_api() -> Any:
    """Playwright's sync API; skips the test when the browser or the module is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (install Debian's chromium: apt-get install -y chromium)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright module is not installed (pip install playwright)")


@contextmanager
def chromium_page(sync_api: Any, width: int, height: int) -> Iterator[Any]:
    """A page of a headless Chromium with a `width` x `height` viewport, closed on exit."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def make_study(root: Path) -> tuple[list[dict], dict]:
    """Small metrics files, two figures and a summary, laid out like the real study."""
    (root / "metrics").mkdir(parents=True)
    (root / "metrics" / "evaluate.json").write_text(
        json.dumps({"ae/test/mse": 0.013, "vae/test/mse": 0.037, "vae/test/nll_iwae": 24.5, "protocol": {"n_test": 359}})
    )
    (root / "metrics" / "anomaly.json").write_text(
        json.dumps({"anomaly/ae/auroc/mean": 0.97, "anomaly/vae/auroc/mean": 0.96, "anomaly/pca/auroc/mean": 0.99})
    )
    for name, color in (("ae", "C0"), ("vae", "C1")):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1, 2, 3], [0, 1, 0.5, 1], color=color)
        ax.set_title(f"{name} reconstructions")
        fig.tight_layout()
        plots.save_png(fig, root / "models" / name / "reconstructions.png")
    sections = [
        {"title": "Training", "figures": [str(root / "models/*/reconstructions.png")]},
        {"title": "Test split", "files": [{"path": str(root / "metrics/evaluate.json")}], "column_level": 0},
        {"title": "Anomaly detection", "files": [{"path": str(root / "metrics/anomaly.json")}], "column_level": 1},
    ]
    summary = {
        "title": "At a glance",
        "models": ["ae", "vae"],
        "baselines": ["pca"],
        "rows": [
            {"use": "reconstruction MSE", "metric": "{model}/test/mse", "better": "lower", "format": ".3g"},
            {"use": "anomaly AUROC", "metric": "anomaly/{model}/auroc/mean", "better": "higher", "format": ".3f"},
        ],
    }
    return sections, summary


def test_html_report_renders_offline_in_chromium(tmp_path):
    sync_api = browser_api()
    sections, summary = make_study(tmp_path / "study")
    out = tmp_path / "out"
    markdown_text, html_text = report.render_report("AE vs VAE", sections, out / "report.md", summary)
    out.mkdir()
    (out / "report.html").write_text(html_text)
    shutil.rmtree(tmp_path / "study" / "models")  # the page must not need the figure files

    requests: list[str] = []
    with chromium_page(sync_api, 1000, 800) as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto((out / "report.html").as_uri(), wait_until="load")
        images = page.evaluate(
            "() => Array.from(document.images, img => ({complete: img.complete, width: img.naturalWidth, src: img.src.slice(0, 22)}))"
        )
        first_table = page.evaluate(
            """() => {
                const table = document.querySelector('table');
                return {
                    header: Array.from(table.querySelectorAll('th'), th => th.textContent.trim()),
                    rows: Array.from(table.querySelectorAll('tbody tr'), tr => Array.from(tr.cells, td => td.textContent.trim())),
                    bold: Array.from(table.querySelectorAll('strong'), b => b.textContent),
                    heading: table.previousElementSibling && table.previousElementSibling.textContent,
                };
            }"""
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    assert len(images) == 2
    assert all(image["complete"] and image["width"] > 0 for image in images), images
    assert all(image["src"] == "data:image/png;base64," for image in images), images
    assert [url for url in requests if not url.startswith("data:")] == [(out / "report.html").as_uri()]
    assert first_table["header"] == ["use", "better", "ae", "vae", "pca"]
    assert first_table["rows"] == [
        ["reconstruction MSE", "lower", "0.013", "0.037", ""],
        ["anomaly AUROC", "higher", "0.970", "0.960", "0.990"],
    ]
    assert first_table["bold"] == ["0.013", "0.990"]
    assert first_table["heading"] == "At a glance"
    assert (tmp_path / "report.png").stat().st_size > 0


# --- the MLflow runs table of the study ------------------------------------------------------


class StudyRuns(NamedTuple):
    experiment_id: str
    parent: str  # the run id of the first reproduction's parent run
    top_level: set[str]  # runs nested under no other run
    nested: dict[str, dict[str, str]]  # run id -> {run id: name} of the runs nested under it
    metrics: dict[str, dict[str, float]]  # run id -> its metrics


def study_runs(store: str) -> StudyRuns:
    """The study's runs as the store holds them."""
    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name("aevae").experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = sorted((r for r in runs if r.data.tags.get(ROLE_TAG) == "parent"), key=lambda r: r.info.start_time)
    nested: dict[str, dict[str, str]] = defaultdict(dict)
    for r in runs:
        if PARENT_TAG in r.data.tags:
            nested[r.data.tags[PARENT_TAG]][r.info.run_id] = r.info.run_name
    top_level = {r.info.run_id for r in runs if PARENT_TAG not in r.data.tags}
    return StudyRuns(experiment_id, parents[0].info.run_id, top_level, nested, {r.info.run_id: r.data.metrics for r in runs})


def open_runs_table(page: Any, url: str, experiment_id: str) -> None:
    """The classic runs table of the experiment, once its first row shows; the assistant panel
    (open on a first visit) and the sidebar are closed to give the table the width."""
    page.goto(f"{url}/#/experiments/{experiment_id}/runs", wait_until="load")
    page.locator(ROWS).first.wait_for()
    close = page.get_by_role("button", name="Close")
    if close.is_visible():
        close.click()
    page.get_by_role("button", name="Toggle sidebar").click()


def choose_columns(page: Any, shown: tuple[str, ...], hidden: tuple[str, ...]) -> None:
    """Tick metric columns `shown` and untick attribute columns `hidden` in the "Columns" menu."""
    page.get_by_role("button", name="Columns").click()
    tree = page.get_by_test_id("column-selector-tree")
    for title in hidden:
        tree.locator(f'[title="{title}"]').click()
    search = page.get_by_placeholder("Search columns")
    for title in shown:
        search.fill(title)
        tree.locator(".du-bois-light-tree-title").filter(has_text=re.compile(f"^{re.escape(title)}$")).click()
    page.keyboard.press("Escape")


def widen_run_names(page: Any, pixels: int) -> None:
    """Drag the right edge of the "Run Name" header `pixels` to the right."""
    handle = page.locator('.ag-header-cell[col-id="attributes.`Run Name`"] .ag-header-cell-resize')
    handle.hover()
    box = handle.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + box["width"] / 2 + pixels * step / 10, y)
    page.mouse.up()


def expand(page: Any, run_id: str, child_name: str) -> None:
    """Click the expander of the row of `run_id`; wait until its nested run `child_name` shows."""
    page.locator(f'{ROWS}[row-id="{run_id}"]').get_by_role("button").first.click()
    page.get_by_role("link", name=child_name, exact=True).wait_for()


def shown_runs(page: Any) -> list[dict[str, Any]]:
    """The rows of the table from the top: run id, name and the name's indent (pixels)."""
    return page.evaluate(SHOWN_RUNS)


def nested_rows(rows: list[dict[str, Any]], run_id: str) -> dict[str, str]:
    """{run id: name} of the rows the table shows one level below the row of `run_id`: the
    rows right after it indented deeper, less those indented deeper still."""
    index = next(i for i, row in enumerate(rows) if row["id"] == run_id)
    below = []
    for row in rows[index + 1 :]:
        if row["indent"] <= rows[index]["indent"]:
            break
        below.append(row)
    level = min((row["indent"] for row in below), default=None)
    return {row["id"]: row["name"] for row in below if row["indent"] == level}


def screenshot_rows(page: Any, path: Path) -> None:
    """The page from its top down to the table's last row, without the focus frame of a cell or
    the highlight of the row under the mouse."""
    page.mouse.move(0, 0)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    bottom = page.evaluate(f"() => Math.max(...Array.from(document.querySelectorAll('{ROWS}'), row => row.getBoundingClientRect().bottom))")
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": page.viewport_size["width"], "height": bottom + 8})


def metric_cell(page: Any, run_id: str, metric: str) -> str:
    return page.locator(f'.ag-center-cols-container [row-id="{run_id}"] [col-id="metrics.`{metric}`"]').text_content()


def id_of(runs: dict[str, str], name: str) -> str:
    return next(run_id for run_id, run_name in runs.items() if run_name == name)


@pytest.mark.slow
def test_mlflow_runs_table_nests_the_study_under_its_parent_run(study, tmp_path):
    sync_api = browser_api()
    store = f"sqlite:///{study.repo / 'mlflow.db'}"
    runs = study_runs(store)
    stage_runs = runs.nested[runs.parent]
    evaluate, anomaly_vae = id_of(stage_runs, "evaluate"), id_of(stage_runs, "anomaly/vae")
    per_model = {name: run_id for run_id, name in runs.nested[evaluate].items()}
    (tmp_path / "server").mkdir()
    with mlflow_server(store, tmp_path / "server") as url, chromium_page(sync_api, 1000, 1100) as page:
        open_runs_table(page, url, runs.experiment_id)
        collapsed = shown_runs(page)
        page.screenshot(path=str(tmp_path / "collapsed.png"))
        choose_columns(page, COLUMNS_SHOWN, COLUMNS_HIDDEN)
        widen_run_names(page, 90)
        page.get_by_test_id("sort-header-Created").click()  # oldest first: the stages in pipeline order
        expand(page, runs.parent, "train/ae")
        expand(page, evaluate, "evaluate/vae")
        expand(page, anomaly_vae, "anomaly/vae/class_0")
        expanded = shown_runs(page)
        test_mse = {name: metric_cell(page, run_id, "test/mse") for name, run_id in per_model.items()}
        screenshot_rows(page, tmp_path / "expanded.png")

    assert {row["id"] for row in collapsed} == runs.top_level  # every stage and class run is nested
    assert all(row["name"].startswith("repro-") for row in collapsed)
    assert nested_rows(expanded, runs.parent) == stage_runs
    assert {"train/ae", "train/vae", "evaluate", "anomaly/ae", "anomaly/vae", "probe", "report"} <= set(stage_runs.values())
    assert nested_rows(expanded, evaluate) == runs.nested[evaluate]
    assert nested_rows(expanded, anomaly_vae) == runs.nested[anomaly_vae]
    assert sorted(runs.nested[anomaly_vae].values()) == ["anomaly/vae/class_0", "anomaly/vae/class_1"]
    for name in ("ae", "vae"):  # one test/mse column compares the models
        assert float(test_mse[f"evaluate/{name}"]) == pytest.approx(runs.metrics[per_model[f"evaluate/{name}"]]["test/mse"])
    if os.environ.get(UPDATE_SCREENSHOT) == "1":
        assert (tmp_path / "expanded.png").stat().st_size < SCREENSHOT_MAX_BYTES
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "expanded.png", README_SCREENSHOT)
