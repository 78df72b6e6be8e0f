"""The learning panel's table: did each trained model's adapters change the student's success on the
snapshots they were trained on? (`teachable.evaluation.panels.learning_specs` runs it.) A model that
does not move its own training snapshots cannot show anything about supervision format or quadrant
elsewhere; one that moves them but nothing held out has memorised.

Units are (training seed, snapshot): the adapter's mean success over the panel's rollouts minus the
base's on the same seeds. Each seed trains its own subsample, so the snapshots differ between seeds
and the unit mean carries both the snapshot and the seed spread; the interval is Student's t over
the units.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import t as t_dist

LEARNING_COLUMNS = [
    "model",
    "kind",
    "train_quadrant",
    "format",
    "n_seeds",
    "n_snapshots",
    "n_rollouts",
    "success_base",
    "success_trained",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
]


def learning_results(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per trained model: its success on its own training snapshots against the base's on
    the same snapshots and seeds, with the delta's 95% interval."""
    panel = rows[rows.panel == "learning"]
    base = panel[panel.model == "base"].groupby("item").success.mean()
    out = []
    for name, part in panel[panel.model != "base"].groupby("model", sort=True):
        units = part.groupby(["seed", "item"]).success.mean().reset_index()
        diff = units.success.to_numpy(float) - base.reindex(units.item).to_numpy(float)
        n = diff.size
        mean = float(diff.mean())
        half = (
            float(t_dist.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        )
        first = part.iloc[0]
        out.append(
            {
                "model": name,
                "kind": first.kind,
                "train_quadrant": first.train_quadrant,
                "format": first.format,
                "n_seeds": int(part.seed.nunique()),
                "n_snapshots": n,
                "n_rollouts": int(part.rollout.nunique()),
                "success_base": round(float(base.reindex(units.item).mean()), 6),
                "success_trained": round(float(units.success.mean()), 6),
                "delta": round(mean, 6),
                "delta_ci_low": round(mean - half, 6),
                "delta_ci_high": round(mean + half, 6),
            }
        )
    return pd.DataFrame(out, columns=LEARNING_COLUMNS)


def learning_summary(table: pd.DataFrame) -> dict:
    """metrics.json's `learning`: how many trained models moved their own training snapshots
    (interval clear of 0, either way), and each model's delta with its interval."""
    if table.empty:
        return {"n_models": 0, "n_moved_up": 0, "n_moved_down": 0, "models": {}}
    bound = lambda x: None if pd.isna(x) else float(x)  # noqa: E731
    return {
        "n_models": len(table),
        "n_moved_up": int((table.delta_ci_low > 0).sum()),
        "n_moved_down": int((table.delta_ci_high < 0).sum()),
        "models": {
            r.model: {
                "delta": r.delta,
                "ci": [bound(r.delta_ci_low), bound(r.delta_ci_high)],
                "n": int(r.n_snapshots),
            }
            for r in table.itertuples()
        },
    }
