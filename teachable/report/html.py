"""Two self-contained pages (images as base64 data URIs, inline CSS, no external requests), each
linking to the other:

- `reports/index.html`, the first page, read in five minutes: the run in one line, what this run can
  detect (per gate and headline number its estimate with interval, n, the minimum detectable effect,
  the status and the n an inconclusive gate needs) and the key figures, each with its intervals;
- `reports/detail.html`: the run's metadata and params, the decision gates with their conditions and
  details, every figure and table per hypothesis, and the per-snapshot sections (folded).

A small inline script records script errors, the page's height and, once the page has loaded,
whether every image decoded, into `<pre id="page-check">` (read back by `teachable.report.browser`
in headless Chromium).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from teachable.report.snapshot_view import anchor

esc = html.escape

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;\
max-width:1280px;
padding:1em 2em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:2px solid #0072B2;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ccc;\
padding:.25em .5em;
text-align:right;vertical-align:top}th{background:#f2f2f2}table.kv td,table.kv th{text-align:left}
table.kv th{width:18em;font-weight:600}table.gates td{text-align:left}\
table.gates td.num{text-align:right}
td:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#444}
.status{font-weight:700;padding:.1em .5em;border-radius:3px;white-space:nowrap}
.pass{background:#cce5f6;color:#003a66}.fail{background:#f9d3bf;color:#7a2900}
.not_applicable{background:#e6e6e6;color:#555}.inconclusive{background:#fff1b8;color:#5c4700;
border:1px dashed #8a6d00}tr.inconclusive-row td{background:#fffbe8}.estimate{color:#555;\
font-style:italic}
table.gates,table.detect{font-size:.8em}table.detect td{text-align:left}\
table.detect td.num{text-align:right}
table.gates th,table.detect th{text-align:left;vertical-align:bottom}\
table.gates td:first-child{min-width:16em}
td.ci{white-space:nowrap}
.scroll{overflow-x:auto}small.aside{color:#888}
details summary{cursor:pointer;color:#0072B2}
.notrun{background:#fff4d6;border-left:4px solid #E69F00;padding:.5em 1em}
.files{font-size:.8em;color:#555}details{margin:.5em 0}pre{background:#f7f7f7;padding:.6em;\
overflow:auto;
font-size:.8em}section.snapshot{border-top:1px dashed #aaa;margin-top:1.5em}small{color:#666}
p.run{color:#444;font-size:.9em}p.tally span.status{margin-right:.4em}
.keyfigs figure{margin:0 0 1.5em 0}
"""
FIRST_PAGE, DETAIL_PAGE = "index.html", "detail.html"

CHECK_SCRIPT = """
window.__pageErrors = [];
window.addEventListener('error', \
function (e) { window.__pageErrors.push(String(e.message || e.type)); }, true);
(function (original) {
  console.error = function () { window.__pageErrors.push(Array.prototype.join.call(arguments, ' '));
                                return original.apply(console, arguments); };
})(console.error);
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.getAttribute('alt'); });
  var out = document.getElementById('page-check');
  out.textContent = JSON.stringify({images: imgs.length, \
decoded: imgs.length - bad.length, bad: bad,
                                    errors: window.__pageErrors,
                                    height: document.documentElement.scrollHeight});
  out.setAttribute('data-ready', '1');
});
"""

STATUS_MARK = {
    "pass": "✓ pass",
    "fail": "✗ fail",
    "inconclusive": "? inconclusive",
    "not_applicable": "– not applicable",
}


@dataclass
class Section:
    """One hypothesis: its figures (caption, PNG path), tables (caption, frame, files) or why it is
    not run."""

    key: str
    title: str
    intro: str = ""
    figures: list[tuple[str, Path]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame, list[Path]]] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # "Fig H3.1: reports/phase3/... missing"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(
        index=False,
        border=0,
        na_rep="–",
        escape=True,
        float_format=lambda v: f"{v:.3f}",
        classes="data",
    )


