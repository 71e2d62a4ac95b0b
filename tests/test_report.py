"""The report library: summary table, pivot tables, figures embedded in one HTML file, ROC plot."""

import base64
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from aevae.reporting import plots, report
from aevae.errors import ConfigError, DataError
from aevae.stages.report import levelled_off

pytestmark = pytest.mark.fast  # every test here is a quick unit test (`make test-fast`)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_png(path: Path, color: str = "C0") -> Path:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0], color=color)
    return plots.save_png(fig, path)


SUMMARY = {
    "title": "At a glance",
    "models": ["ae", "vae"],
    "baselines": ["pca"],
    "rows": [
        {"use": "reconstruction MSE", "metric": "{model}/test/mse", "better": "lower", "format": ".3g"},
        {"use": "anomaly AUROC", "metric": "anomaly/{model}/auroc/mean", "better": "higher"},
        {"use": "test -log p(x)", "metric": "{model}/test/nll_iwae", "better": "lower", "format": ".1f"},
    ],
}
METRICS = {
    "ae/test/mse": 0.0129,
    "vae/test/mse": 0.0371,
    "pca/test/mse": 0.02,
    "anomaly/ae/auroc/mean": 0.97,
    "anomaly/vae/auroc/mean": 0.96,
    "anomaly/pca/auroc/mean": 0.99,
    "vae/test/nll_iwae": 24.53,
}


def test_summary_marks_the_best_cell_of_each_row():
    rows = report.summary_cells(SUMMARY, METRICS)
    assert [use for use, _, _ in rows] == ["reconstruction MSE", "anomaly AUROC", "test -log p(x)"]
    (_, better_mse, mse), (_, better_auroc, auroc), (_, _, nll) = rows
    assert (better_mse, better_auroc) == ("lower", "higher")
    assert mse == ["**0.0129**", "0.0371", "0.02"]  # lower is better, per-row format .3g
    assert auroc == ["0.97", "0.96", "**0.99**"]  # higher is better, the baseline wins
    assert nll == ["", "24.5", ""]  # missing metrics are blank; a lone value is not bold


def test_summary_keeps_column_order_models_then_baselines():
    summary = {**SUMMARY, "models": ["vae", "ae", "dae"], "baselines": ["pixels", "pca"]}
    assert report.summary_columns(summary) == ["vae", "ae", "dae", "pixels", "pca"]
    table = report.summary_table(summary, METRICS).splitlines()
    assert table[0] == "| use | better | vae | ae | dae | pixels | pca |"
    assert table[2] == "| reconstruction MSE | lower | 0.0371 | **0.0129** |  |  | 0.02 |"


def test_summary_ties_are_all_bold_and_better_null_marks_none():
    summary = {
        "models": ["a", "b", "c"],
        "rows": [
            {"use": "tie", "metric": "{model}/x", "better": "higher"},
            {"use": "info", "metric": "{model}/x", "better": None},
        ],
    }
    metrics = {"a/x": 2.0, "b/x": 2.0, "c/x": 1.0}
    (_, _, tie), (_, better, info) = report.summary_cells(summary, metrics)
    assert tie == ["**2**", "**2**", "1"]
    assert (better, info) == ("", ["2", "2", "1"])


@pytest.mark.parametrize(
    "row, key",
    [
        ({"use": "x", "metric": "{model}/x", "better": "smaller"}, "better"),
        ({"use": "x", "metric": "{model}/x", "format": "d"}, "format"),
        ({"use": "x"}, "metric"),
    ],
)
def test_summary_rejects_bad_rows(row, key):
    with pytest.raises(ConfigError, match=rf"summary\.rows\[0\]\.{key}"):
        report.summary_cells({"models": ["a"], "rows": [row]}, {"a/x": 1.0})


