"""A report as a list of tables and images, rendered to markdown (images by relative path)
or to one self-contained HTML file (images embedded as base64 data URIs)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    caption: str
    path: Path


def render_markdown(title: str, notes: list[str], blocks: list[Table | Image], base: Path) -> str:
    out = [f"# {title}", ""]
    out += [f"{n}\n" for n in notes]
    for b in blocks:
        if isinstance(b, Table):
            out += [f"## {b.title}", ""]
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "|".join("---" for _ in b.header) + "|")
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b.rows]
            out.append("")
        else:
            rel = b.path.relative_to(base).as_posix()
            out += [f"## {b.caption}", "", f"![{b.caption}]({rel})", ""]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
th { background: #f3f3f3; }
code { font-size: 90%; }
img { max-width: 100%; border: 1px solid #eee; }
""".strip()


def _html_cell(text: str) -> str:
    # Backticks mark code in the markdown cells (the model hash).
    if len(text) > 1 and text.startswith("`") and text.endswith("`"):
        return f"<code>{html.escape(text[1:-1])}</code>"
    return html.escape(text)


def render_html(title: str, notes: list[str], blocks: list[Table | Image]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    out += [f"<p>{html.escape(n)}</p>" for n in notes]
    for b in blocks:
        if isinstance(b, Table):
            out.append(f"<h2>{html.escape(b.title)}</h2><table>")
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.header) + "</tr>")
            for row in b.rows:
                out.append("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
        else:
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            cap = html.escape(b.caption)
            out.append(f"<h2>{cap}</h2>")
            out.append(
                f'<img alt="{cap}" title="{html.escape(b.path.name)}" src="data:image/png;base64,{data}">'
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
