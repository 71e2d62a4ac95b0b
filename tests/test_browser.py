"""The HTML report in a real browser: Debian's Chromium driven by Playwright, offline.

Skipped only when the browser (/usr/bin/chromium) or the playwright module is missing; `.ci/run`
installs the browser.
"""

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from aevae import plots, report

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
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (install Debian's chromium: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright module is not installed (pip install playwright)")

    sections, summary = make_study(tmp_path / "study")
    out = tmp_path / "out"
    markdown_text, html_text = report.render_report("AE vs VAE", sections, out / "report.md", summary)
    out.mkdir()
    (out / "report.html").write_text(html_text)
    shutil.rmtree(tmp_path / "study" / "models")  # the page must not need the figure files

    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
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
        finally:
            browser.close()

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
