"""Phase 3 (and 5) tables and gates: pure functions of the per-episode rows `teachable.evaluation.panels` writes,
so they are unit-testable without a model. Per model the mean over its training seeds with an interval that
includes their spread; against the base the paired delta (`teachable.gates.paired`); the gates as tests
(`teachable.gates.evaluation`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from teachable.core.params import GateParams
from teachable.evaluation.panels import MODEL_COLUMNS
from teachable.gates import evaluation as gates
from teachable.gates.core import holm, min_detectable_difference
from teachable.gates.paired import compare, success_rate

# -- the tables ------------------------------------------------------------------------------------------------------
TABLE_COLUMNS = ["n_seeds", "n_rollouts", "successes", "success", "ci_low", "ci_high", "delta", "delta_ci_low",
                 "delta_ci_high", "p_value", "p_holm", "min_detectable_delta"]
TRAINED_KINDS = ("cell", "baseline", "recovery")


def normalise(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows without `seed` / `rollout` columns (hand-made, or one seed and one rollout) get 0 for both."""
    return rows.assign(**{c: rows[c] if c in rows else 0 for c in ("seed", "rollout")})


def panel_items(rows: pd.DataFrame) -> list[str]:
    """A panel's items in the order the base model ran them (every model ran the same specs)."""
    base = rows[rows.model == "base"]
    return list(dict.fromkeys((base if len(base) else rows).item))


def outcomes(rows: pd.DataFrame, items: list[str]) -> np.ndarray:
    """One model's rows on one panel as an array (training seeds, items, rollouts) of successes, items in the
    given order; an error when the model lacks an episode the items ask for."""
    table = rows.assign(success=rows.success.astype(float)).pivot_table(
        index="item", columns=["seed", "rollout"], values="success", aggfunc="first").reindex(items)
    if table.isna().any().any():
        raise ValueError(f"model {rows.model.iloc[0]!r} lacks episodes on items the base ran")
    n_seeds, n_rollouts = rows.seed.nunique(), rows.rollout.nunique()
    return table.to_numpy().reshape(len(items), n_seeds, n_rollouts).transpose(1, 0, 2)


def _model_table(rows: pd.DataFrame, n_name: str) -> pd.DataFrame:
    """Per model on one panel's rows: success over seeds, items and rollouts with its 95% interval; against the
    base on the same items (`teachable.gates.paired.compare`): the delta, its 95% interval, the two-sided p, Holm's
    adjustment across the models and the minimum detectable delta (two-sided 0.05, power 0.8)."""
    columns = MODEL_COLUMNS + [n_name] + TABLE_COLUMNS
    if rows.empty:  # a panel with nothing in it (e.g. no held-out snapshots): an empty table, not an error
        return pd.DataFrame(columns=columns, dtype=float)
    items = panel_items(rows)
    has_base = bool((rows.model == "base").any())
    base = outcomes(rows[rows.model == "base"], items) if has_base else None
    out = []
    for _, model in rows.drop_duplicates("model")[MODEL_COLUMNS].iterrows():
        a = outcomes(rows[rows.model == model.model], items)
        rate = success_rate(a)
        row = {**model.to_dict(), n_name: len(items), "n_seeds": a.shape[0], "n_rollouts": a.shape[2],
               "successes": int(a.sum()), "success": rate["success"], "ci_low": rate["ci"][0], "ci_high": rate["ci"][1]}
        if has_base and model.model == "base":
            row["delta"] = 0.0
        elif has_base:
            d = compare(a, base)
            row.update(delta=d["delta"], delta_ci_low=d["ci"][0], delta_ci_high=d["ci"][1], p_value=d["p_two_sided"],
                       min_detectable_delta=min_detectable_difference(d["se"], 0.05, two_sided=True))
        out.append(row)
    table = pd.DataFrame(out).reindex(columns=columns)
    trained = (table.model != "base") & table.p_value.notna()
    table.loc[trained, "p_holm"] = holm(table.loc[trained, "p_value"].tolist())
    return table.round(6)


def overall_task_results(rows: pd.DataFrame) -> pd.DataFrame:
    return _model_table(normalise(rows)[rows.panel == "task"], "n_tasks")


def retention_results(rows: pd.DataFrame) -> pd.DataFrame:
    return _model_table(normalise(rows)[rows.panel == "retention"], "n_tasks")


