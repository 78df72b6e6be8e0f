"""One snapshot, everything known about it: the state text the student saw, its distribution over actions, the
teacher's advice, leverage and CPT outcomes with their counts, the quadrant, and which trained models used it.

`describe(snapshot_id, root)` gathers it into a dict; `to_text` prints it (`python -m teachable show ID`) and
`to_html` renders the same dict as a section of the report page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from teachable.records import iter_jsonl

SNAPSHOT_FILES = ("data/quadrant_snapshots.jsonl", "data/labeled_snapshots.jsonl", "data/snapshots.jsonl")
CELLS_DIR = "models/phase2"
MICRO = "reports/phase1b/micro_training_results.json"
SELECTION = "reports/phase5/selection_summary.json"
CONDITIONS = ("base", "placebo", "demo", "contrast", "hint")


class UnknownSnapshot(LookupError):
    """No snapshot with that id in any snapshot file."""


def find_snapshot(snapshot_id: str, root: Path) -> tuple[dict, str]:
    """The record of `snapshot_id` from the most labeled snapshot file that exists (and the file's path)."""
    tried = []
    for rel in SNAPSHOT_FILES:
        path = root / rel
        if not path.exists():
            continue
        tried.append(rel)
        for record in iter_jsonl(path):
            if record.get("snapshot_id") == snapshot_id:
                return record, rel
        break  # the most labeled file that exists is the reference; do not fall back to a stale one
    where = ", ".join(tried) or f"none of {', '.join(SNAPSHOT_FILES)} exists (run `dvc repro quadrants` first)"
    raise UnknownSnapshot(
        f"unknown snapshot id {snapshot_id!r} (searched: {where}). Ids look like 'ep000002-s1'; list them with\n"
        f"  python -c \"import json; [print(json.loads(l)['snapshot_id']) for l in open('{SNAPSHOT_FILES[0]}')]\"\n"
        f"or open reports/index.html, whose snapshot sections are anchored #snap-<id>.")


def _load_json(path: Path):
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def training_uses(snapshot_id: str, root: Path, cells: dict | None = None, micro: list | None = None,
                  selection: dict | None = None) -> dict:
    """Which trained models used the snapshot: phase 2 models (from their metrics.json `snapshot_ids`), the
    phase 1B micro-run on it (with its gain), and the phase 5 selection methods that picked it. Preloaded
    inputs may be passed in (the report does) to avoid rereading the files per snapshot."""
    if cells is None:
        cells = {p.parent.name: _load_json(p) or {} for p in sorted((root / CELLS_DIR).glob("*/metrics.json"))}
    if micro is None:
        data = _load_json(root / MICRO)
        micro = (data.get("results") if isinstance(data, dict) else data) or []
    if selection is None:
        selection = _load_json(root / SELECTION) or {}
    models = sorted(name for name, m in cells.items() if snapshot_id in (m.get("snapshot_ids") or []))
    runs = [m for m in micro if m.get("snapshot_id") == snapshot_id]
    picked = sorted(name for name, m in (selection.get("methods") or {}).items()
                    if snapshot_id in (m.get("snapshot_ids") or []))
    missing_ids = sorted(name for name, m in cells.items() if "snapshot_ids" not in m)
    return {"phase2_models": models, "micro_training": runs[0] if runs else None, "selection_methods": picked,
            "phase2_models_without_ids": missing_ids}


def describe(snapshot_id: str, root: str | Path = ".", record: dict | None = None, **preloaded) -> dict:
    """Everything about one snapshot; `record` (and `training_uses`' inputs) may be passed in preloaded."""
    root = Path(root)
    record, source = (record, SNAPSHOT_FILES[0]) if record is not None else find_snapshot(snapshot_id, root)
    probs = record.get("student_probs") or {}
    return {
        "snapshot_id": snapshot_id, "source_file": source,
        "task": {k: record.get(k) for k in ("env", "task_id", "seed", "step_idx", "source", "split")},
        "state": {"mission": record.get("mission"), "history": record.get("history") or [], "obs": record.get("obs"),
                  "valid_actions": record.get("valid_actions") or [], "student_action": record.get("student_action")},
        "student_probs": sorted(probs.items(), key=lambda kv: -kv[1]),
        "U": record.get("U"), "uncertainty": record.get("uncertainty") or {},
        "teacher": record.get("teacher") or {}, "patches": record.get("patches") or {},
        "leverage": record.get("leverage") or {}, "cpt": record.get("cpt") or {}, "quadrant": record.get("quadrant"),
        "training": training_uses(snapshot_id, root, **preloaded),
    }


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _ci(interval) -> str:
    return f"[{_f(interval[0])}, {_f(interval[1])}]" if interval and interval[0] is not None else ""


def _rows(view: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """The view as titled (label, text) rows: the one layout both the text and the HTML renderers use."""
    t, s, lev, cpt, teacher, train = (view["task"], view["state"], view["leverage"], view["cpt"], view["teacher"],
                                      view["training"])
    unc = view["uncertainty"]
    n_cpt = cpt.get("n_per_condition")
    ci, net = lev.get("ci") or {}, cpt.get("net") or {}
    history = [(f"step -{len(s['history']) - i}", f"saw: {h.get('obs')}  -> did: {h.get('action')}")
               for i, h in enumerate(s["history"])] or [("previous steps", "(none)")]
    micro = train["micro_training"]
    return [
        ("Snapshot", [("id", view["snapshot_id"]), ("quadrant", _f(view["quadrant"])),
                      ("task", f"{t['env']} {t['task_id']} (seed {t['seed']}), step {t['step_idx']}"),
                      ("source", f"{_f(t['source'])}, split {_f(t['split'])}; from {view['source_file']}")]),
        ("State (what the student saw)", [("mission", _f(s["mission"]))] + history + [
                                          ("observation now", _f(s["obs"])),
                                          ("valid actions", ", ".join(s["valid_actions"]))]),
        ("Student", [("chose", _f(s["student_action"])),
                     ("U (entropy, nats)", _f(view["U"])),
                     ("margin / top prob", f"{_f(unc.get('margin'))} / {_f(unc.get('top_prob'))}")]
         + [(f"p({a})", f"{p:.3f}  {'#' * round(p * 40)}") for a, p in view["student_probs"]]),
        ("Teacher", [(k, _f(teacher.get(k))) for k in ("suggested_action", "diagnosis", "hint", "contrast",
                                                       "source", "valid")]),
        ("Leverage (success rates over rollouts from the state; [95% intervals])", [
            ("p_student", f"{_f(lev.get('p_student'))} {_ci(ci.get('student'))} over {_f(lev.get('n_student'))} "
                          f"rollouts of {_f(lev.get('horizon'))} steps"),
            ("p_force (expert action forced, then student)",
             f"{_f(lev.get('p_force'))} {_ci(ci.get('force'))} over {_f(lev.get('n_force'))} rollouts, same seeds"),
            ("p_expert (expert in control)", f"{_f(lev.get('p_expert'))} over {_f(lev.get('n_expert'))} "
                                             "rollout (deterministic)"),
            ("L_local = p_force - p_student", f"{_f(lev.get('L_local'))} {_ci(ci.get('L_local'))} (paired)"),
            ("L_upper = p_expert - p_student", f"{_f(lev.get('L_upper'))} {_ci(ci.get('L_upper'))}"),
            ("leverage side", f"{_f(lev.get('side'))} of L threshold {_f(lev.get('threshold'))} (decision "
                              f"interval {_ci(lev.get('decision_ci'))} at {_f(lev.get('decision_confidence'))})")]),
        ("Contextual Patch Test (base = the student's rollouts)", [
            (f"p_{c}", f"{_f(cpt.get(f'p_{c}'))} over {_f(n_cpt)} rollouts"
             + (f"; minus placebo {_f(net[c].get('diff'))} {_ci(net[c].get('ci'))}" if c in net else "")
             + (f"   patch: {view['patches'][c]}" if view["patches"].get(c) else "")) for c in CONDITIONS]
         + [("ELP_net (route chosen on even rollouts, scored on odd)",
             f"{_f(cpt.get('ELP_net'))} {_ci(cpt.get('ELP_net_ci'))} over {_f(cpt.get('n_estimation'))} rollouts"),
            ("route_net", _f(cpt.get("route_net"))),
            ("ELP_net_naive (in-sample best, biased up)", f"{_f(cpt.get('ELP_net_naive'))} "
                                                          f"({_f(cpt.get('route_naive'))})")]),
        ("Training that used it", [
            ("phase 2 models", ", ".join(train["phase2_models"]) or "(none)"),
            ("phase 1B micro-run", "(not micro-trained)" if not micro else
             f"gain {_f(micro.get('gain'))} (p_base {_f(micro.get('p_base'))} -> p_trained "
             f"{_f(micro.get('p_trained'))} over {_f(micro.get('n_validation'))} rollouts, "
             f"format {_f(micro.get('format'))})"),
            ("phase 5 selection", ", ".join(train["selection_methods"]) or "(not selected / not run)")]
         + ([("note", "no snapshot_ids recorded in: " + ", ".join(train["phase2_models_without_ids"]))]
            if train["phase2_models_without_ids"] else [])),
    ]


def to_text(view: dict) -> str:
    out = []
    for title, rows in _rows(view):
        out.append(f"== {title}")
        width = max(len(label) for label, _ in rows)
        out += [f"  {label:<{width}}  {text}" for label, text in rows]
    return "\n".join(out) + "\n"


def anchor(snapshot_id: str) -> str:
    return "snap-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in snapshot_id)


def to_html(view: dict) -> str:
    """A <section id="snap-<id>"> with one small table per block; all text escaped."""
    esc = html.escape
    parts = [f'<section class="snapshot" id="{anchor(view["snapshot_id"])}">',
             f'<h3>Snapshot {esc(view["snapshot_id"])} <small>({esc(_f(view["quadrant"]))})</small></h3>']
    for title, rows in _rows(view):
        parts.append(f"<h4>{esc(title)}</h4><table class=\"kv\">")
        parts += [f"<tr><th>{esc(label)}</th><td>{esc(text)}</td></tr>" for label, text in rows]
        parts.append("</table>")
    parts.append(f'<p class="cli">Terminal: <code>python -m teachable show {esc(view["snapshot_id"])}</code></p>'
                 "</section>")
    return "\n".join(parts)
