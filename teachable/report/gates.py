"""The seeds' decision gates, as the stages that compute them decided them.

Every gate is a pre-specified test (`teachable.gates`): the stage that computes its inputs decides
it once and writes the verdict under its metrics file's top-level `gates` key (statistic, value, 95%
interval, p-value, alpha, status pass | fail | inconclusive | not_applicable, n, and details such as
the threshold, the minimum detectable effect at this n and the n that would decide it). This module
reads those verdicts and copies them: it never re-derives a status from point estimates. A gate
whose file is missing or unreadable, or whose file has no verdict for it (written by an older
version of its stage), is `not_applicable` with the reason in `detail.why`.

Each row: `id`, `phase`, `name`, `condition` (in words), `fail_action` (the seeds' text) and
`source` (the file the verdict is read from) from `SEEDS`; then the verdict's `statistic`, `value`,
`ci`, `p_value`, `alpha`, `threshold`, `status`, `n`, `min_detectable`, `n_needed`, and its other
keys in `detail`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from teachable.gates.core import FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS, STATUSES, plain
from teachable.report.loaders import PATHS, Inputs, gate_verdict

NA = NOT_APPLICABLE
NO_ACTION = "(no fail action given in the seeds)"
# verdict keys that mean the minimum detectable effect / the n that would decide the gate
# (q1_beats_q2 names them after what they measure)
MIN_DETECTABLE_KEYS = ("min_detectable", "min_detectable_difference")
N_NEEDED_KEYS = ("n_needed", "n_needed_per_quadrant")
# shown in their own columns; an alias (min_detectable_difference, n_needed_per_quadrant) stays in
# `detail` too, since its name says what it counts
CORE_KEYS = {
    "statistic",
    "value",
    "ci",
    "p_value",
    "alpha",
    "status",
    "n",
    "threshold",
    "min_detectable",
    "n_needed",
}


@dataclass(frozen=True)
class Seed:
    """A gate as the seeds state it, and where its verdict lives: `gates[key]` of the file
    `PATHS[source]`."""

    id: str
    phase: str
    name: str
    condition: str
    fail_action: str
    source: str  # an `Inputs` field / `PATHS` key
    key: str


SEEDS = (
    Seed(
        "1B.cpt_validity",
        "1B",
        "CPT validity",
        "Spearman rho(ELP_net re-measured, micro-training gain) > 0 within p_base strata, "
        "one-sided permutation test within strata at alpha; fail when the interval "
        "rules out the target rho as the measures' reliabilities let it show",
        "Use L_local as primary signal",
        "cpt",
        "cpt_validity",
    ),
    Seed(
        "1B.q1_beats_q2",
        "1B",
        "Q1 utility above Q2",
        "mean micro-training gain Q1 - Q2 > 0, one-sided permutation test at alpha; "
        "fail when the interval rules out the smallest useful difference (gates.min_effect)",
        "Revise CPT methodology",
        "cpt",
        "q1_beats_q2",
    ),
    Seed(
        "2.quadrant_balance",
        "2",
        "Quadrant balance",
        "smallest quadrant's snapshot count >= quadrants.min_per_quadrant (a count, not a test; "
        "the seeds ask N > 300 at paper scale, shown as paper_status)",
        "May merge Q2+Q3",
        "quadrant_metrics",
        "quadrant_balance",
    ),
    Seed(
        "3.supervision_differentiation",
        "3",
        "Supervision differentiation",
        "a non-demo format beats demo (paired test, Holm-adjusted within "
        "the quadrant) in >= 2 quadrants",
        "Still informative",
        "phase3_metrics",
        "supervision_differentiation",
    ),
    Seed(
        "3.retention",
        "3",
        "Retention",
        "every trained model non-inferior to the base on the retention panel: "
        "the retention delta's interval lies above -margin (the seeds' -3%)",
        "Adjust learning rate",
        "phase3_metrics",
        "retention",
    ),
    Seed(
        "3.transfer_diagonal",
        "3",
        "Transfer diagonal dominates",
        "mean diagonal minus mean off-diagonal success delta of the transfer "
        "matrix > 0, one-sided test at alpha",
        NO_ACTION,
        "phase3_metrics",
        "transfer_diagonal",
    ),
    Seed(
        "3.end_to_end_gain",
        "3",
        "End-to-end gain",
        "the trained model chosen on a validation half of the held-out tasks "
        "beats the base on the other half: one-sided paired test at alpha; "
        "fail when the interval rules out the smallest useful gain (threshold)",
        NO_ACTION,
        "phase3_metrics",
        "end_to_end_gain",
    ),
    Seed(
        "4.r2_U",
        "4",
        "Predictor R2(U)",
        "cross-validated R2 of U above the target (predictor.targets.r2_U)",
        NO_ACTION,
        "predictor",
        "r2_U",
    ),
    Seed(
        "4.r2_L",
        "4",
        "Predictor R2(L_local)",
        "cross-validated R2 of L_local above the target (predictor.targets.r2_L)",
        NO_ACTION,
        "predictor",
        "r2_L",
    ),
    Seed(
        "4.accuracy_lift",
        "4",
        "Predictor quadrant accuracy",
        "the predictor's quadrant accuracy above its reference (threshold), tested at alpha",
        NO_ACTION,
        "predictor",
        "accuracy_lift",
    ),
    Seed(
        "4.beats_entropy",
        "4",
        "Predictor ranking beats entropy",
        "NDCG@K of the predictor's ranking above entropy's, one-sided paired test at alpha",
        NO_ACTION,
        "predictor",
        "beats_entropy",
    ),
    Seed(
        "5.selection_ordering",
        "5",
        "Selection ordering",
        "reliability gain predictor > entropy and entropy > random, paired "
        "one-sided tests at alpha (comparisons)",
        NO_ACTION,
        "selection",
        "selection_ordering",
    ),
    Seed(
        "5.selection_retention",
        "5",
        "Selection retention comparable",
        "every selection method non-inferior to the base on the retention "
        "panel (the phase 3 margin)",
        NO_ACTION,
        "selection",
        "selection_retention",
    ),
)


def _first(verdict: dict, keys: tuple[str, ...]):
    return next((verdict[k] for k in keys if verdict.get(k) is not None), None)


def _interval(ci) -> list:
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return [plain(c) if isinstance(c, (int, float, np.number)) else None for c in ci]
    return [None, None]


def _row(seed: Seed, verdict: dict | None, why: str | None = None) -> dict:
    v = verdict or {}
    detail = {k: plain(x) for k, x in v.items() if k not in CORE_KEYS}
    if why:
        detail["why"] = why
    return {
        "id": seed.id,
        "key": seed.key,
        "phase": seed.phase,
        "name": seed.name,
        "condition": seed.condition,
        "statistic": v.get("statistic"),
        "value": plain(v.get("value")),
        "ci": _interval(v.get("ci")),
        "p_value": plain(v.get("p_value")),
        "alpha": plain(v.get("alpha")),
        "threshold": plain(v.get("threshold")),
        "status": v["status"] if verdict else NA,
        "n": plain(v.get("n")),
        "min_detectable": plain(_first(v, MIN_DETECTABLE_KEYS)),
        "n_needed": plain(_first(v, N_NEEDED_KEYS)),
        "fail_action": seed.fail_action,
        "source": PATHS[seed.source],
        "detail": detail,
    }


def read_gate(seed: Seed, inputs: Inputs) -> dict:
    """The seed's verdict as its stage wrote it (status unchanged), or `not_applicable` with the
    reason."""
    path = PATHS[seed.source]
    document = getattr(inputs, seed.source)
    if document is None:
        problem = next((p for p in inputs.problems if p.startswith(f"{path}:")), f"{path}: missing")
        return _row(
            seed,
            None,
            f"{problem} (its stage has not run)" if problem.endswith("missing") else problem,
        )
    if not isinstance(document, dict) or not isinstance(document.get("gates"), dict):
        return _row(
            seed,
            None,
            f"{path} has no `gates` (written by an older version of its stage: rerun it)",
        )
    verdict = gate_verdict(document, seed.key)
    if verdict is None:
        return _row(seed, None, f"{path} has no verdict gates.{seed.key}")
    if verdict.get("status") not in STATUSES:
        return _row(
            seed,
            None,
            f"gates.{seed.key} in {path} has an unknown status {verdict.get('status')!r}",
        )
    return _row(seed, verdict)


def compute_gates(inputs: Inputs) -> list[dict]:
    """Every seed's gate, read from its verdict file, in the seeds' order."""
    return [read_gate(seed, inputs) for seed in SEEDS]


# The sources whose stage tags its own gates on its MLflow run as `gate.<key>`
# (stages/micro_train.py, stages/predictor.py; tests/test_report.py checks this against the stage
# scripts): the report run does not tag those again, so every gate is one tag under one name.
SELF_TAGGED = frozenset({"cpt", "predictor"})


def tag_name(gate: dict) -> str:
    """A gate's MLflow tag and metric name, `gate.<key>`: the name the stage that decides it
    uses."""
    return f"gate.{gate['key']}"


def mlflow_tags(gates: list[dict]) -> dict[str, str]:
    """The gate status tags the report run sets: every gate whose own stage does not tag it (see
    `SELF_TAGGED`)."""
    sources = {seed.id: seed.source for seed in SEEDS}
    return {tag_name(g): g["status"] for g in gates if sources.get(g["id"]) not in SELF_TAGGED}


def mlflow_metrics(gates: list[dict]) -> dict[str, float]:
    """Pass (1) / fail (0) per decided gate under its tag name; inconclusive and not_applicable are
    neither."""
    return {tag_name(g): float(g["status"] == PASS) for g in gates if g["status"] in (PASS, FAIL)}


GATE_FIELDS = (
    "name",
    "phase",
    "condition",
    "statistic",
    "value",
    "ci",
    "p_value",
    "alpha",
    "threshold",
    "status",
    "n",
    "min_detectable",
    "n_needed",
    "fail_action",
    "source",
    "detail",
)


def gates_metrics(gates: list[dict]) -> dict:
    """The `reports/gates.json` document: per gate its verdict (plus `passed` as 1/0/null so that
    `dvc metrics show` shows a number; inconclusive is null, neither pass nor fail), and the counts
    per status."""
    counts = {s: sum(g["status"] == s for g in gates) for s in (PASS, FAIL, INCONCLUSIVE, NA)}
    return {
        "summary": {
            "n_pass": counts[PASS],
            "n_fail": counts[FAIL],
            "n_inconclusive": counts[INCONCLUSIVE],
            "n_not_applicable": counts[NA],
            "all_applicable_pass": counts[FAIL] == 0 and counts[INCONCLUSIVE] == 0,
        },
        "gates": {
            g["id"]: {
                **{k: g[k] for k in GATE_FIELDS},
                "passed": {PASS: 1, FAIL: 0}.get(g["status"]),
            }
            for g in gates
        },
    }