def per_quadrant_results(rows: pd.DataFrame) -> pd.DataFrame:
    snapshots = normalise(rows)[rows.panel == "snapshot"]
    parts = [_model_table(snapshots[snapshots.eval_quadrant == q], "n_snapshots").assign(eval_quadrant=q)
             for q in sorted(set(snapshots.eval_quadrant))]
    columns = MODEL_COLUMNS + ["eval_quadrant", "n_snapshots"] + TABLE_COLUMNS
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns, dtype=float)


def transfer_matrix(per_quadrant: pd.DataFrame) -> pd.DataFrame:
    """Trained-on quadrant x evaluated-on quadrant: mean success (over the formats trained on that quadrant) and
    its change vs the base student on the same held-out snapshots (descriptive; the test is the
    `transfer_diagonal` gate)."""
    cells = per_quadrant[per_quadrant.kind == "cell"]
    base = per_quadrant[per_quadrant.model == "base"].set_index("eval_quadrant").success
    table = cells.groupby(["train_quadrant", "eval_quadrant"], as_index=False).success.mean()
    table["success"] = table.success.round(6)
    table["base_success"] = table.eval_quadrant.map(base)
    table["delta"] = (table.success - table.base_success).round(6) + 0.0  # + 0.0: no "-0.0"
    return table.sort_values(["train_quadrant", "eval_quadrant"]).reset_index(drop=True)


def stuckness_results(rows: pd.DataFrame) -> pd.DataFrame:
    """On the held-out task panel: loop rate (a repeated state hash + action within an episode), mean steps of the
    successful episodes, and the share that ran out of steps (over every seed and rollout)."""
    tasks = rows[rows.panel == "task"]
    return tasks.groupby(MODEL_COLUMNS, sort=False).apply(lambda g: pd.Series({
        "n_episodes": len(g), "loop_rate": round(g.looped.mean(), 6),
        "mean_steps_to_success": round(g[g.success].n_steps.mean(), 3) if g.success.any() else None,
        "max_steps_rate": round(g.hit_max_steps.mean(), 6)}), include_groups=False).reset_index()


