"""The building blocks of ``report.html`` shared by its sections: style, number format, table, figure.

Why a module of its own: the page (:mod:`controller.report.html`) includes the fMRI and the stimulation
sections (:mod:`controller.report.fmri_html`, :mod:`controller.report.stim_html`), and those need the same
table and figure markup; with the helpers here, the sections do not import the page that includes them.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from html import escape
from pathlib import Path
from typing import Any

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 7px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}figure{margin:1em 0}figcaption{font-size:.85em;color:#444}
img{max-width:100%}.warn{color:#a33}.meta{font-size:.85em;color:#444}
"""


def fmt(v: Any, digits: int = 3) -> str:
    """A value as table text: '–' for none, yes/no, 3 significant digits, escaped."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.1f}"
    return escape(str(v))


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], left: Collection[str] = frozenset()) -> str:
    """An HTML table of ``rows`` (``columns``: (key, heading)); the ``left`` columns are left-aligned."""
    if not rows:
        return "<p>none</p>"
    head = "".join(f'<th class="{"l" if k in left else ""}">{escape(t)}</th>' for k, t in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if k in left else ""}">{fmt(r.get(k))}</td>' for k, _ in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def img(path: Path) -> str:
    """A PNG embedded as base64, so the page is one self-contained file."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'


def figure(key: str, figures: dict[str, tuple[Path, str]]) -> str:
    """The figure ``key`` with its caption ('' when it was not made)."""
    if key not in figures:
        return ""
    png, caption = figures[key]
    return f"<figure id='{escape(key)}'>{img(png)}<figcaption>{escape(caption)}</figcaption></figure>"
