"""The demo's report: sections of figures, tables and numbers, written as one self-contained
HTML page (images embedded), the same figures as PNG files, and every number in metrics.json."""

import dataclasses
import html
import json
import os

import numpy as np

from jgan.viz.html import png_data_uri
from jgan.viz.images import save_png

STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1100px; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: center; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; max-width: 480px; }
img { image-rendering: pixelated; }
.notes td { text-align: left; }
"""


@dataclasses.dataclass
class Section:
    """One part of the report: an introduction, then figures and tables in order."""

    key: str
    title: str
    intro: str
    blocks: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)
    figures: dict = dataclasses.field(default_factory=dict)

    def figure(self, name, image, caption, scale=2):
        """Adds an HWC uint8 image, shown `scale` times its size."""
        self.figures[name] = image
        width = image.shape[1] * scale
        self.blocks.append(
            f'<figure><img src="{png_data_uri(image)}" width="{width}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, header, rows, caption=""):
        """Adds a table; a cell is a str, a number, or (number, shade in [0, 1])."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
        caption = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{caption}<tr>{head}</tr>\n{body}</table>")

    def text(self, paragraph):
        self.blocks.append(f"<p>{html.escape(paragraph)}</p>")


def _number(value):
    return f"{value:.3g}" if isinstance(value, float | np.floating) else str(value)


def _cell(value):
    if isinstance(value, tuple):
        value, shade = value
        shade = float(np.clip(shade, 0.0, 1.0))
        red, green = int(255 - 120 * shade), int(255 - 40 * shade)
        return f'<td style="background: rgb({red},{green},255)">{html.escape(_number(value))}</td>'
    return f"<td>{html.escape(_number(value))}</td>"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_report(directory, title, notes, sections):
    """Writes index.html, one PNG per figure and metrics.json into `directory`."""
    toc = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in notes.items()
    )
    parts = [
        f'<h2 id="{s.key}">{html.escape(s.title)}</h2><p>{html.escape(s.intro)}</p>'
        + "\n".join(s.blocks)
        for s in sections
    ]
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<table class="notes">{rows}</table>
<ul>{toc}</ul>
{"".join(parts)}
</body></html>
"""
    with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)
    for section in sections:
        for name, image in section.figures.items():
            save_png(os.path.join(directory, f"{section.key}_{name}.png"), image)
    metrics = {"notes": notes, **{s.key: s.metrics for s in sections}}
    with open(os.path.join(directory, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(_jsonable(metrics), f, indent=1)
