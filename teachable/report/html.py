"""`reports/index.html`: one self-contained page (images as base64 data URIs, inline CSS, no external requests)
with the run's metadata, every figure and table per hypothesis, the decision gates and per-snapshot sections.

A small inline script records script errors and, once the page has loaded, whether every image decoded, into
`<pre id="page-check">` (read back by `teachable.report.browser` in headless Chromium).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from teachable.snapshot_view import anchor

esc = html.escape

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1em 2em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:2px solid #0072B2;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right;vertical-align:top}th{background:#f2f2f2}table.kv td,table.kv th{text-align:left}
table.kv th{width:18em;font-weight:600}table.gates td{text-align:left}table.gates td.num{text-align:right}
td:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#444}
.status{font-weight:700;padding:.1em .5em;border-radius:3px;white-space:nowrap}
.pass{background:#cce5f6;color:#003a66}.fail{background:#f9d3bf;color:#7a2900}
.not_applicable{background:#e6e6e6;color:#555}.inconclusive{background:#fff1b8;color:#5c4700}
.notrun{background:#fff4d6;border-left:4px solid #E69F00;padding:.5em 1em}
.files{font-size:.8em;color:#555}details{margin:.5em 0}pre{background:#f7f7f7;padding:.6em;overflow:auto;
font-size:.8em}section.snapshot{border-top:1px dashed #aaa;margin-top:1.5em}small{color:#666}
"""

CHECK_SCRIPT = """
window.__pageErrors = [];
window.addEventListener('error', function (e) { window.__pageErrors.push(String(e.message || e.type)); }, true);
(function (original) {
  console.error = function () { window.__pageErrors.push(Array.prototype.join.call(arguments, ' '));
                                return original.apply(console, arguments); };
})(console.error);
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.getAttribute('alt'); });
  var out = document.getElementById('page-check');
  out.textContent = JSON.stringify({images: imgs.length, decoded: imgs.length - bad.length, bad: bad,
                                    errors: window.__pageErrors});
  out.setAttribute('data-ready', '1');
});
"""

STATUS_MARK = {"pass": "✓ pass", "fail": "✗ fail", "inconclusive": "? inconclusive",
               "not_applicable": "– not applicable"}


@dataclass
class Section:
    """One hypothesis: its figures (caption, PNG path), tables (caption, frame, files) or why it is not run."""

    key: str
    title: str
    intro: str = ""
    figures: list[tuple[str, Path]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame, list[Path]]] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # "Fig H3.1: reports/phase3/... missing"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, na_rep="–", escape=True,
                         float_format=lambda v: f"{v:.3f}", classes="data")


def gates_html(gates: list[dict]) -> str:
    rows = ["<table class=\"gates\"><tr><th>phase</th><th>gate</th><th>condition</th><th>value</th><th>threshold</th>"
            "<th>status</th><th>fail action (seeds)</th><th>source</th></tr>"]
    for g in gates:
        detail = "; ".join(f"{k}: {_fmt_detail(v)}" for k, v in g["detail"].items() if v is not None)
        rows.append(
            f'<tr id="gate-{esc(g["id"])}"><td>{esc(g["phase"])}</td><td>{esc(g["name"])}'
            f'{"<br><small>" + esc(detail) + "</small>" if detail else ""}</td><td>{esc(g["condition"])}</td>'
            f'<td class="num">{esc(_fmt(g["value"]))}</td><td class="num">{esc(_fmt(g["threshold"]))}</td>'
            f'<td><span class="status {esc(g["status"])}">{esc(STATUS_MARK[g["status"]])}</span></td>'
            f'<td>{esc(g["fail_action"])}</td><td><code>{esc(g["source"])}</code></td></tr>')
    return "\n".join(rows) + "</table>"


def _fmt_detail(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return _fmt(value)


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _section_html(section: Section, out_dir: Path) -> str:
    parts = [f'<section id="{esc(section.key)}"><h2>{esc(section.title)}</h2>']
    if section.intro:
        parts.append(f"<p>{esc(section.intro)}</p>")
    for line in section.not_run:
        parts.append(f'<p class="notrun">Not run: {esc(line)}</p>')
    for caption, png in section.figures:
        pdf = png.with_suffix(".pdf")
        parts.append(f'<figure><img src="{data_uri(png)}" alt="{esc(png.stem)}">'
                     f'<figcaption>{esc(caption)} <span class="files">({esc(_rel(png, out_dir))}, '
                     f'{esc(_rel(pdf, out_dir))})</span></figcaption></figure>')
    for caption, frame, files in section.tables:
        links = ", ".join(f'<a href="{esc(_rel(p, out_dir))}">{esc(p.suffix[1:])}</a>' for p in files)
        parts.append(f"<h3>{esc(caption)}</h3>{table_html(frame)}<p class=\"files\">files: {links}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _rel(path: Path, out_dir: Path) -> str:
    try:
        return path.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def render_page(meta: list[tuple[str, str]], params_yaml: str, gates: list[dict], sections: list[Section],
                snapshots: list[tuple[dict, str]], problems: list[str], out_dir: Path) -> str:
    """The whole page. `snapshots` is (index row, section HTML from snapshot_view.to_html) per shown snapshot."""
    nav = " ".join(f'<a href="#{esc(s.key)}">{esc(s.title.split(":")[0])}</a>' for s in sections)
    meta_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in meta)
    index = _snapshot_index([row for row, _ in snapshots]) if snapshots else ""
    problems_html = ("<details><summary>Inputs not found or unreadable ({})</summary><ul>{}</ul></details>".format(
        len(problems), "".join(f"<li><code>{esc(p)}</code></li>" for p in problems)) if problems else "")
    body = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Teachable moments: report</title>", f"<style>{CSS}</style>", f"<script>{CHECK_SCRIPT}</script>",
        "</head><body>", "<h1>Teachable moments: report</h1>",
        f'<nav><a href="#run">Run</a> <a href="#gates">Gates</a> {nav} <a href="#snapshots">Snapshots</a></nav>',
        f'<section id="run"><h2>Run</h2><table class="kv">{meta_rows}</table>',
        f"<details><summary>params.yaml (as validated)</summary><pre>{esc(params_yaml)}</pre></details>",
        problems_html, "</section>",
        f'<section id="gates"><h2>Decision gates</h2>{gates_html(gates)}</section>',
        *(_section_html(s, out_dir) for s in sections),
        '<section id="snapshots"><h2>Snapshots</h2><p>The highest-ELP_net snapshots of each quadrant and the '
        "micro-trained ones. The same view prints in a terminal with <code>python -m teachable show ID</code>.</p>",
        index, *(h for _, h in snapshots), "</section>",
        '<pre id="page-check" hidden></pre>', "</body></html>",
    ]
    return "\n".join(body) + "\n"


def _snapshot_index(rows: list[dict]) -> str:
    """A table of the shown snapshots, each id linking to its section."""
    columns = list(rows[0])
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [f'<td><a href="#{esc(anchor(row["snapshot_id"]))}">{esc(row["snapshot_id"])}</a></td>']
        cells += [f"<td>{esc(_fmt(row[c]))}</td>" for c in columns[1:]]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