def test_summary_is_the_first_section(tmp_path):
    evaluate = write_json(tmp_path / "evaluate.json", {k: v for k, v in METRICS.items() if not k.startswith("anomaly")})
    anomaly = write_json(tmp_path / "anomaly.json", {k: v for k, v in METRICS.items() if k.startswith("anomaly")})
    sections = [
        {"title": "Test split", "files": [{"path": str(evaluate)}], "column_level": 0},
        {"title": "Anomaly", "files": [{"path": str(anomaly)}], "column_level": 1},
    ]
    markdown_text, html_text = report.render_report("Study", sections, tmp_path / "report.md", SUMMARY)
    headings = re.findall(r"^## (.*)$", markdown_text, flags=re.MULTILINE)
    assert headings == ["At a glance", "Test split", "Anomaly"]
    # the summary reads every section's files: both the evaluate and the anomaly metrics appear
    assert "| reconstruction MSE | lower | **0.0129** | 0.0371 | 0.02 |" in markdown_text
    assert "| anomaly AUROC | higher | 0.97 | 0.96 | **0.99** |" in markdown_text
    first_table = html_text.split("<table>")[1]
    assert "reconstruction MSE" in first_table and "<strong>0.0129</strong>" in first_table
    assert html_text.index("At a glance") < html_text.index("Test split")


def test_summary_own_files_override_the_sections(tmp_path):
    own = write_json(tmp_path / "own.json", {"ae/test/mse": 1.0, "dae/test/mse": 1.5})
    other = write_json(tmp_path / "other.json", {"vae/test/mse": 0.5})
    summary = {"files": [{"path": str(own)}], "models": ["ae", "vae", "dae"], "rows": [SUMMARY["rows"][0]]}
    text = report.render_summary(summary, [{"title": "s", "files": [{"path": str(other)}]}])
    assert "| reconstruction MSE | lower | **1** |  | 1.5 |" in text


def test_labels_prefix_metric_names_and_missing_files_are_reported(tmp_path):
    path = write_json(tmp_path / "m.json", {"val/loss": 1.5, "protocol": {"n": 3}})
    assert report.load_metrics([{"path": str(path), "label": "ae"}]) == {"ae/val/loss": 1.5}
    with pytest.raises(DataError, match="metrics file not found"):
        report.load_metrics([{"path": str(tmp_path / "missing.json")}])


def figure_sections(tmp_path: Path) -> list[dict]:
    for name in ("ae", "vae"):
        write_png(tmp_path / "models" / name / "reconstructions.png")
    write_png(tmp_path / "figs" / "samples.png", "C1")
    return [
        {"title": "Training", "figures": [str(tmp_path / "models/*/reconstructions.png"), str(tmp_path / "models/ae/*.png")]},
        {"title": "Generation", "figures": [str(tmp_path / "figs/*.png"), str(tmp_path / "models/vae/reconstructions.png")]},
    ]


def test_each_figure_is_shown_once(tmp_path):
    sections = figure_sections(tmp_path)
    assert report.section_figures(sections) == [
        [str(tmp_path / "models/ae/reconstructions.png"), str(tmp_path / "models/vae/reconstructions.png")],
        [str(tmp_path / "figs/samples.png")],
    ]
    markdown_text = report.render_markdown("Study", sections, tmp_path / "out" / "report.md")
    links = re.findall(r"!\[[^]]*\]\(([^)]*)\)", markdown_text)
    assert links == ["../models/ae/reconstructions.png", "../models/vae/reconstructions.png", "../figs/samples.png"]


def test_html_is_one_file_with_every_image_embedded(tmp_path):
    sections = figure_sections(tmp_path)
    markdown_text, html_text = report.render_report("Study <AE vs VAE>", sections, tmp_path / "out" / "report.md")
    sources = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', html_text)
    assert len(sources) == 3
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1]).startswith(PNG_MAGIC)
    assert 'src="' not in re.sub(r'src="data:[^"]*"', "", html_text)  # no src pointing at a file
    assert "<title>Study &lt;AE vs VAE&gt;</title>" in html_text
    # the Markdown report keeps relative links
    assert "](../models/ae/reconstructions.png)" in markdown_text


