"""From labeled snapshots to phase 4's verdict: cross-validated accuracy of each target, the ranking curves of the
out-of-fold ELP_net predictions, and the pass/fail of each target (`reports/phase4/training_result.json`)."""

from __future__ import annotations

from teachable.config import PredictorParams
from teachable.predictor.features import make_spec
from teachable.predictor.model import CrossValidation, cross_validate
from teachable.predictor.ranking import beats_entropy, ranking_curves


def assess(records: list[dict], params: PredictorParams, seed: int) -> tuple[dict, list[dict], CrossValidation]:
    """(training_result, ranking curve rows, the cross-validation) for `records` (already the training split)."""
    spec = make_spec(records, params.embedder, params.embedding_dim, params.sentence_model)
    cv = cross_validate(records, spec, params.n_folds, seed, kind=params.model, alpha=params.alpha)
    rows = ranking_curves(cv.truth["ELP_net"], cv.predictions["ELP_net"], cv.truth["U"], params.ks, seed)
    targets = params.targets
    passes = {"r2_U": cv.r2["U"] > targets.get("r2_U", 0.6), "r2_L": cv.r2["L_local"] > targets.get("r2_L", 0.5),
              "accuracy": cv.accuracy > targets.get("accuracy", 0.7), "beats_entropy": beats_entropy(rows)}
    ranking = {}
    for row in rows:
        if row["method"] != "oracle":
            ranking.setdefault(str(row["k"]), {})[row["method"]] = {"precision": row["precision"], "ndcg": row["ndcg"]}
    result = {
        "n_snapshots": len(records), "n_folds": cv.n_folds, "embedder": spec.embedder,
        "regression": {"U": {"r2": cv.r2["U"], "threshold": targets.get("r2_U", 0.6), "pass": passes["r2_U"]},
                       "L_local": {"r2": cv.r2["L_local"], "threshold": targets.get("r2_L", 0.5),
                                   "pass": passes["r2_L"]},
                       "ELP_net": {"r2": cv.r2["ELP_net"]}},
        "quadrant": {"accuracy": cv.accuracy, "threshold": targets.get("accuracy", 0.7), "pass": passes["accuracy"],
                     "majority_baseline": cv.majority_baseline},
        "ranking": ranking, "beats_entropy": passes["beats_entropy"], "passes": passes}
    return result, rows, cv
