"""The seeds' decision gates, evaluated on the pipeline's outputs.

Each gate: `id`, `phase`, `name`, `condition` (in words), `value`, `threshold`, `status` (pass | fail |
not_applicable), `fail_action` (the seeds' text), `source` (the file it reads) and `detail`. A gate whose input is
missing, or whose value is undefined (e.g. rho on too few points), is `not_applicable`, never an error.

Choices where the seeds leave room (documented in the README's Report section):
- The phase 1B gates (CPT validity, Q1 > Q2) are tests decided by the micro_train stage (`teachable.gates`); this
  module shows their verdicts (pass, fail, inconclusive) as they are.
- Quadrant balance is judged against `quadrants.min_per_quadrant` (the pilot's threshold); the seeds' paper-scale
  N > 300 is recorded beside it (`paper_threshold`, `paper_status`) without deciding the status.
- Supervision differentiation counts a quadrant only when a non-demo format beats demo strictly.
- Retention: the lowest retention delta over all trained models must exceed -0.03 (the seeds' -3%).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from teachable.labeling.quadrants import QUADRANTS
from teachable.report import tables
from teachable.report.loaders import PATHS, Inputs

log = logging.getLogger(__name__)
PASS, FAIL, NA, INCONCLUSIVE = "pass", "fail", "not_applicable", "inconclusive"
PAPER_MIN_PER_QUADRANT = 300
RETENTION_FLOOR = -0.03
NO_ACTION = "(no fail action given in the seeds)"


def _gate(gid, phase, name, condition, fail_action, source, value=None, threshold=None, ok=None, **detail):
    bad = value is None or (isinstance(value, float) and math.isnan(value))
    status = NA if ok is None or bad else (PASS if ok else FAIL)
    return {"id": gid, "phase": phase, "name": name, "condition": condition, "value": _num(value),
            "threshold": _num(threshold), "status": status, "fail_action": fail_action, "source": source,
            "detail": {k: _num(v) for k, v in detail.items()}}


def _num(value):
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _from_verdict(gid, phase, name, condition, fail_action, source, verdict: dict | None) -> dict:
    """A gate the stage that computes it already decided (`teachable.gates`): its verdict, shown as is."""
    if not verdict:
        return _gate(gid, phase, name, condition, fail_action, source)
    detail = {k: v for k, v in verdict.items() if k not in ("value", "status", "statistic")}
    return {"id": gid, "phase": phase, "name": name, "condition": condition, "value": _num(verdict.get("value")),
            "threshold": _num(verdict.get("alpha")), "status": verdict["status"], "fail_action": fail_action,
            "source": source, "detail": {k: _num(v) for k, v in detail.items()}}


def cpt_gates(inputs: Inputs) -> list[dict]:
    src = PATHS["cpt"]
    verdicts = (inputs.cpt or {}).get("gates") or {}
    return [
        _from_verdict("1B.cpt_validity", "1B", "CPT validity",
                      "Spearman rho(ELP_net, micro-training gain) > 0, one-sided permutation test at alpha; fail when "
                      "the interval rules out the target rho as the measures' reliabilities let it show",
                      "Use L_local as primary signal", src, verdicts.get("cpt_validity")),
        _from_verdict("1B.q1_beats_q2", "1B", "Q1 utility above Q2",
                      "mean micro-training gain Q1 - Q2 > 0, one-sided permutation test at alpha",
                      "Revise CPT methodology", src, verdicts.get("q1_beats_q2")),
    ]


def balance_gate(inputs: Inputs, min_per_quadrant: int) -> dict:
    src = PATHS["snapshots"]
    if not inputs.snapshots:
        return _gate("2.quadrant_balance", "2", "Quadrant balance", f"N >= {min_per_quadrant} in every quadrant",
                     "May merge Q2+Q3", src)
    counts = {tables.short_quadrant(q): sum(r.get("quadrant") == q for r in inputs.snapshots) for q in QUADRANTS}
    low = min(counts.values())
    return _gate("2.quadrant_balance", "2", "Quadrant balance",
                 f"N >= {min_per_quadrant} snapshots in every quadrant (quadrants.min_per_quadrant; "
                 f"the seeds ask N > {PAPER_MIN_PER_QUADRANT} at paper scale)",
                 "May merge Q2+Q3", src, low, min_per_quadrant, low >= min_per_quadrant, counts=counts,
                 paper_threshold=PAPER_MIN_PER_QUADRANT,
                 paper_status=PASS if low > PAPER_MIN_PER_QUADRANT else FAIL)


def phase3_gates(inputs: Inputs) -> list[dict]:
    best = tables.best_supervision(inputs.per_quadrant)
    if best is None:
        diff = _gate("3.supervision_differentiation", "3", "Supervision differentiation",
                     "best format != demo in >= 2 quadrants", "Still informative", PATHS["per_quadrant"])
    else:
        known = best.dropna(subset=["best_format"])
        non_demo = int((known.best_format != "demo").sum())
        diff = _gate("3.supervision_differentiation", "3", "Supervision differentiation",
                     "best format != demo in >= 2 quadrants (in-quadrant success delta; ties go to demo)",
                     "Still informative", PATHS["per_quadrant"], non_demo if len(known) else None, 2,
                     non_demo >= 2, best_format=dict(zip(known.quadrant, known.best_format)))
    ret = inputs.retention
    src = PATHS["retention"]
    if not tables.usable(ret, {"model", "kind", "delta"}):
        retention = _gate("3.retention", "3", "Retention", "retention delta > -3% for every trained model",
                          "Adjust learning rate", src)
    else:
        trained = ret[ret.kind != "base"].dropna(subset=["delta"])
        worst = trained.loc[trained.delta.idxmin()] if len(trained) else None
        retention = _gate("3.retention", "3", "Retention", "retention delta > -3% for every trained model",
                          "Adjust learning rate", src, None if worst is None else float(worst.delta),
                          RETENTION_FLOOR, None if worst is None else bool(worst.delta > RETENTION_FLOOR),
                          worst_model=None if worst is None else worst.model,
                          n_below=int((trained.delta <= RETENTION_FLOOR).sum()))
    stats = tables.diagonal_stats(inputs.transfer)
    diagonal = _gate("3.transfer_diagonal", "3", "Transfer diagonal dominates",
                     "mean diagonal delta > mean off-diagonal delta (transfer matrix)", NO_ACTION,
                     PATHS["transfer"], *((stats["diagonal_mean"], stats["off_diagonal_mean"],
                                           stats["diagonal_mean"] > stats["off_diagonal_mean"]) if stats else ()))
    overall = inputs.overall
    if not tables.usable(overall, {"model", "kind", "delta"}):
        gain = _gate("3.end_to_end_gain", "3", "End-to-end gain", "best trained model's task success > base",
                     NO_ACTION, PATHS["overall"])
    else:
        trained = overall[overall.kind != "base"].dropna(subset=["delta"])
        top = trained.loc[trained.delta.idxmax()] if len(trained) else None
        gain = _gate("3.end_to_end_gain", "3", "End-to-end gain", "best trained model's task success > base",
                     NO_ACTION, PATHS["overall"], None if top is None else float(top.delta), 0.0,
                     None if top is None else bool(top.delta > 0), best_model=None if top is None else top.model)
    return [diff, retention, diagonal, gain]


def _mean_ndcg(result: dict, method: str) -> float | None:
    values = [m[method]["ndcg"] for m in (result.get("ranking") or {}).values() if method in m and "ndcg" in m[method]]
    return float(np.mean(values)) if values else None


def predictor_gates(inputs: Inputs, targets: dict) -> list[dict]:
    src = PATHS["predictor"]
    result = inputs.predictor or {}
    reg, quad = result.get("regression") or {}, result.get("quadrant") or {}
    out = []
    for gid, name, value, key in (("4.r2_U", "Predictor R2(U)", (reg.get("U") or {}).get("r2"), "r2_U"),
                                  ("4.r2_L", "Predictor R2(L_local)", (reg.get("L_local") or {}).get("r2"), "r2_L"),
                                  ("4.accuracy", "Predictor quadrant accuracy", quad.get("accuracy"), "accuracy")):
        threshold = targets.get(key)
        out.append(_gate(gid, "4", name, f"> {threshold}", NO_ACTION, src, value, threshold,
                         None if value is None or threshold is None else value > threshold))
    pred, ent = _mean_ndcg(result, "predictor"), _mean_ndcg(result, "entropy")
    flag = result.get("beats_entropy")
    ok = flag if isinstance(flag, bool) else (None if pred is None or ent is None else pred > ent)
    out.append(_gate("4.beats_entropy", "4", "Predictor ranking beats entropy",
                     "NDCG@K of the predictor's ranking above entropy's (the predictor stage's beats_entropy; "
                     "value/threshold: mean NDCG over K)", NO_ACTION, src,
                     pred if pred is not None else (None if flag is None else float(flag)), ent, ok))
    return out


def selection_gates(inputs: Inputs) -> list[dict]:
    src = PATHS["selection"]
    methods = (inputs.selection or {}).get("methods") or {}
    deltas = {m: methods[m].get("delta") for m in ("predictor", "entropy", "random") if m in methods}
    if len(deltas) < 3 or any(v is None for v in deltas.values()):
        ordering = _gate("5.selection_ordering", "5", "Selection ordering",
                         "reliability gain: predictor > entropy > random", NO_ACTION, src)
    else:
        ok = deltas["predictor"] > deltas["entropy"] > deltas["random"]
        ordering = _gate("5.selection_ordering", "5", "Selection ordering",
                         "reliability gain: predictor > entropy > random (value: predictor delta; threshold: "
                         "entropy delta)", NO_ACTION, src, deltas["predictor"], deltas["entropy"], ok, **{
                             f"delta_{m}": v for m, v in deltas.items()})
    kept = {m: v.get("retention_delta") for m, v in methods.items() if v.get("retention_delta") is not None}
    worst = min(kept, key=kept.get) if kept else None
    retention = _gate("5.selection_retention", "5", "Selection retention comparable",
                      "no selection method's retention delta <= -3% (the phase 3 retention floor)", NO_ACTION, src,
                      kept.get(worst), RETENTION_FLOOR, None if worst is None else kept[worst] > RETENTION_FLOOR,
                      worst_method=worst)
    return [ordering, retention]


def compute_gates(inputs: Inputs, min_per_quadrant: int, predictor_targets: dict) -> list[dict]:
    groups = [("1B", lambda: cpt_gates(inputs)), ("2", lambda: [balance_gate(inputs, min_per_quadrant)]),
              ("3", lambda: phase3_gates(inputs)), ("4", lambda: predictor_gates(inputs, predictor_targets)),
              ("5", lambda: selection_gates(inputs))]
    out = []
    for phase, evaluate in groups:
        try:
            out += evaluate()
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as err:  # an input of the wrong shape
            log.warning("phase %s gates not evaluated: %r", phase, err)
            out.append(_gate(f"{phase}.inputs", phase, f"Phase {phase} gates", "inputs readable", NO_ACTION,
                             "(see the report's inputs)", error=repr(err)))
    return out


def gates_metrics(gates: list[dict]) -> dict:
    """The `reports/gates.json` document: per gate its numbers and status (plus `passed` as 1/0/null so that
    `dvc metrics show` shows a number), and the counts per status."""
    counts = {s: sum(g["status"] == s for g in gates) for s in (PASS, FAIL, INCONCLUSIVE, NA)}
    return {"summary": {"n_pass": counts[PASS], "n_fail": counts[FAIL], "n_inconclusive": counts[INCONCLUSIVE],
                        "n_not_applicable": counts[NA],
                        "all_applicable_pass": counts[FAIL] == 0},
            "gates": {g["id"]: {**{k: g[k] for k in ("name", "phase", "condition", "value", "threshold", "status",
                                                     "fail_action", "source", "detail")},
                                "passed": {PASS: 1, FAIL: 0}.get(g["status"])} for g in gates}}