def test_html_resolves_links_against_the_report_directory(tmp_path):
    write_png(tmp_path / "figure a.png")
    markdown_text = report.render_markdown("S", [{"title": "f", "figures": [str(tmp_path / "*.png")]}], tmp_path / "report.md")
    assert "](figure%20a.png)" in markdown_text
    assert "data:image/png;base64," in report.render_html(markdown_text, "S", tmp_path)
    with pytest.raises(DataError, match="figure not found"):
        report.render_html(markdown_text, "S", tmp_path / "elsewhere")


def test_pivot_table_columns_from_a_name_level():
    table = report.pivot_table({"anomaly/ae/auroc/mean": 0.9, "anomaly/pca/auroc/mean": 0.95, "anomaly/ae/auprc/mean": 0.8}, 1)
    assert table.splitlines() == [
        "| metric | ae | pca |",
        "|---|---|---|",
        "| anomaly/auroc/mean | 0.9 | 0.95 |",
        "| anomaly/auprc/mean | 0.8 |  |",
    ]


def write_roc_csv(path: Path, methods: list[str], classes: int = 3) -> Path:
    lines = ["model,class,fpr,tpr"]
    for method in methods:
        for cls in range(classes):
            lines += [f"{method},{cls},0,0", f"{method},{cls},0.1,0.6", f"{method},{cls},0.5,0.9", f"{method},{cls},1,1"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_roc_curves_figure_is_written(tmp_path):
    paths = {"ae": write_roc_csv(tmp_path / "ae.csv", ["ae", "pca"]), "vae": write_roc_csv(tmp_path / "vae.csv", ["vae", "vae_iwae", "pca"])}
    out = plots.save_roc_curves(paths, tmp_path / "figures" / "roc.png")
    assert out == tmp_path / "figures" / "roc.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert not list(out.parent.glob(".*.tmp"))


def test_roc_curves_report_bad_input(tmp_path):
    with pytest.raises(DataError, match="ROC file not found"):
        plots.save_roc_curves({"ae": tmp_path / "missing.csv"}, tmp_path / "roc.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("model,fpr,tpr\nae,0,0\n")
    with pytest.raises(DataError, match="lacks column"):
        plots.save_roc_curves({"ae": bad}, tmp_path / "roc.png")
    assert not (tmp_path / "roc.png").exists()


def test_summary_metrics_are_the_numbers_of_the_summary_cells(tmp_path):
    metrics_file = write_json(tmp_path / "m.json", {**METRICS, "ae/test/other": 1.0, "ae/test/nll_iwae": float("nan")})
    headline = report.summary_metrics({**SUMMARY, "files": [{"path": str(metrics_file)}]}, [])
    assert headline == dict(sorted(METRICS.items()))  # every shown cell; not the other metric, not a NaN


def test_summary_marks_the_columns_of_models_that_had_not_levelled_off():
    table = report.summary_table(SUMMARY | {"provisional": ["vae"]}, METRICS)
    assert table.splitlines()[0] == f"| use | better | ae | vae {report.PROVISIONAL_MARK} | pca |"
    assert report.PROVISIONAL_MARK not in report.summary_table(SUMMARY, METRICS)


def test_a_model_is_provisional_when_its_training_or_one_of_its_one_class_trainings_had_not_levelled_off():
    assert levelled_off({"val/levelled_off": 1.0, "val/loss": 90.0})
    assert not levelled_off({"val/levelled_off": 0.0, "val/loss": 90.0})
    assert not levelled_off({"anomaly/vae/levelled_off/mean": 0.9, "anomaly/vae/levelled_off/class_0": 1.0, "anomaly/vae/auroc/mean": 0.9})
    assert levelled_off({"anomaly/vae/levelled_off/mean": 1.0, "anomaly/vae/auroc/mean": 0.5})
