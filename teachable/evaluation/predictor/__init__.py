"""Phase 4: predict teachability from cheap observables (no rollouts), and rank snapshots by it."""

from teachable.evaluation.predictor.features import (
    EmbedderError,
    FeatureSpec,
    check_embedder,
    feature_matrix,
    level_of,
    state_text,
)
from teachable.evaluation.predictor.model import Predictor, cross_validate, grouped_folds, targets
from teachable.evaluation.predictor.ranking import ndcg_at_k, precision_at_k, ranking_curves

__all__ = [
    "EmbedderError",
    "FeatureSpec",
    "Predictor",
    "check_embedder",
    "cross_validate",
    "feature_matrix",
    "grouped_folds",
    "level_of",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_curves",
    "state_text",
    "targets",
]