def _value_ci(value, ci) -> str:
    """ "0.123 [0.050, 0.200]": the value with its 95% interval when there is one."""
    low, high = ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    text = _fmt(value)
    return text + (f" [{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else "")


def _status(status: str | None) -> str:
    if status is None:
        return '<span class="estimate">estimate</span>'
    return f'<span class="status {esc(status)}">{esc(STATUS_MARK.get(status, status))}</span>'


def detect_html(notes: list[str], rows: list[dict], gate_href: str = "", tally: str = "") -> str:
    """The "What this run can detect" section: the design notes, then per headline and gate its
    estimate with interval and n, the minimum detectable effect at this n, the status and, when
    inconclusive, the n needed."""
    out = [
        '<section id="detect"><h2>What this run can detect</h2>',
        tally,
        *(f"<p>{esc(n)}</p>" for n in notes),
        "<p><small>Interval: as the stage computed it (the phase 3-5 gates' intervals "
        "are two-sided at 1 - 2&alpha;, so each bound is the one-sided test at &alpha;). "
        "Minimum detectable: the smallest true effect the pre-specified test detects "
        "with power 0.8 at this n (one-sided, at the gate's &alpha;). "
        "n needed: the n at which an inconclusive gate would be decided "
        '("not given" where the stage could '
        "not give one, e.g. an observed effect on the wrong side).</small></p>",
        '<table class="detect"><tr><th>quantity</th><th>estimate [interval]</th><th>n</th>'
        "<th>minimum detectable effect</th><th>status</th><th>n needed</th></tr>",
    ]
    for r in rows:
        name = esc(r["what"])
        if r["kind"] == "gate":
            name = f'<a href="{esc(gate_href)}#gate-{esc(r["key"])}">{name}</a>'
        sub = " · ".join(esc(x) for x in (r.get("statistic"), r.get("note")) if x)
        needed = "–"
        if r["status"] == "inconclusive":
            needed = (
                esc(_with_unit(r["n_needed"], r.get("n_needed_unit")))
                if r["n_needed"] is not None
                else "not given"
            )
        cls = f' class="{esc(r["status"])}-row"' if r["status"] else ""
        out.append(
            f"<tr{cls}><td>{name}{'<br><small>' + sub + '</small>' if sub else ''}</td>"
            f'<td class="num">{esc(_value_ci(r["value"], r["ci"]))}</td>'
            f'<td class="num">{esc(_with_unit(r["n"], r.get("n_unit")))}</td>'
            f'<td class="num">{esc(_fmt(r["min_detectable"]))}</td><td>{_status(r["status"])}</td>'
            f'<td class="num">{needed}</td></tr>'
        )
    out.append("</table></section>")
    return "\n".join(out)


def _with_unit(n, unit: str | None) -> str:
    return _fmt(n) + (f" {unit}" if unit and n is not None else "")


GATE_HEADER = (
    "gate (phase: name; condition; source)",
    "statistic",
    "value",
    "interval",
    "p",
    "α",
    "threshold",
    "n",
    "status",
    "min detectable",
    "n needed",
    "fail action (seeds)",
)


def gates_html(gates: list[dict]) -> str:
    rows = [
        '<div class="scroll"><table class="gates"><tr>'
        + "".join(f"<th>{esc(h)}</th>" for h in GATE_HEADER)
        + "</tr>"
    ]
    for g in gates:
        detail = {k: v for k, v in g["detail"].items() if v is not None and k != "why"}
        why = g["detail"].get("why")
        ci = g["ci"] if g["ci"] and g["ci"][0] is not None and g["ci"][1] is not None else None
        rows.append(
            f'<tr id="gate-{esc(g["id"])}" class="{esc(g["status"])}-row">'
            f"<td><b>{esc(g['phase'])}: {esc(g['name'])}</b>"
            f"<br><small>{esc(g['condition'])}; <code>{esc(g['source'])}</code></small>"
            f"{'<br><small><i>' + esc(why) + '</i></small>' if why else ''}"
            + (
                f"<details><summary>details</summary><small>{esc(_fmt_detail(detail))}"
                "</small></details>"
                if detail
                else ""
            )
            + f"</td><td><code>{_breakable(g['statistic'] or '–')}</code></td>"
            f'<td class="num">{esc(_fmt(g["value"]))}</td><td class="num ci">'
            f"{esc(f'[{_fmt(ci[0])}, {_fmt(ci[1])}]' if ci else '–')}</td>"
            f'<td class="num">{esc(_fmt_p(g["p_value"]))}</td><td class="num">'
            f'{esc(_fmt(g["alpha"]))}</td><td class="num">{esc(_fmt(g["threshold"]))}'
            f'</td><td class="num">{esc(_fmt(g["n"]))}</td><td>{_status(g["status"])}'
            f'</td><td class="num">{esc(_fmt(g["min_detectable"]))}</td><td class="num">'
            f"{_needed(g)}</td><td>{esc(g['fail_action'])}</td></tr>"
        )
    return "\n".join(rows) + "</table></div>"


def _breakable(name: str) -> str:
    """A long statistic name that may wrap after its underscores."""
    return esc(name).replace("_", "_<wbr>")


def _needed(g: dict) -> str:
    """The n that would decide the gate: shown plainly for an inconclusive gate, aside for a decided
    one (where the stage gives it, e.g. the n for power 0.8 at the target)."""
    if g["n_needed"] is None:
        return "–"
    text = esc(_fmt(g["n_needed"]))
    return text if g["status"] == "inconclusive" else f'<small class="aside">({text})</small>'


def _fmt_p(value) -> str:
    if isinstance(value, float) and 0 < value < 0.001:
        return f"{value:.1e}"
    return _fmt(value)


def _fmt_detail(value) -> str:
    """A verdict's details in one line: nested dicts in parentheses, lists in brackets."""
    if isinstance(value, dict):
        return "; ".join(
            f"{k}: {_fmt_detail(v)}" if not isinstance(v, dict) else f"{k} ({_fmt_detail(v)})"
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt_detail(v) for v in value) + "]"
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
        parts.append(_figure_html(caption, png, out_dir))
    for caption, frame, files in section.tables:
        links = ", ".join(
            f'<a href="{esc(_rel(p, out_dir))}">{esc(p.suffix[1:])}</a>' for p in files
        )
        parts.append(
            f'<h3>{esc(caption)}</h3><div class="scroll">{table_html(frame)}</div>'
            f'<p class="files">files: {links}</p>'
        )
    parts.append("</section>")
    return "\n".join(parts)


def _rel(path: Path, out_dir: Path) -> str:
    try:
        return path.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _head(title: str) -> list[str]:
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        f"<script>{CHECK_SCRIPT}</script>",
        "</head><body>",
    ]


