"""The study report: metric files pivoted into side-by-side tables, a summary table, figures,
Markdown and a self-contained HTML page.

Config sections and the summary may be dataclasses, OmegaConf nodes or plain dicts: fields are
read by attribute or by key.

The summary (`render_summary`) is a table of one row per question, one column per model then
per baseline:

    summary:
      title: At a glance            # optional (default "Summary")
      text: ...                     # optional, shown under the title
      files: [{path: ..., label: ...}]  # optional; default: every section's metrics files
      models: [ae, dae, vae, beta_vae]
      baselines: [pca, pixels]      # optional
      provisional: [vae]            # optional: models marked as not levelled off
      rows:
        - {use: "Reconstruction error (test MSE per pixel)", metric: "{model}/test/mse", better: lower, format: ".4g"}

A cell is the metric named by `metric` with `{model}` replaced by the column's name; a `*` in
`metric` matches any text within one part of a name, and the cell shows the best of the matching
metrics with the part it matched (e.g. `anomaly/{model}*/auroc/mean`: the model's best anomaly
method, "0.962 (ae_latent_lof)"); a missing metric leaves the cell blank; the best cell of a row (lowest or highest, per `better`; none when
`better` is null or the row has a single value) is bold, ties included.
"""

import base64
import glob
import html
import json
import math
import mimetypes
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aevae.errors import ConfigError, DataError

BETTER = ("lower", "higher")
PROVISIONAL_MARK = "†"  # beside a model column whose training had not levelled off
DEFAULT_FORMAT = ".4g"


def _field(node: Any, name: str, default: Any = None) -> Any:
    """`node.name` or `node[name]`; `default` when absent or null."""
    if isinstance(node, Mapping):
        value = node.get(name, default)
    else:
        value = getattr(node, name, default)
    return default if value is None else value