def tables(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every phase 3 table (named as its CSV file) from the per-episode rows."""
    per_quadrant = per_quadrant_results(rows)
    return {"overall_task_results": overall_task_results(rows), "per_quadrant_results": per_quadrant,
            "transfer_matrix": transfer_matrix(per_quadrant), "retention_results": retention_results(rows),
            "stuckness_results": stuckness_results(rows)}


# -- the gates -------------------------------------------------------------------------------------------------------
def _arrays(rows: pd.DataFrame, items: list[str], models: list[str]) -> dict[str, np.ndarray]:
    return {m: outcomes(rows[rows.model == m], items) for m in models}


def phase3_gates(rows: pd.DataFrame, g: GateParams, seed: int) -> dict[str, dict]:
    """The four phase 3 gates (`teachable.gates.evaluation`) on the per-episode rows. End-to-end gain: the model
    is chosen on the even-numbered held-out tasks (in panel order) and tested on the odd-numbered ones."""
    rows = normalise(rows)
    trained = rows[rows.kind.isin(TRAINED_KINDS)]
    names = list(dict.fromkeys(trained.model))
    tasks, kept, snaps = (rows[rows.panel == p] for p in ("task", "retention", "snapshot"))
    items = panel_items(tasks)
    halves = [items[0::2], items[1::2]]
    validation, test = (_arrays(tasks, half, names) for half in halves)
    base_val, base_test = (outcomes(tasks[tasks.model == "base"], half) for half in halves)
    retention_items = panel_items(kept)
    snapshot_items = panel_items(snaps)
    quadrant_of = dict(zip(snaps.item, snaps.eval_quadrant))
    cells = trained[trained.kind == "cell"].drop_duplicates("model")
    per_quadrant: dict[str, dict[str, np.ndarray]] = {}
    for _, cell in cells.iterrows():
        own = [i for i in snapshot_items if quadrant_of[i] == cell.train_quadrant]
        per_quadrant.setdefault(cell.train_quadrant, {})[cell.format] = outcomes(snaps[snaps.model == cell.model], own)
    snapshot_cells = {c.model: (c.train_quadrant, outcomes(snaps[snaps.model == c.model], snapshot_items))
                      for _, c in cells.iterrows()} if snapshot_items else {}
    return {
        "end_to_end_gain": gates.end_to_end_gain(validation, base_val, test, base_test, g.alpha, g.min_effect),
        "retention": gates.non_inferiority(_arrays(kept, retention_items, names),
                                           outcomes(kept[kept.model == "base"], retention_items) if len(kept) else
                                           np.zeros((1, 0, 1)), g.alpha, g.retention_margin,
                                           "worst_retention_delta_lower_bound"),
        "supervision_differentiation": gates.supervision_differentiation(per_quadrant, g.alpha, g.min_effect),
        "transfer_diagonal": gates.transfer_diagonal(
            snapshot_cells, outcomes(snaps[snaps.model == "base"], snapshot_items) if snapshot_items else
            np.zeros((1, 0, 1)), [quadrant_of[i] for i in snapshot_items], g.alpha, g.min_effect, g.n_resamples,
            seed),
    }


def _median(table: pd.DataFrame, column: str) -> float | None:
    values = table[column].dropna() if column in table else []
    return round(float(values.median()), 6) if len(values) else None


def _significant(table: pd.DataFrame, sign: int) -> int:
    """Models whose paired delta differs from the base in the direction `sign` after Holm's adjustment."""
    if "p_holm" not in table or not len(table):
        return 0
    return int(((table.p_holm < 0.05) & (np.sign(table.delta) == sign)).sum())


def headline(results: dict[str, pd.DataFrame], verdicts: dict[str, dict]) -> dict:
    """The DVC metrics: the base's success with its interval, the gates' verdicts and their numbers (the chosen
    model's tested gain, the transfer diagonal, the worst retention bound, the best format per quadrant), and what
    this n can detect. No number here is the best of many picked after the fact."""
    overall, retention = results["overall_task_results"], results["retention_results"]
    base = overall[overall.model == "base"].iloc[0]
    trained = overall[overall.model != "base"]
    gain, diagonal = verdicts["end_to_end_gain"], verdicts["transfer_diagonal"]
    differentiation = verdicts["supervision_differentiation"]
    return {
        "base_success": float(base.success), "base_success_ci": [float(base.ci_low), float(base.ci_high)],
        "n_tasks": int(base.n_tasks), "n_rollouts": int(base.n_rollouts),
        "n_seeds": int(trained.n_seeds.max()) if len(trained) else 0, "n_models": int(overall.model.nunique()),
        "chosen_model": gain.get("chosen_model"), "chosen_model_test_delta": gain.get("value"),
        "chosen_model_test_delta_ci": gain.get("ci"),
        "diagonal_mean_delta": diagonal.get("diagonal_mean"), "off_diagonal_mean_delta": diagonal.get("off_diagonal_mean"),
        "worst_retention_lower_bound": verdicts["retention"].get("value"),
        "best_format_per_quadrant": {q: v["best_format"] for q, v in (differentiation.get("per_quadrant") or {}).items()},
        # paired against the base on the same tasks (Holm across the trained models, 0.05): what this n can see
        "median_min_detectable_delta": _median(trained, "min_detectable_delta"),
        "n_models_above_base_holm": _significant(trained, 1),
        "n_models_below_base_holm": _significant(trained, -1),
        "n_models_losing_retention_holm": _significant(retention[retention.model != "base"], -1),
        "headlines": {
            "base_success": {"value": float(base.success), "ci": [float(base.ci_low), float(base.ci_high)],
                             "n": int(base.n_tasks)},
            "chosen_model_test_delta": {"value": gain.get("value"), "ci": gain.get("ci"), "n": gain.get("n"),
                                        "min_detectable": gain.get("min_detectable")},
        },
        "gates": verdicts,
    }


def selection_gates(rows: pd.DataFrame, models: dict[str, str], g: GateParams) -> dict[str, dict]:
    """Phase 5's gates on the selection runs' rows (`models`: method -> model name): the ordering predictor >
    entropy > random on the held-out tasks as paired comparisons, and retention non-inferiority per method."""
    rows = normalise(rows)
    tasks, kept = rows[rows.panel == "task"], rows[rows.panel == "retention"]
    task_items, kept_items = panel_items(tasks), panel_items(kept)
    return {
        "selection_ordering": gates.ordering({m: outcomes(tasks[tasks.model == name], task_items)
                                              for m, name in models.items()},
                                             ["predictor", "entropy", "random"], g.alpha, g.min_effect),
        "selection_retention": gates.non_inferiority(
            {m: outcomes(kept[kept.model == name], kept_items) for m, name in models.items()},
            outcomes(kept[kept.model == "base"], kept_items) if kept_items else np.zeros((1, 0, 1)), g.alpha,
            g.retention_margin, "worst_retention_delta_lower_bound"),
    }