TAIL = ['<pre id="page-check" hidden></pre>', "</body></html>"]
RUN_LINE = (
    "generated (UTC)",
    "git revision",
    "environment",
    "labeled snapshots",
    "evaluated models (3)",
)


def tally_html(gates: list[dict]) -> str:
    """ "13 gates: ✓ pass 4 ✗ fail 4 ? inconclusive 5": the count per status, statuses with none
    left out."""
    counts = {s: sum(g["status"] == s for g in gates) for s in STATUS_MARK}
    parts = "".join(f"{_status(s)}{n} " for s, n in counts.items() if n)
    return f'<p class="tally"><b>{len(gates)} gates:</b> {parts}</p>'


def _figure_html(caption: str, png: Path, out_dir: Path, link: str = "") -> str:
    pdf = png.with_suffix(".pdf")
    more = f' <a href="{esc(link)}">details</a>' if link else ""
    return (
        f'<figure><img src="{data_uri(png)}" alt="{esc(png.stem)}">'
        f'<figcaption>{esc(caption)} <span class="files">({esc(_rel(png, out_dir))}, '
        f"{esc(_rel(pdf, out_dir))})</span>{more}</figcaption></figure>"
    )


def render_first_page(
    meta: list[tuple[str, str]],
    gates: list[dict],
    key_figures: list[tuple[str, str, Path]],
    out_dir: Path,
    detect: tuple[list[str], list[dict]] = ([], []),
) -> str:
    """`index.html`: the run in one line, what the run can detect (every gate and headline with its
    interval; a gate's name links to its row in the detail page) and the key figures (`key_figures`:
    the section key, the caption and the PNG of each); everything else is one link away in
    `detail.html`."""
    run = " · ".join(f"{esc(k)}: {esc(v)}" for k, v in meta if k in RUN_LINE)
    body = [
        *_head("Teachable moments: report"),
        "<h1>Teachable moments: report</h1>",
        f'<p class="run">{run}</p>',
        '<nav><a href="#detect">What this run can detect</a> '
        f'<a href="#figures">Key figures</a> <a href="{DETAIL_PAGE}">Detail: '
        "the run and params, each gate's condition and details, every figure "
        "and table, the snapshots &rarr;</a></nav>",
        detect_html(*detect, gate_href=DETAIL_PAGE, tally=tally_html(gates)),
        '<section id="figures"><h2>Key figures</h2><div class="keyfigs">',
        *(
            _figure_html(caption, png, out_dir, f"{DETAIL_PAGE}#{key}")
            for key, caption, png in key_figures
        ),
        f'</div><p>Every other figure and table: <a href="{DETAIL_PAGE}">'
        f"{DETAIL_PAGE}</a>.</p></section>",
        *TAIL,
    ]
    return "\n".join(body) + "\n"