def load_metrics(files: Sequence[Any]) -> dict[str, float]:
    """Flat numeric metrics of several JSON files (`.path`); a non-empty `.label` prefixes the
    names of its file."""
    merged: dict[str, float] = {}
    for file in files:
        path = Path(_field(file, "path"))
        label = _field(file, "label", "")
        if not path.is_file():
            raise DataError(f"{path}: metrics file not found (run the stage that writes it)")
        for name, value in json.loads(path.read_text()).items():
            if isinstance(value, (int, float)):
                merged[f"{label}/{name}" if label else name] = float(value)
    return merged


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of text cells (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pivot_table(metrics: Mapping[str, float], column_level: int) -> str:
    """A Markdown table: one column per distinct part `column_level` of the slash-separated
    names, one row per the rest of the name (in first-seen order)."""
    cells: dict[str, dict[str, float]] = {}
    columns: dict[str, None] = {}
    for name, value in metrics.items():
        parts = name.split("/")
        if len(parts) <= column_level:
            continue
        column = parts.pop(column_level)
        columns[column] = None
        cells.setdefault("/".join(parts), {})[column] = value
    rows = [[row, *(f"{values[c]:.4g}" if c in values else "" for c in columns)] for row, values in cells.items()]
    return markdown_table(["metric", *columns], rows)


ANOMALY_METRIC = re.compile(r"^anomaly/(?P<method>[^/]+)/(?P<metric>auroc|auprc)/(?P<case>[^/]+)$")


def ranking_table(metrics: Mapping[str, float]) -> str:
    """The anomaly methods (`anomaly/<method>/<auroc|auprc>/<case|mean>`) ranked by mean AUROC:
    a row per method with its AUROC per case, mean AUROC and mean AUPRC, then a row naming the
    best method of each case (bold: the best of each column)."""
    auroc: dict[str, dict[str, float]] = {}
    auprc: dict[str, float] = {}
    for name, value in metrics.items():
        match = ANOMALY_METRIC.match(name)
        if match and match["metric"] == "auroc":
            auroc.setdefault(match["method"], {})[match["case"]] = value
        elif match and match["case"] == "mean":
            auprc[match["method"]] = value
    cases = list(dict.fromkeys(case for values in auroc.values() for case in values if case != "mean"))
    methods = sorted(auroc, key=lambda method: -auroc[method].get("mean", -math.inf))
    best = {case: max((auroc[m][case] for m in methods if case in auroc[m]), default=None) for case in [*cases, "mean"]}

    def cell(method: str, case: str) -> str:
        value = auroc[method].get(case)
        if value is None:
            return ""
        return f"**{value:.4f}**" if value == best[case] else f"{value:.4f}"

    rows = [[str(rank), method, *(cell(method, case) for case in [*cases, "mean"]), f"{auprc[method]:.4f}" if method in auprc else ""] for rank, method in enumerate(methods, 1)]
    winners = [", ".join(m for m in methods if auroc[m].get(case) == best[case]) for case in [*cases, "mean"]]
    rows.append(["", "best", *winners, ""])
    return markdown_table(["rank", "method", *(f"AUROC {case}" for case in cases), "AUROC mean", "AUPRC mean"], rows)


def summary_columns(summary: Any) -> list[str]:
    """The summary's columns: its models, then its baselines, in config order, each once."""
    columns = [*_field(summary, "models", []), *_field(summary, "baselines", [])]
    return list(dict.fromkeys(str(column) for column in columns))


def _wildcard(pattern: str) -> re.Pattern:
    """`pattern` as a regular expression: `*` matches any text within one part of a name."""
    return re.compile("[^/]*".join(re.escape(piece) for piece in pattern.split("*")) + "$")


def row_metric(pattern: str, metrics: Mapping[str, float], better: str | None) -> str | None:
    """The name of the metric a summary cell shows: `pattern` itself, or for a pattern with
    `*` the best (per `better`, else the first) of the metrics it matches; None when none."""
    if "*" not in pattern:
        return pattern if pattern in metrics else None
    regex = _wildcard(pattern)
    matches = [name for name in metrics if regex.match(name) and not math.isnan(metrics[name])]
    if not matches:
        return None
    return min(matches, key=metrics.__getitem__) if better == "lower" else max(matches, key=metrics.__getitem__) if better else matches[0]


def _matched_part(pattern: str, name: str) -> str:
    """The part of `name` (slash-separated) that holds `pattern`'s first `*`."""
    return name.split("/")[pattern.split("*")[0].count("/")]


def summary_cells(summary: Any, metrics: Mapping[str, float]) -> list[tuple[str, str, list[str]]]:
    """Per summary row: (use, better, cells), a cell per column: the formatted value, `**bold**`
    where it is the row's best, "" where the metric is missing."""
    columns = summary_columns(summary)
    if not columns:
        raise ConfigError("summary.models: name at least one model column")
    out = []
    for i, row in enumerate(_field(summary, "rows", [])):
        use, pattern = _field(row, "use", ""), _field(row, "metric")
        better, spec = _field(row, "better"), _field(row, "format", DEFAULT_FORMAT)
        if not pattern:
            raise ConfigError(f"summary.rows[{i}].metric: a metric name pattern is required, e.g. '{{model}}/test/mse'")
        if better is not None and better not in BETTER:
            raise ConfigError(f"summary.rows[{i}].better: {better!r} is not one of {', '.join(BETTER)} (or null)")
        try:
            format(1.0, spec)
        except ValueError as error:
            raise ConfigError(f"summary.rows[{i}].format: {spec!r} is not a number format ({error})") from None
        found = [row_metric(str(pattern).replace("{model}", column), metrics, better) for column in columns]
        values = [None if name is None else metrics[name] for name in found]
        present = [v for v in values if v is not None and not math.isnan(v)]
        best = None
        if better and len(present) > 1:  # a lone value is not compared with anything
            best = min(present) if better == "lower" else max(present)
        cells = []
        for name, value in zip(found, values):
            if value is None:
                cells.append("")
            else:
                text = format(value, spec) + (f" ({_matched_part(str(pattern), name)})" if "*" in str(pattern) else "")
                cells.append(f"**{text}**" if best is not None and value == best else text)
        out.append((str(use), better or "", cells))
    return out


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_table(summary: Any, metrics: Mapping[str, float]) -> str:
    """The summary as a Markdown table: a row per question, a column per model then baseline;
    the best cell of each row in bold."""
    columns = summary_columns(summary)
    provisional = {str(name) for name in _field(summary, "provisional", [])}
    header = ["use", "better", *(f"{column} {PROVISIONAL_MARK}" if column in provisional else column for column in columns)]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|---|---|" + "--:|" * len(columns)]
    for use, better, cells in summary_cells(summary, metrics):
        lines.append("| " + " | ".join(_md_cell(c) for c in [use, better, *cells]) + " |")
    return "\n".join(lines)


def summary_files(summary: Any, sections: Sequence[Any]) -> list[Any]:
    """The metrics files of the summary: its own `files`, else every section's (each once)."""
    own = list(_field(summary, "files", []))
    if own:
        return own
    files, seen = [], set()
    for section in sections:
        for file in _field(section, "files", []):
            key = (str(_field(file, "path")), _field(file, "label", ""))
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def summary_metrics(summary: Any, sections: Sequence[Any]) -> dict[str, float]:
    """The headline numbers: every metric a summary cell shows, by name (sorted)."""
    metrics = load_metrics(summary_files(summary, sections))
    rows = _field(summary, "rows", [])
    names = [row_metric(str(_field(row, "metric")).replace("{model}", column), metrics, _field(row, "better")) for row in rows for column in summary_columns(summary)]
    return {name: metrics[name] for name in sorted({n for n in names if n is not None}) if not math.isnan(metrics[name])}


def render_summary(summary: Any, sections: Sequence[Any]) -> str:
    """The summary section (Markdown): title, text and table."""
    out = [f"## {_field(summary, 'title', 'Summary')}", ""]
    text = _field(summary, "text")
    if text:
        out += [str(text).strip(), ""]
    columns = summary_columns(summary)
    baselines = [str(b) for b in _field(summary, "baselines", [])]
    note = "Best of each row in bold; a blank cell: metric not computed for that column."
    if baselines:
        note += f" Baselines: {', '.join(baselines)}."
    provisional = [str(name) for name in _field(summary, "provisional", [])]
    if provisional:
        note += (
            f" {PROVISIONAL_MARK} Provisional: the validation loss of {', '.join(provisional)} was still falling when its training,"
            " or one of its one-class trainings, ended (`val/levelled_off` = 0), so these numbers may still change with a larger budget."
        )
    if columns:
        out += [summary_table(summary, load_metrics(summary_files(summary, sections))), "", f"*{note}*", ""]
    return "\n".join(out)


def section_figures(sections: Sequence[Any]) -> list[list[str]]:
    """The figures of each section: its glob patterns expanded (sorted per pattern); a file
    matched by an earlier pattern or section is left out."""
    seen: set[str] = set()
    out = []
    for section in sections:
        figures = []
        for pattern in _field(section, "figures", []):
            for figure in sorted(glob.glob(str(pattern))):
                key = os.path.realpath(figure)
                if key not in seen:
                    seen.add(key)
                    figures.append(figure)
        out.append(figures)
    return out


def _figure_caption(figure: str) -> str:
    """The figure's path without suffix, relative to the working directory (else its folder/name)."""
    relative = os.path.relpath(figure)
    if relative.startswith(".."):
        relative = os.path.join(Path(figure).parent.name, Path(figure).name)
    return Path(relative).with_suffix("").as_posix()


def render_data_card(card: Mapping[str, Any], card_path: str | Path, report_path: str | Path) -> str:
    """The data card (the evaluate stage's `data_card.json` at `card_path`) as a Markdown section:
    the facts, images per split and class, what was skipped and why, and the sample images (a
    path relative to the card)."""
    shape = "x".join(map(str, card["shape"]))
    stats = lambda values: ", ".join(f"{value:.4g}" for value in values)  # noqa: E731
    per = "per channel" if card["channels"] else "over all features"
    facts = [
        ("source", f"`{card['source']}`"),
        ("kind", f"{card['kind']}, {shape}" + (f", {card['channels']} channel(s)" if card["channels"] else "")),
        ("classes", ", ".join(card["classes"]) or "none (unlabelled)"),
        (f"mean ({per}, training split)", stats(card["mean"])),
        (f"std ({per}, training split)", stats(card["std"])),
        ("manifest md5", f"`{card['manifest_md5']}`" if card["manifest_md5"] else "- (built-in data set)"),
    ]
    out = ["## Data", "", markdown_table(["", ""], [[name, value] for name, value in facts]), ""]
    columns = ["total", *card["classes"]]
    out += [markdown_table(["split", *columns], [[split, *(str(counts.get(c, 0)) for c in columns)] for split, counts in card["counts"].items()]), ""]
    out += [f"- **{use}**: {why}" for use, why in card["skipped"].items()] + ([""] if card["skipped"] else [])
    figure = Path(card_path).parent / card["samples_figure"] if card["samples_figure"] else None
    if figure is not None:
        link = quote(Path(os.path.relpath(figure, Path(report_path).parent)).as_posix())
        out += [f"![training images]({link})", "*training images*", ""]
    return "\n".join(out)


def render_markdown(title: str, sections: Sequence[Any], report_path: str | Path, summary: Any = None, preface: str = "") -> str:
    """The report as Markdown: `preface` (the data card) and the summary (when given) first, then
    the sections; figure links are relative to the report's directory; a figure matched twice is
    shown once."""
    base = Path(report_path).parent
    out = [f"# {title}", ""]
    if preface:
        out += [preface]
    if summary is not None:
        out += [render_summary(summary, sections)]
    for section, figures in zip(sections, section_figures(sections)):
        out += [f"## {_field(section, 'title', '')}", ""]
        text = _field(section, "text")
        if text:
            out += [str(text).strip(), ""]
        files = _field(section, "files", [])
        if files and _field(section, "ranking", False):
            out += [ranking_table(load_metrics(files)), ""]
        elif files:
            out += [pivot_table(load_metrics(files), _field(section, "column_level", 0)), ""]
        for figure in figures:
            link = quote(Path(os.path.relpath(figure, base)).as_posix())
            caption = _figure_caption(figure)
            out += [f"![{caption}]({link})", f"*{caption}*", ""]
    return "\n".join(out)


_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]*)(")', re.IGNORECASE)


def embed_images(body: str, base_dir: str | Path) -> str:
    """Replace every local `<img src>` of an HTML fragment by a base64 data URI of the file
    (relative paths resolved against `base_dir`); data URIs are kept; remote URLs are refused."""
    base = Path(base_dir)

    def data_uri(match: re.Match) -> str:
        src = html.unescape(match.group(2))
        if src.startswith("data:"):
            return match.group(0)
        parts = urlsplit(src)
        if parts.scheme not in ("", "file") or parts.netloc:
            raise DataError(f"{src}: only local images can be embedded in the report")
        path = Path(unquote(parts.path))
        path = Path(os.path.normpath(path if path.is_absolute() else base / path))  # lexical, as relpath
        if not path.is_file():
            raise DataError(f"{path}: figure not found (links are resolved against {base}, the Markdown report's directory)")
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        payload = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{match.group(1)}data:{mime};base64,{payload}{match.group(3)}"

    return _IMG_SRC.sub(data_uri, body)


STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "tr:nth-child(even){background:#f6f6f6}"
    "img{max-width:100%;display:block}"
    "p em{color:#555;font-size:90%}"
)


def render_html(markdown_text: str, title: str, base_dir: str | Path = ".") -> str:
    """A standalone HTML page of the Markdown report, every image embedded as a data URI (one
    file, viewable offline and as an MLflow artifact). `base_dir`: the directory the Markdown's
    image links are relative to (the Markdown report's directory)."""
    import markdown

    body = embed_images(markdown.markdown(markdown_text, extensions=["tables"]), base_dir)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def render_report(title: str, sections: Sequence[Any], report_path: str | Path, summary: Any = None, preface: str = "") -> tuple[str, str]:
    """The report as (Markdown, self-contained HTML), the Markdown to be written at `report_path`."""
    markdown_text = render_markdown(title, sections, report_path, summary, preface)
    return markdown_text, render_html(markdown_text, title, Path(report_path).parent)
