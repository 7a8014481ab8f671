"""Self-contained HTML pages of image grids (images embedded, no external files needed)."""

import base64
import html
import io

from PIL import Image


def png_data_uri(image_uint8):
    """A data: URI holding one HWC uint8 image as PNG."""
    image = image_uint8[..., 0] if image_uint8.shape[-1] == 1 else image_uint8
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_table(title, header, rows, *, notes=""):
    """An HTML page: `rows` are lists of cells, each a str or an HWC uint8 image."""

    def cell(value):
        if isinstance(value, str):
            return f"<td>{html.escape(value)}</td>"
        return f'<td><img src="{png_data_uri(value)}" alt=""></td>'

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px; text-align: center; }}
img {{ image-rendering: pixelated; min-width: 64px; }}
</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>
<table><tr>{head}</tr>
{body}
</table></body></html>
"""
