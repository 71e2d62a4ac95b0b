"""The study report: metric files pivoted into side-by-side tables, figures, Markdown and HTML."""

import glob
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aevae.errors import DataError


def load_metrics(files: Sequence[Any]) -> dict[str, float]:
    """Flat numeric metrics of several JSON files (`.path`); a non-empty `.label` prefixes the
    names of its file."""
    merged: dict[str, float] = {}
    for file in files:
        path = Path(file.path)
        if not path.is_file():
            raise DataError(f"{path}: metrics file not found (run the stage that writes it)")
        for name, value in json.loads(path.read_text()).items():
            if isinstance(value, (int, float)):
                merged[f"{file.label}/{name}" if file.label else name] = float(value)
    return merged


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
    header = ["metric", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, values in cells.items():
        shown = [f"{values[c]:.4g}" if c in values else "" for c in columns]
        lines.append("| " + " | ".join([row, *shown]) + " |")
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Any], report_path: str | Path) -> str:
    """The report as Markdown; figure links are relative to the report's directory."""
    base = Path(report_path).parent
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        if section.text:
            out += [section.text.strip(), ""]
        if section.files:
            out += [pivot_table(load_metrics(section.files), section.column_level), ""]
        for pattern in section.figures:
            for figure in sorted(glob.glob(pattern)):
                link = os.path.relpath(figure, base)
                out += [f"![{Path(figure).stem}]({link})", ""]
    return "\n".join(out)


def render_html(markdown_text: str, title: str) -> str:
    """A standalone HTML page of the Markdown report."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    style = "body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}"
    return f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head><body>{body}</body></html>\n"
