"""Assemble the report: every figure and table whose inputs exist, the gates (read from the verdicts
their stages wrote), what the run can detect, the first page `index.html` (what the run can detect
and the key figures) and `detail.html` (everything).

A figure or table whose input is missing is listed as "not run" in its section; one whose input is
present but does not have the expected shape is listed with the error (logged), so one bad file
never stops the report.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from teachable.core.params import Params
from teachable.labeling.quadrants import QUADRANTS
from teachable.core.records import write_json
from teachable.report import figures, paper_tables
from teachable.report.gates import compute_gates, gates_metrics
from teachable.report.html import DETAIL_PAGE, FIRST_PAGE, Section, render_first_page, render_page
from teachable.report.loaders import PATHS, Inputs, gate_verdict, load_inputs, snapshot_frame
from teachable.report.snapshot_data import describe
from teachable.report.snapshot_view import to_html
from teachable.core.tracking import git_rev

log = logging.getLogger(__name__)
TOP_PER_QUADRANT = 2
MAX_SNAPSHOTS = 30


@dataclass
class Report:
    figures: list[Path] = field(default_factory=list)  # PNG and PDF
    tables: list[Path] = field(default_factory=list)  # CSV, MD, TEX
    gates: list[dict] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    page: Path | None = None  # the first page, index.html
    detail: Path | None = None  # detail.html


# The first page's figures (by label), each drawn with its intervals; the others are in the detail
# page.
KEY_FIGURES = ("Fig H2.1", "Fig H3.1", "Fig H5.3", "Fig H7.1")


class _Builder:
    def __init__(self, inputs: Inputs, out: Path, report: Report):
        self.inputs, self.out, self.report = inputs, out, report

    def missing(self, needs: tuple[str, ...], any_of: bool = False) -> list[str]:
        """The paths of `needs` that are absent (with `any_of`: all of them, or none when one is
        present)."""
        gone = [PATHS[n] for n in needs if getattr(self.inputs, n) is None]
        return gone if not any_of or len(gone) == len(needs) else []

    def figure(
        self,
        section: Section,
        label: str,
        needs: tuple[str, ...],
        draw: Callable[[Path], list[Path]],
        caption: str,
    ) -> None:
        if gone := self.missing(needs):
            section.not_run.append(f"{label}: {', '.join(gone)} missing")
            return
        try:
            paths = draw(self.out / "figures")
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
            log.warning("%s not drawn: %r", label, err)
            section.not_run.append(f"{label}: inputs present but not usable ({err!r})")
            return
        self.report.figures += paths
        section.figures.append((f"{label}. {caption}", paths[0]))

    def table(
        self,
        section: Section,
        label: str,
        name: str,
        needs: tuple[str, ...],
        build: Callable,
        caption: str,
        any_of: bool = False,
    ):
        if gone := self.missing(needs, any_of):
            section.not_run.append(f"{label}: {', '.join(gone)} missing")
            return
        try:
            frame = build()
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
            log.warning("%s not built: %r", label, err)
            frame = None
        if frame is None:
            section.not_run.append(f"{label}: inputs present but empty or not usable")
            return
        files, frame = paper_tables.write_table(
            frame, self.out / "tables", name, f"{label}. {caption}"
        )
        self.report.tables += files
        section.tables.append((f"{label}. {caption}", frame, files))


def _sections(b: _Builder, params: Params) -> list[Section]:
    i = b.inputs
    frame = snapshot_frame(i.snapshots) if i.snapshots else None
    min_q = params.quadrants.min_per_quadrant
    h1 = Section(
        "h1",
        "H1: Teachability heterogeneity",
        "Snapshots differ in uncertainty U and leverage L_local; "
        "the quadrants split them at the thresholds.",
    )
    b.figure(
        h1,
        "Quadrant distribution",
        ("snapshots",),
        lambda d: figures.quadrant_distribution(frame, min_q, d),
        "Labeled snapshots per quadrant.",
    )
    b.figure(
        h1,
        "Fig H1.1",
        ("snapshots",),
        lambda d: figures.teachability_landscape(frame, i.thresholds, d),
        "U x L_local per snapshot, coloured by ELP_net, with the quadrant thresholds.",
    )
    b.table(
        h1,
        "Tab H1.1",
        "h1_quadrant_characteristics",
        ("snapshots",),
        lambda: paper_tables.quadrant_characteristics(frame),
        "Quadrant characteristics (means per quadrant).",
    )
    h2 = Section(
        "h2",
        "H2: CPT validation",
        "Does the in-context patch test predict what training on the state does?",
    )
    b.figure(
        h2,
        "Fig H2.1",
        ("micro",),
        lambda d: figures.cpt_validation(i.micro, i.cpt, d),
        "CPT ELP_net vs micro-training gain, overall and by quadrant.",
    )
    b.table(
        h2,
        "Tab H2.1",
        "h2_cpt_validity",
        ("cpt",),
        lambda: paper_tables.cpt_validity(i.cpt),
        "Spearman rho of ELP_net vs micro-training gain.",
    )
    h3 = Section(
        "h3", "H3: Supervision x quadrant", "Which supervision format helps most in each quadrant?"
    )
    b.figure(
        h3,
        "Fig H3.1",
        ("per_quadrant",),
        lambda d: figures.supervision_heatmap(i.per_quadrant, d),
        "In-quadrant success delta of each quadrant x format cell (pp).",
    )
    b.table(
        h3,
        "Tab H3.1",
        "h3_best_supervision",
        ("phase3_metrics",),
        lambda: paper_tables.best_supervision(i.phase3_metrics, i.per_quadrant),
        "Best supervision format per quadrant, as the supervision_differentiation "
        "gate decided it: each format's in-quadrant success delta against "
        "demo with its interval and Holm-adjusted p.",
    )
    h4 = Section(
        "h4", "H4: Cross-quadrant transfer", "Does training on one quadrant help the others?"
    )
    b.figure(
        h4,
        "Fig H4.1",
        ("transfer",),
        lambda d: figures.transfer_heatmap(
            i.transfer, gate_verdict(i.phase3_metrics, "transfer_diagonal"), d
        ),
        "Transfer matrix: success delta per training x evaluation quadrant (pp).",
    )
    b.table(
        h4,
        "Tab H4.1",
        "h4_transfer_matrix",
        ("transfer",),
        lambda: paper_tables.transfer_table(i.transfer),
        "Numeric transfer matrix (success delta vs base).",
    )
    h5 = Section(
        "h5", "H5: Reliability and retention", "Gains on held-out tasks against forgetting."
    )
    b.figure(
        h5,
        "Fig H5.3",
        ("overall", "retention"),
        lambda d: figures.reliability_retention(
            i.overall, i.retention, -retention_margin(i, params), d
        ),
        "Reliability vs retention frontier.",
    )
    b.table(
        h5,
        "Tab H5.1",
        "h5_main_results",
        ("overall",),
        lambda: paper_tables.main_results(i.overall, i.retention, i.stuckness),
        "Main results (every model): held-out tasks and training seeds, success with its "
        "95% CI, the delta against the base with its paired interval, Holm-adjusted p "
        "and the minimum detectable delta, retention likewise, and loop rate.",
    )
    b.table(
        h5,
        "Tab H5.2",
        "h5_pass_k",
        ("overall",),
        lambda: paper_tables.pass_k_table(i.pass_k, i.overall),
        paper_tables.pass_k_caption(i.pass_k, i.overall, i.phase3_metrics),
    )
    h6 = Section(
        "h6", "H6: Teachability predictor", "Predicting teachability from cheap observables."
    )
    intervals = _ranking_intervals(i, params.seed)
    b.figure(
        h6,
        "Fig H6.1",
        ("ranking",),
        lambda d: figures.ranking_curves(
            i.ranking, d, intervals, gate_verdict(i.predictor, "beats_entropy")
        ),
        "NDCG@K and precision@K: predictor vs entropy vs random (and the "
        "oracle), with the predictor's and entropy's 95% task-bootstrap intervals "
        "when the out-of-fold predictions are there.",
    )
    b.table(
        h6,
        "Tab H6.1",
        "h6_predictor_metrics",
        ("predictor",),
        lambda: paper_tables.predictor_metrics(i.predictor, params.predictor.targets.model_dump()),
        "Predictor metrics.",
    )
    b.table(
        h6,
        "NDCG@K",
        "h6_ndcg_by_k",
        ("ranking",),
        lambda: paper_tables.ranking_by_k(i.ranking),
        "NDCG@K per ranking method (the source of Fig H6.1's left panel).",
    )
    b.table(
        h6,
        "Tab H6.2",
        "h6_ranking_intervals",
        ("oof", "snapshots"),
        lambda: intervals,
        "NDCG@K and precision@K of the predictor's and entropy's rankings with 95% percentile "
        "intervals over a cluster bootstrap of tasks (1000 draws; the shaded bands of Fig H6.1).",
    )
    h7 = Section("h7", "H7: Selection", "Training on K snapshots chosen by each method.")
    b.figure(
        h7,
        "Fig H7.1",
        ("selection",),
        lambda d: figures.selection_comparison(i.selection, i.selection_results, d),
        "Selection methods compared at the same budget.",
    )
    b.table(
        h7,
        "Tab H7.1",
        "h7_selection_summary",
        ("selection",),
        lambda: paper_tables.selection_summary(i.selection),
        "Selection summary.",
    )
    parsing = Section(
        "parsing",
        "Parsing: parse failures per stage",
        "How often the student's reply could not be turned into a valid action, in each stage that "
        "runs the student, and the action mode it ran in.",
    )
    b.table(
        parsing,
        "Tab P.1",
        "parse_failures",
        ("phase0_metrics", "overall"),
        lambda: paper_tables.parse_failures(
            i.phase0_metrics, i.overall, action_mode(params), i.phase3_metrics
        ),
        paper_tables.PARSE_NOTE,
        any_of=True,
    )
    # none (or a run from before they were kept): Tab P.1 alone
    if (i.phase0_failures or {}).get("examples"):
        b.table(
            parsing,
            "Tab P.2",
            "parse_failure_examples",
            ("phase0_failures",),
            lambda: paper_tables.parse_failure_examples(i.phase0_failures),
            paper_tables.PARSE_EXAMPLES_NOTE,
        )
    return [h1, h2, h3, h4, h5, h6, h7, parsing]


def _ranking_intervals(i: Inputs, seed: int):
    """Fig H6.1's intervals (`paper_tables.ranking_intervals`) at the K of the ranking curves; None
    when an input is missing or not usable (logged)."""
    if not paper_tables.usable(i.ranking, {"k"}):
        return None
    try:
        return paper_tables.ranking_intervals(
            i.oof, i.snapshots, sorted(set(i.ranking.k)), seed=seed
        )
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        log.warning("Fig H6.1's intervals not computed: %r", err)
        return None


def action_mode(params: Params) -> str:
    """The student's action mode in these params (`student.action_mode`, else
    `rollouts.action_mode`)."""
    for section in (params.student, getattr(params, "rollouts", None)):
        if getattr(section, "action_mode", None):
            return str(section.action_mode)
    return "score"


def retention_margin(inputs: Inputs, params: Params) -> float:
    """The non-inferiority margin the phase 3 retention gate used (its verdict's `margin`), else the
    params'."""
    margin = (gate_verdict(inputs.phase3_metrics, "retention") or {}).get("margin")
    return float(margin) if isinstance(margin, (int, float)) else params.gates.retention_margin


HEADLINES = {
    "base_success": "Base model's held-out task success",
    "chosen_model_test_delta": (
        "Chosen model's success gain over the base (test half of the held-out tasks)"
    ),
}


def _interval(ci) -> list:
    return list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else [None, None]


def detectability(inputs: Inputs, gates: list[dict]) -> tuple[list[str], list[dict]]:
    """The "What this run can detect" section: sentences on the evaluation's size, then one row per
    phase 3 headline number and per gate: the estimate with its interval and n, the smallest effect
    detectable at this n (power 0.8), the status, and for an inconclusive gate the n that would
    decide it."""
    m = inputs.phase3_metrics if isinstance(inputs.phase3_metrics, dict) else {}
    notes = []
    if m:
        design = [
            f"{m['n_tasks']} held-out tasks" if m.get("n_tasks") is not None else None,
            f"{m['n_rollouts']} rollout(s) per task" if m.get("n_rollouts") is not None else None,
            f"temperature {m['temperature']}" if m.get("temperature") is not None else None,
            f"{m['n_seeds']} training seed(s) per trained model"
            if m.get("n_seeds") is not None
            else None,
        ]
        design = [d for d in design if d]
        notes.append(
            "Phase 3 evaluates every model on " + ", ".join(design) + "."
            if design
            else f"{PATHS['phase3_metrics']} does not give the evaluation's "
            "size (n_tasks, n_rollouts, temperature, n_seeds): "
            "written by an older version of the evaluate stage."
        )
        mdd = m.get("median_min_detectable_delta")
        if isinstance(mdd, (int, float)):
            notes.append(
                "At that size a model's success delta against the base must be about "
                f"{mdd:.3f} (median over models) to be detected with power 0.8; "
                "smaller true effects will mostly come out as not significant."
            )
    else:
        notes.append(f"{PATHS['phase3_metrics']} is missing: phase 3 has not run.")
    rows = []
    headlines = m.get("headlines") if isinstance(m.get("headlines"), dict) else {}
    for name, h in headlines.items():
        h = h if isinstance(h, dict) else {"value": h}
        rows.append(
            {
                "what": HEADLINES.get(name, name),
                "key": name,
                "kind": "headline",
                "statistic": name,
                "value": h.get("value"),
                "ci": _interval(h.get("ci")),
                "n": h.get("n"),
                "n_unit": h.get("n_unit") if isinstance(h.get("n_unit"), str) else "",
                "min_detectable": h.get("min_detectable"),
                "status": None,
                "n_needed": None,
                "n_needed_unit": "",
                "note": None,
            }
        )
    for g in gates:
        unit = g["detail"].get("n_unit") if isinstance(g["detail"].get("n_unit"), str) else ""
        needed_unit = unit or (
            "per quadrant" if g["detail"].get("n_needed_per_quadrant") is not None else ""
        )
        rows.append(
            {
                "what": g["name"],
                "key": g["id"],
                "kind": "gate",
                "statistic": g["statistic"],
                "value": g["value"],
                "ci": g["ci"],
                "n": g["n"],
                "n_unit": unit,
                "min_detectable": g["min_detectable"],
                "status": g["status"],
                "n_needed": g["n_needed"] if g["status"] == "inconclusive" else None,
                "n_needed_unit": needed_unit,
                "note": g["detail"].get("why"),
            }
        )
    return notes, rows


def chosen_snapshots(inputs: Inputs) -> list[tuple[dict, str]]:
    """(snapshot, why) for the page: the top ELP_net snapshots per quadrant, then the micro-trained
    ones."""
    records = inputs.snapshots or []
    chosen: dict[str, tuple[dict, str]] = {}
    for q in QUADRANTS:
        rows = [r for r in records if r.get("quadrant") == q]
        rows.sort(
            key=lambda r: (
                -((r.get("cpt") or {}).get("ELP_net") or 0),
                -((r.get("leverage") or {}).get("L_local") or 0),
                r["snapshot_id"],
            )
        )
        for r in rows[:TOP_PER_QUADRANT]:
            chosen[r["snapshot_id"]] = (r, f"top ELP_net in {paper_tables.short_quadrant(q)}")
    by_id = {r["snapshot_id"]: r for r in records}
    for m in inputs.micro or []:
        sid = m.get("snapshot_id")
        if sid in by_id and sid not in chosen:
            chosen[sid] = (by_id[sid], "micro-trained")
    return list(chosen.values())[:MAX_SNAPSHOTS]


def _base_success(metrics: dict | None) -> str:
    """ " (base model's held-out success 0.400 [0.310, 0.490], n = 100)", from the headline when
    there is one."""
    metrics = metrics if isinstance(metrics, dict) else {}
    head = (
        (metrics.get("headlines") or {}).get("base_success")
        if isinstance(metrics.get("headlines"), dict)
        else None
    )
    value = head.get("value") if isinstance(head, dict) else metrics.get("base_success")
    if not isinstance(value, (int, float)):
        return ""
    low, high = _interval((head or {}).get("ci"))
    ci = (
        f" [{low:.3f}, {high:.3f}]"
        if isinstance(low, (int, float)) and isinstance(high, (int, float))
        else ""
    )
    n = f", n = {head['n']}" if isinstance(head, dict) and head.get("n") is not None else ""
    return f" (base model's held-out success {value:.3f}{ci}{n})"


def _metadata(inputs: Inputs, params: Params) -> list[tuple[str, str]]:
    card = inputs.student_card or {}
    s = params.student
    student = s.base_model or f"offline student ({s.dir})"
    if card:
        success = card.get("held_out_success")
        success = f"{success:.3f}" if isinstance(success, float) else str(success)
        student += (
            f": {card.get('n_parameters', '?')} parameters, held-out success {success} after "
            f"{card.get('train_steps', '?')} training steps"
        )
    t = params.teacher
    records = inputs.snapshots or []
    per_q = {
        paper_tables.short_quadrant(q): sum(r.get("quadrant") == q for r in records)
        for q in QUADRANTS
    }
    splits = {sp: sum(r.get("split") == sp for r in records) for sp in ("train", "eval")}
    trained = [m for m in (inputs.cells or {}).values() if m.get("trained", True)]
    meta = [
        ("generated (UTC)", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("git revision", git_rev()),
        ("environment", f"{params.env.name}: {', '.join(params.env.levels)}"),
        ("student", student),
        ("teacher", t.name + (f" ({t.model})" if t.name == "openai" else "")),
        (
            "labeled snapshots",
            f"{len(records)} ({', '.join(f'{q} {n}' for q, n in per_q.items())}; "
            f"train {splits['train']}, eval {splits['eval']})"
            if records
            else "not run",
        ),
        (
            "micro-training runs (1B)",
            str(len(inputs.micro)) if inputs.micro is not None else "not run",
        ),
        (
            "trained models (2)",
            f"{len(trained)} of {len(inputs.cells)}" if inputs.cells else "not run",
        ),
        (
            "evaluated models (3)",
            f"{len(inputs.overall)}{_base_success(inputs.phase3_metrics)}"
            if inputs.overall is not None
            else "not run",
        ),
        (
            "predictor (4)",
            f"{inputs.predictor.get('n_snapshots', '?')} snapshots, "
            f"{inputs.predictor.get('embedder', '?')} embedder"
            if inputs.predictor
            else "not run",
        ),
        (
            "selection (5)",
            f"budget {inputs.selection.get('budget')}, methods "
            f"{', '.join(inputs.selection.get('methods', {}))}"
            if inputs.selection
            else "not run",
        ),
    ]
    return meta


def build_report(params: Params, root: str | Path = ".", out: str | Path | None = None) -> Report:
    """Read the pipeline's outputs under `root`, write `figures/`, `tables/`, `gates.json`,
    `index.html` and `detail.html` under `out` (default `root/reports`)."""
    root = Path(root)
    out = Path(out) if out is not None else root / "reports"
    for sub in ("figures", "tables"):
        # this stage owns them: no stale figure survives a rerun
        shutil.rmtree(out / sub, ignore_errors=True)
    inputs = load_inputs(root)
    report = Report()
    report.sections = _sections(_Builder(inputs, out, report), params)
    report.gates = compute_gates(inputs)
    write_json(out / "gates.json", gates_metrics(report.gates))
    snapshots = []
    for record, why in chosen_snapshots(inputs):
        view = describe(
            record["snapshot_id"],
            root,
            record=record,
            cells=inputs.cells or {},
            micro=inputs.micro or [],
            selection=inputs.selection or {},
        )
        row = {
            "snapshot_id": record["snapshot_id"],
            "quadrant": paper_tables.short_quadrant(record.get("quadrant")),
            "U": record.get("U"),
            "L_local": (record.get("leverage") or {}).get("L_local"),
            "ELP_net": (record.get("cpt") or {}).get("ELP_net"),
            "shown because": why,
        }
        snapshots.append((row, to_html(view)))
    meta = _metadata(inputs, params)
    detail = render_page(
        meta,
        yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False),
        report.gates,
        report.sections,
        snapshots,
        inputs.problems,
        out,
    )
    key = [
        (section.key, caption, png)
        for label in KEY_FIGURES
        for section in report.sections
        for caption, png in section.figures
        if caption.startswith(f"{label}.")
    ]
    first = render_first_page(
        meta, report.gates, key, out, detect=detectability(inputs, report.gates)
    )
    report.page, report.detail = out / FIRST_PAGE, out / DETAIL_PAGE
    report.page.write_text(first, encoding="utf-8")
    report.detail.write_text(detail, encoding="utf-8")
    return report
