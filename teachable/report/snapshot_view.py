"""One snapshot rendered: `to_text` prints the dict `teachable.report.snapshot_data.describe`
gathers (`python -m teachable show ID`) and `to_html` renders the same dict as a section of the
report page."""

from __future__ import annotations

import html

CONDITIONS = ("base", "placebo", "demo", "contrast", "hint")  # the CPT arms, in the order shown


def _f(value, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None
        else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    )


def _ci(interval) -> str:
    return f"[{_f(interval[0])}, {_f(interval[1])}]" if interval and interval[0] is not None else ""


def _rows(view: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """The view as titled (label, text) rows: the one layout both the text and the HTML renderers
    use."""
    t, s, lev, cpt, teacher, train = (
        view["task"],
        view["state"],
        view["leverage"],
        view["cpt"],
        view["teacher"],
        view["training"],
    )
    unc = view["uncertainty"]
    n_cpt = cpt.get("n_per_condition")
    ci, net = lev.get("ci") or {}, cpt.get("net") or {}
    history = [
        (f"step -{len(s['history']) - i}", f"saw: {h.get('obs')}  -> did: {h.get('action')}")
        for i, h in enumerate(s["history"])
    ] or [("previous steps", "(none)")]
    micro = train["micro_training"]
    return [
        (
            "Snapshot",
            [
                ("id", view["snapshot_id"]),
                ("quadrant", _f(view["quadrant"])),
                ("task", f"{t['env']} {t['task_id']} (seed {t['seed']}), step {t['step_idx']}"),
                (
                    "source",
                    f"{_f(t['source'])}, split {_f(t['split'])}; from {view['source_file']}",
                ),
            ],
        ),
        (
            "State (what the student saw)",
            [("mission", _f(s["mission"]))]
            + history
            + [("observation now", _f(s["obs"])), ("valid actions", ", ".join(s["valid_actions"]))],
        ),
        (
            "Student",
            [
                ("chose", _f(s["student_action"])),
                ("U (entropy, nats)", _f(view["U"])),
                ("margin / top prob", f"{_f(unc.get('margin'))} / {_f(unc.get('top_prob'))}"),
            ]
            + [(f"p({a})", f"{p:.3f}  {'#' * round(p * 40)}") for a, p in view["student_probs"]],
        ),
        (
            "Teacher",
            [
                (k, _f(teacher.get(k)))
                for k in ("suggested_action", "diagnosis", "hint", "contrast", "source", "valid")
            ],
        ),
        (
            "Leverage (success rates over rollouts from the state; [95% intervals])",
            [
                (
                    "p_student",
                    f"{_f(lev.get('p_student'))} {_ci(ci.get('student'))} over "
                    f"{_f(lev.get('n_student'))} rollouts of {_f(lev.get('horizon'))} steps",
                ),
                (
                    "p_force (expert action forced, then student)",
                    f"{_f(lev.get('p_force'))} {_ci(ci.get('force'))} over "
                    f"{_f(lev.get('n_force'))} rollouts, same seeds",
                ),
                (
                    "p_expert (expert in control)",
                    f"{_f(lev.get('p_expert'))} over {_f(lev.get('n_expert'))} "
                    "rollout (deterministic)",
                ),
                (
                    "L_local = p_force - p_student",
                    f"{_f(lev.get('L_local'))} {_ci(ci.get('L_local'))} (paired)",
                ),
                (
                    "L_upper = p_expert - p_student",
                    f"{_f(lev.get('L_upper'))} {_ci(ci.get('L_upper'))}",
                ),
                (
                    "leverage side",
                    f"{_f(lev.get('side'))} of L threshold {_f(lev.get('threshold'))} "
                    f"(decision interval {_ci(lev.get('decision_ci'))} at "
                    f"{_f(lev.get('decision_confidence'))})",
                ),
            ],
        ),
        (
            "Contextual Patch Test (base = the student's rollouts)",
            [
                (
                    f"p_{c}",
                    f"{_f(cpt.get(f'p_{c}'))} over {_f(n_cpt)} rollouts"
                    + (
                        f"; minus placebo {_f(net[c].get('diff'))} {_ci(net[c].get('ci'))}"
                        if c in net
                        else ""
                    )
                    + (f"   patch: {view['patches'][c]}" if view["patches"].get(c) else ""),
                )
                for c in CONDITIONS
            ]
            + [
                (
                    "ELP_net (route chosen on even rollouts, scored on odd)",
                    f"{_f(cpt.get('ELP_net'))} {_ci(cpt.get('ELP_net_ci'))} over "
                    f"{_f(cpt.get('n_estimation'))} rollouts",
                ),
                ("route_net", _f(cpt.get("route_net"))),
                (
                    "ELP_net_naive (in-sample best, biased up)",
                    f"{_f(cpt.get('ELP_net_naive'))} ({_f(cpt.get('route_naive'))})",
                ),
            ],
        ),
        (
            "Training that used it",
            [
                ("phase 2 models", ", ".join(train["phase2_models"]) or "(none)"),
                (
                    "phase 1B micro-run",
                    "(not micro-trained)"
                    if not micro
                    else f"gain {_f(micro.get('gain'))} (p_base {_f(micro.get('p_base'))} "
                    f"-> p_trained {_f(micro.get('p_trained'))} over "
                    f"{_f(micro.get('n_validation'))} rollouts, format "
                    f"{_f(micro.get('format'))})",
                ),
                (
                    "phase 5 selection",
                    ", ".join(train["selection_methods"]) or "(not selected / not run)",
                ),
            ]
            + (
                [
                    (
                        "note",
                        "no snapshot_ids recorded in: "
                        + ", ".join(train["phase2_models_without_ids"]),
                    )
                ]
                if train["phase2_models_without_ids"]
                else []
            ),
        ),
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
    parts = [
        f'<section class="snapshot" id="{anchor(view["snapshot_id"])}">',
        f"<h3>Snapshot {esc(view['snapshot_id'])} <small>"
        f"({esc(_f(view['quadrant']))})</small></h3>",
    ]
    for title, rows in _rows(view):
        parts.append(f'<h4>{esc(title)}</h4><table class="kv">')
        parts += [f"<tr><th>{esc(label)}</th><td>{esc(text)}</td></tr>" for label, text in rows]
        parts.append("</table>")
    parts.append(
        '<p class="cli">Terminal: <code>python -m teachable show '
        f"{esc(view['snapshot_id'])}</code></p>"
        "</section>"
    )
    return "\n".join(parts)
