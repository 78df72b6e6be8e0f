"""From labeled snapshots to phase 4's verdict: cross-validated accuracy of each target, the ranking
curves of the out-of-fold ELP_net predictions, and the four phase 4 gates
(`teachable.gates.predictor`), decided once here and written with the rest to
`reports/phase4/training_result.json` under `gates`:

- `r2_U`, `r2_L`: out-of-fold R2 of U and of L_local against `predictor.targets` (cluster-bootstrap
  interval);
- `accuracy_lift`: out-of-fold quadrant accuracy minus the better of the majority-quadrant and
  U-threshold baselines on the same snapshots (the absolute accuracy and the seeds' target in its
  details);
- `beats_entropy`: NDCG@K of the predictor's ranking minus entropy's at the largest K in
  `predictor.ks` not above the number of snapshots.

Every gate resamples tasks (the cross-validation's groups), at `gates.alpha` with
`gates.n_resamples` draws.
"""

from __future__ import annotations

from teachable.core.params import GateParams, PredictorParams
from teachable.gates.predictor import accuracy_lift, beats_entropy, r2_above_target
from teachable.evaluation.predictor.features import make_spec
from teachable.evaluation.predictor.model import CrossValidation, cross_validate
from teachable.evaluation.predictor.ranking import ranking_curves

GATES = ("r2_U", "r2_L", "accuracy_lift", "beats_entropy")


def predictor_gates(
    cv: CrossValidation,
    groups: list[str],
    params: PredictorParams,
    gate_params: GateParams,
    seed: int,
) -> dict[str, dict]:
    """The four phase 4 verdicts (see the module docstring) from a cross-validation's out-of-fold
    predictions."""
    alpha, draws, targets = gate_params.alpha, gate_params.n_resamples, params.targets
    truth, predicted = cv.truth, cv.predictions
    return {
        "r2_U": r2_above_target(
            truth["U"], predicted["U"], groups, targets.r2_U, alpha, seed, draws
        ),
        "r2_L": r2_above_target(
            truth["L_local"], predicted["L_local"], groups, targets.r2_L, alpha, seed, draws
        ),
        "accuracy_lift": accuracy_lift(
            truth["quadrant"], predicted["quadrant"], groups, alpha, seed, targets.accuracy, draws
        ),
        "beats_entropy": beats_entropy(
            truth["ELP_net"],
            predicted["ELP_net"],
            truth["U"],
            groups,
            params.ks,
            alpha,
            seed,
            draws,
        ),
    }


def assess(
    records: list[dict], params: PredictorParams, seed: int, gate_params: GateParams
) -> tuple[dict, list[dict], CrossValidation]:
    """(training_result, ranking curve rows, the cross-validation) for `records` (already the
    training split)."""
    spec = make_spec(records, params.embedder, params.embedding_dim, params.sentence_model)
    cv = cross_validate(records, spec, params.n_folds, seed, kind=params.model, alpha=params.alpha)
    rows = ranking_curves(
        cv.truth["ELP_net"], cv.predictions["ELP_net"], cv.truth["U"], params.ks, seed
    )
    gates = predictor_gates(cv, [r["task_id"] for r in records], params, gate_params, seed)
    ranking = {}
    for row in rows:
        if row["method"] != "oracle":
            ranking.setdefault(str(row["k"]), {})[row["method"]] = {
                "precision": row["precision"],
                "ndcg": row["ndcg"],
            }
    result = {
        "n_snapshots": len(records),
        "n_folds": cv.n_folds,
        "embedder": spec.embedder,
        "regression": {
            "U": {"r2": cv.r2["U"]},
            "L_local": {"r2": cv.r2["L_local"]},
            "ELP_net": {"r2": cv.r2["ELP_net"]},
        },
        "quadrant": {
            "accuracy": cv.accuracy,
            "majority_baseline": cv.majority_baseline,
            "U_threshold_baseline": gates["accuracy_lift"].get("baseline_U_threshold"),
        },
        "ranking": ranking,
        "gates": gates,
    }
    return result, rows, cv
