"""A report as a document: sections of figures, tables, fits and notes, written to a folder as one
self-contained HTML file plus the same figures as PNG, tables as CSV and Parquet, fits as JSON.

The HTML embeds every figure as a ``data:`` URI and carries its CSS inline, so the file can be
mailed or archived alone and still shows everything; nothing in it points outside the file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .style import ReportError, png_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Rows of a table shown in the HTML (the CSV and Parquet files always hold all of them).
HTML_ROWS = 60

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0 auto;max-width:1100px;padding:1.5em 2em;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;
 padding-bottom:.2em;margin-top:2em}h3{font-size:1em;margin-bottom:.3em}
.sub{color:#666;margin-top:0}figure{margin:1em 0}img{max-width:100%;height:auto}
figcaption{font-size:.9em;color:#444}table{border-collapse:collapse;font-size:.82em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.s,th.s{text-align:left}.scroll{overflow-x:auto}
.note{background:#fff8e1;border-left:3px solid #e6a800;padding:.4em .8em;font-size:.9em}
.files{font-size:.85em;color:#555}pre{background:#f7f7f7;padding:.6em;font-size:.8em;
 overflow-x:auto}details{margin:.4em 0}
"""


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ReportError(
            f"report item name {name!r} must be letters, digits, '_', '-' or '.' (a file stem)"
        )
    return name


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, complex):
        return {"real": jsonable(obj.real), "imag": jsonable(obj.imag)}
    if isinstance(obj, pl.DataFrame):
        return jsonable(obj.to_dicts())
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–" if math.isnan(v) else str(v)
        return f"{v:.5g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """List and struct columns joined into strings (CSV has no nested values)."""
    exprs = []
    for name, dtype in df.schema.items():
        if isinstance(dtype, pl.List):
            exprs.append(pl.col(name).cast(pl.List(pl.String)).list.join("; ").alias(name))
        elif isinstance(dtype, pl.Struct | pl.Object):
            exprs.append(pl.col(name).map_elements(str, return_dtype=pl.String).alias(name))
    return df.with_columns(exprs) if exprs else df


@dataclass(frozen=True)
class FigureItem:
    name: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class TableItem:
    name: str
    frame: pl.DataFrame
    caption: str


@dataclass(frozen=True)
class FitItem:
    name: str
    data: dict[str, Any]
    caption: str
    summary: dict[str, str]


@dataclass(frozen=True)
class NoteItem:
    text: str


Item = FigureItem | TableItem | FitItem | NoteItem


@dataclass
class Section:
    title: str
    items: list[Item] = field(default_factory=list)


@dataclass
class Report:
    """A report being assembled. Add sections and items in reading order, then :meth:`write`.

    Item names become file stems in the report folder (``<name>.png``, ``<name>.csv`` and
    ``<name>.parquet``, ``<name>.json``), so they must be unique within the report.
    """

    title: str
    facts: dict[str, str] = field(default_factory=dict)  # shown under the title
    sections: list[Section] = field(default_factory=list)
    _names: set[str] = field(default_factory=set, repr=False)

    def section(self, title: str) -> Section:
        """Start a new section; later items go into it."""
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def _current(self) -> Section:
        return self.sections[-1] if self.sections else self.section("Results")

    def _claim(self, name: str, kind: str) -> str:
        key = f"{kind}:{_check_name(name)}"
        if key in self._names:
            raise ReportError(f"the report already has a {kind} named {name!r}")
        self._names.add(key)
        return name

    def figure(self, name: str, fig: Figure, caption: str = "") -> None:
        """Render ``fig`` to PNG now (the Figure can then be dropped) and add it."""
        self._current().items.append(
            FigureItem(self._claim(name, "figure"), png_bytes(fig), caption)
        )

    def table(self, name: str, frame: pl.DataFrame, caption: str = "") -> None:
        self._current().items.append(TableItem(self._claim(name, "table"), frame, caption))

    def fit(
        self,
        name: str,
        data: Mapping[str, Any],
        caption: str = "",
        summary: Mapping[str, str] | None = None,
    ) -> None:
        """A fit result as JSON; ``summary`` (label -> text) is shown as a small table."""
        self._current().items.append(
            FitItem(self._claim(name, "fit"), jsonable(dict(data)), caption, dict(summary or {}))
        )

    def note(self, text: str) -> None:
        """A remark in the report: what could not be analysed, and why."""
        self._current().items.append(NoteItem(text))

    @property
    def figures(self) -> list[FigureItem]:
        return [i for s in self.sections for i in s.items if isinstance(i, FigureItem)]

    def write(self, out_dir: Path | str, *, html_name: str = "report.html") -> ReportFiles:
        """Write the HTML and every PNG, CSV, Parquet and JSON file into ``out_dir`` (created)."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"{out}: cannot create the report folder: {exc.strerror}") from None
        files = ReportFiles(out / html_name)
        for sec in self.sections:
            for item in sec.items:
                if isinstance(item, FigureItem):
                    p = out / f"{item.name}.png"
                    p.write_bytes(item.png)
                    files.figures.append(p)
                elif isinstance(item, TableItem):
                    csv, pq = out / f"{item.name}.csv", out / f"{item.name}.parquet"
                    _flat(item.frame).write_csv(csv)
                    item.frame.write_parquet(pq)
                    files.tables += [csv, pq]
                elif isinstance(item, FitItem):
                    p = out / f"{item.name}.json"
                    p.write_text(json.dumps(item.data, indent=2, allow_nan=False) + "\n")
                    files.fits.append(p)
        files.html.write_text(self.to_html(), encoding="utf-8")
        return files

    # ------------------------------------------------------------------------------- HTML

    def to_html(self) -> str:
        """The whole report as one HTML document (figures inline as data: URIs)."""
        e = html.escape
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
            f'<p class="sub">cellbench report, generated {now}</p>',
        ]
        if self.facts:
            parts.append(_kv_table(self.facts))
        if self.sections:
            parts.append("<nav><ul>")
            for k, sec in enumerate(self.sections):
                parts.append(f'<li><a href="#s{k}">{e(sec.title)}</a></li>')
            parts.append("</ul></nav>")
        for k, sec in enumerate(self.sections):
            parts.append(f'<section id="s{k}"><h2>{e(sec.title)}</h2>')
            parts.extend(_item_html(item) for item in sec.items)
            parts.append("</section>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


@dataclass
class ReportFiles:
    """Paths written by :meth:`Report.write`."""

    html: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)  # CSV and Parquet of each table
    fits: list[Path] = field(default_factory=list)

    @property
    def all(self) -> list[Path]:
        return [self.html, *self.figures, *self.tables, *self.fits]