def render_page(
    meta: list[tuple[str, str]],
    params_yaml: str,
    gates: list[dict],
    sections: list[Section],
    snapshots: list[tuple[dict, str]],
    problems: list[str],
    out_dir: Path,
) -> str:
    """`detail.html`: the run and its params, the gates with their conditions and details, the
    hypotheses' figures and tables, and the snapshots (each folded). `snapshots` is (index row,
    section HTML from snapshot_view.to_html) per shown snapshot."""
    nav = " ".join(f'<a href="#{esc(s.key)}">{esc(s.title.split(":")[0])}</a>' for s in sections)
    meta_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in meta)
    index = _snapshot_index([row for row, _ in snapshots]) if snapshots else ""
    problems_html = (
        (
            "<details><summary>Inputs not found or unreadable ({})</summary><ul>{}</ul></details>"
        ).format(len(problems), "".join(f"<li><code>{esc(p)}</code></li>" for p in problems))
        if problems
        else ""
    )
    folded = (
        f"<details><summary>{esc(row['snapshot_id'])} ({esc(str(row.get('quadrant')))}, "
        f"{esc(str(row.get('shown because')))})</summary>{h}</details>"
        for row, h in snapshots
    )
    body = [
        *_head("Teachable moments: report (detail)"),
        "<h1>Teachable moments: report (detail)</h1>",
        f'<nav><a href="{FIRST_PAGE}">&larr; First page</a> <a href="#run">Run</a> '
        f'<a href="#gates">Gates</a> {nav} <a href="#snapshots">Snapshots</a></nav>',
        f'<section id="run"><h2>Run</h2><table class="kv">{meta_rows}</table>',
        "<details><summary>params.yaml (as validated)</summary><pre>"
        f"{esc(params_yaml)}</pre></details>",
        problems_html,
        "</section>",
        '<section id="gates"><h2>Decision gates</h2>'
        f"{tally_html(gates)}{gates_html(gates)}</section>",
        *(_section_html(s, out_dir) for s in sections),
        '<section id="snapshots"><h2>Snapshots</h2><p>'
        "The highest-ELP_net snapshots of each quadrant and the "
        "micro-trained ones, each folded (open one from the table or its line). "
        "The same view prints in a terminal with <code>python -m teachable show ID</code>.</p>",
        index,
        *folded,
        "</section>",
        *TAIL,
    ]
    return "\n".join(body) + "\n"


def _snapshot_index(rows: list[dict]) -> str:
    """A table of the shown snapshots, each id linking to its section."""
    columns = list(rows[0])
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [
            f'<td><a href="#{esc(anchor(row["snapshot_id"]))}">{esc(row["snapshot_id"])}</a></td>'
        ]
        cells += [f"<td>{esc(_fmt(row[c]))}</td>" for c in columns[1:]]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
