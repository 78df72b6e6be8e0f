"""Ranking snapshots by predicted teachability: Precision@K and NDCG@K against the true ELP_net.

Relevance is the CPT's net effect of the best patch, `ELP_net`:
- Precision@K counts a snapshot as relevant when `ELP_net > 0` (some patch beat the placebo there);
- NDCG@K uses the graded gain `max(ELP_net, 0)`, so a snapshot that a patch makes worse is as
  useless as one it leaves unchanged (NDCG needs non-negative gains), and larger gains count more.

Ties in a ranking's scores (the entropy ranking has some) are averaged over every order of the tied
items, for both metrics: `sklearn.metrics.ndcg_score` does so for NDCG (`ignore_ties=False`) and
`precision_at_k` takes the expected precision of a random tie-break. The methods compared, for each
K in `ks` no larger than n: `predictor` (predicted ELP_net), `entropy` (top-K U, the uncertainty
baseline), `random` (the mean over `n_random` seeded permutations) and `oracle` (the true ELP_net:
the ceiling).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import ndcg_score

METHODS = ("predictor", "entropy", "random", "oracle")


def precision_at_k(relevant: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of relevant items among the K highest scores; items tied at the K-th score count pro
    rata."""
    relevant, scores = np.asarray(relevant, dtype=float), np.asarray(scores, dtype=float)
    kth = np.sort(scores)[::-1][k - 1]
    above, tied = scores > kth, scores == kth
    expected = relevant[above].sum() + (k - above.sum()) * relevant[tied].mean()
    return float(expected / k)


def ndcg_at_k(gains: np.ndarray, scores: np.ndarray, k: int) -> float:
    """NDCG@K of `scores` for non-negative graded `gains` (0 when every gain is 0)."""
    return float(
        ndcg_score(np.asarray(gains, dtype=float)[None], np.asarray(scores, dtype=float)[None], k=k)
    )


def ranking_curves(
    elp: np.ndarray,
    predicted: np.ndarray,
    uncertainty: np.ndarray,
    ks: list[int],
    seed: int,
    n_random: int = 200,
) -> list[dict]:
    """Rows {k, method, precision, ndcg} for every method and every K <= n (larger K are
    skipped)."""
    elp = np.asarray(elp, dtype=float)
    relevant, gains = (elp > 0).astype(float), np.maximum(elp, 0.0)
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(len(elp)).astype(float) for _ in range(n_random)]
    scores = {
        "predictor": [np.asarray(predicted, dtype=float)],
        "entropy": [np.asarray(uncertainty, dtype=float)],
        "random": permutations,
        "oracle": [elp],
    }
    rows = []
    for k in sorted(set(ks)):
        if k > len(elp):
            continue
        for method in METHODS:
            rows.append(
                {
                    "k": k,
                    "method": method,
                    "precision": float(
                        np.mean([precision_at_k(relevant, s, k) for s in scores[method]])
                    ),
                    "ndcg": float(np.mean([ndcg_at_k(gains, s, k) for s in scores[method]])),
                }
            )
    return rows