def _kv_table(d: Mapping[str, str]) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><th class="s">{e(k)}</th><td class="s">{e(v)}</td></tr>' for k, v in d.items()
    )
    return f"<table>{rows}</table>"


def _table_html(df: pl.DataFrame) -> str:
    e = html.escape
    shown = (
        df
        if df.height <= HTML_ROWS
        else pl.concat([df.head(HTML_ROWS // 2), df.tail(HTML_ROWS // 2)])
    )
    text_cols = {n for n, t in df.schema.items() if t == pl.String or isinstance(t, pl.List)}
    head = "".join(f'<th class="{"s" if n in text_cols else ""}">{e(n)}</th>' for n in df.columns)
    body = []
    for k, row in enumerate(shown.iter_rows()):
        if df.height > HTML_ROWS and k == HTML_ROWS // 2:
            body.append(
                f'<tr><td class="s" colspan="{df.width}">… '
                f"{df.height - HTML_ROWS} rows omitted …</td></tr>"
            )
        cells = "".join(
            f'<td class="{"s" if n in text_cols else ""}">{e(_fmt(v))}</td>'
            for n, v in zip(df.columns, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _item_html(item: Item) -> str:
    e = html.escape
    if isinstance(item, FigureItem):
        data = base64.b64encode(item.png).decode("ascii")
        cap = (
            f"<figcaption>{e(item.caption)} <span class='files'>({e(item.name)}.png)</span>"
            "</figcaption>"
        )
        return (
            f'<figure><img alt="{e(item.caption or item.name)}" '
            f'src="data:image/png;base64,{data}">{cap}</figure>'
        )
    if isinstance(item, TableItem):
        return (
            f"<h3>{e(item.caption or item.name)}</h3>{_table_html(item.frame)}"
            f'<p class="files">{item.frame.height} rows; full table in {e(item.name)}.csv '
            f"and {e(item.name)}.parquet</p>"
        )
    if isinstance(item, FitItem):
        parts = [f"<h3>{e(item.caption or item.name)}</h3>"]
        if item.summary:
            parts.append(_kv_table(item.summary))
        parts.append(
            f"<details><summary>{e(item.name)}.json</summary>"
            f"<pre>{e(json.dumps(item.data, indent=2))}</pre></details>"
        )
        return "".join(parts)
    return f'<p class="note">{e(item.text)}</p>'
