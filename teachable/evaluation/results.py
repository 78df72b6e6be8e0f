"""Phase 3 (and 5) tables and gates: pure functions of the per-episode rows
`teachable.evaluation.panels` writes, so they are unit-testable without a model. Per model the mean
over its training seeds with an interval that includes their spread; against the base the paired
delta (`teachable.gates.paired`); the gates as tests (`teachable.gates.evaluation`). Also pass^k
(tau-bench's reliability metric) on the held-out tasks and the student's parse-failure rate
(generate mode's unparseable replies)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm

from teachable.core.params import GateParams
from teachable.evaluation.panels import MODEL_COLUMNS
from teachable.gates import evaluation as gates
from teachable.gates.core import holm, min_detectable_difference
from teachable.gates.paired import compare, success_rate

# -- the tables ------------------------------------------------------------------------------------
TABLE_COLUMNS = [
    "n_seeds",
    "n_rollouts",
    "successes",
    "success",
    "ci_low",
    "ci_high",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "p_value",
    "p_holm",
    "min_detectable_delta",
    "vs_self_delta",
    "vs_self_ci_low",
    "vs_self_ci_high",
    "vs_self_p",
]
# the models the gates choose among and test; the `self` control (kind "control") is only compared
TRAINED_KINDS = ("cell", "baseline", "recovery")
CONTROL = "self"
# the overall table's parse-failure columns (task panel; `parse_failure_rates`)
PARSE_COLUMNS = [
    "action_mode",
    "n_replies",
    "parse_failures",
    "parse_failure_rate",
    "parse_failure_ci_low",
    "parse_failure_ci_high",
    "malformed",
    "malformed_rate",
    "malformed_ci_low",
    "malformed_ci_high",
]
PASS_K_MAX = 8  # pass^1 .. pass^min(n_rollouts, 8)
PASS_K_COLUMNS = ["k", "value", "ci_low", "ci_high", "n_items", "n_rollouts", "n_seeds"]


def normalise(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows without `seed` / `rollout` columns (hand-made, or one seed and one rollout) get 0 for
    both."""
    return rows.assign(**{c: rows[c] if c in rows else 0 for c in ("seed", "rollout")})


def panel_items(rows: pd.DataFrame) -> list[str]:
    """A panel's items in the order the base model ran them (every model ran the same specs)."""
    base = rows[rows.model == "base"]
    return list(dict.fromkeys((base if len(base) else rows).item))


def outcomes(rows: pd.DataFrame, items: list[str]) -> np.ndarray:
    """One model's rows on one panel as an array (training seeds, items, rollouts) of successes,
    items in the given order; an error when the model lacks an episode the items ask for."""
    table = (
        rows.assign(success=rows.success.astype(float))
        .pivot_table(index="item", columns=["seed", "rollout"], values="success", aggfunc="first")
        .reindex(items)
    )
    if table.isna().any().any():
        raise ValueError(f"model {rows.model.iloc[0]!r} lacks episodes on items the base ran")
    n_seeds, n_rollouts = rows.seed.nunique(), rows.rollout.nunique()
    return table.to_numpy().reshape(len(items), n_seeds, n_rollouts).transpose(1, 0, 2)


def _model_table(rows: pd.DataFrame, n_name: str) -> pd.DataFrame:
    """Per model on one panel's rows: success over seeds, items and rollouts with its 95% interval;
    against the base on the same items (`teachable.gates.paired.compare`): the delta, its 95%
    interval, the two-sided p, Holm's adjustment across the models and the minimum detectable delta
    (two-sided 0.05, power 0.8); where the `self` control ran, each trained model minus it, paired
    by item (`vs_self_*`: what the model's supervision taught beyond what any update costs)."""
    columns = MODEL_COLUMNS + [n_name] + TABLE_COLUMNS
    # a panel with nothing in it (e.g. no held-out snapshots): an empty table, not an error
    if rows.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    items = panel_items(rows)
    has_base = bool((rows.model == "base").any())
    base = outcomes(rows[rows.model == "base"], items) if has_base else None
    control = (
        outcomes(rows[rows.model == CONTROL], items) if (rows.model == CONTROL).any() else None
    )
    out = []
    for _, model in rows.drop_duplicates("model")[MODEL_COLUMNS].iterrows():
        a = outcomes(rows[rows.model == model.model], items)
        rate = success_rate(a)
        row = {
            **model.to_dict(),
            n_name: len(items),
            "n_seeds": a.shape[0],
            "n_rollouts": a.shape[2],
            "successes": int(a.sum()),
            "success": rate["success"],
            "ci_low": rate["ci"][0],
            "ci_high": rate["ci"][1],
        }
        if has_base and model.model == "base":
            row["delta"] = 0.0
        elif has_base:
            d = compare(a, base)
            row.update(
                delta=d["delta"],
                delta_ci_low=d["ci"][0],
                delta_ci_high=d["ci"][1],
                p_value=d["p_two_sided"],
                min_detectable_delta=min_detectable_difference(d["se"], 0.05, two_sided=True),
            )
        if control is not None and model.model not in ("base", CONTROL):
            v = compare(a, control)
            row.update(
                vs_self_delta=v["delta"],
                vs_self_ci_low=v["ci"][0],
                vs_self_ci_high=v["ci"][1],
                vs_self_p=v["p_two_sided"],
            )
        out.append(row)
    table = pd.DataFrame(out).reindex(columns=columns)
    trained = ~table.model.isin(["base", CONTROL]) & table.p_value.notna()
    table.loc[trained, "p_holm"] = holm(table.loc[trained, "p_value"].tolist())
    return table.round(6)


def overall_task_results(rows: pd.DataFrame) -> pd.DataFrame:
    """`_model_table` on the held-out tasks, plus each model's parse failures there
    (`parse_failure_rates`)."""
    tasks = normalise(rows)[rows.panel == "task"]
    table = _model_table(tasks, "n_tasks")
    if table.empty:
        return table.reindex(columns=[*table.columns, *PARSE_COLUMNS])
    return table.merge(parse_failure_rates(tasks), on="model", how="left")[
        [*table.columns, *PARSE_COLUMNS]
    ]


def retention_results(rows: pd.DataFrame) -> pd.DataFrame:
    return _model_table(normalise(rows)[rows.panel == "retention"], "n_tasks")


def per_quadrant_results(rows: pd.DataFrame) -> pd.DataFrame:
    snapshots = normalise(rows)[rows.panel == "snapshot"]
    parts = [
        _model_table(snapshots[snapshots.eval_quadrant == q], "n_snapshots").assign(eval_quadrant=q)
        for q in sorted(set(snapshots.eval_quadrant))
    ]
    columns = MODEL_COLUMNS + ["eval_quadrant", "n_snapshots"] + TABLE_COLUMNS
    return (
        pd.concat(parts, ignore_index=True)[columns]
        if parts
        else pd.DataFrame(columns=columns, dtype=float)
    )


def transfer_matrix(per_quadrant: pd.DataFrame) -> pd.DataFrame:
    """Trained-on quadrant x evaluated-on quadrant: mean success (over the formats trained on that
    quadrant) and its change vs the base student on the same held-out snapshots (descriptive; the
    test is the `transfer_diagonal` gate)."""
    cells = per_quadrant[per_quadrant.kind == "cell"]
    base = per_quadrant[per_quadrant.model == "base"].set_index("eval_quadrant").success
    table = cells.groupby(["train_quadrant", "eval_quadrant"], as_index=False).success.mean()
    table["success"] = table.success.round(6)
    table["base_success"] = table.eval_quadrant.map(base)
    table["delta"] = (table.success - table.base_success).round(6) + 0.0  # + 0.0: no "-0.0"
    return table.sort_values(["train_quadrant", "eval_quadrant"]).reset_index(drop=True)


def stuckness_results(rows: pd.DataFrame) -> pd.DataFrame:
    """On the held-out task panel: loop rate (a repeated state hash + action within an episode),
    mean steps of the successful episodes, and the share that ran out of steps (over every seed and
    rollout)."""
    tasks = rows[rows.panel == "task"]
    return (
        tasks.groupby(MODEL_COLUMNS, sort=False)
        .apply(
            lambda g: pd.Series(
                {
                    "n_episodes": len(g),
                    "loop_rate": round(g.looped.mean(), 6),
                    "mean_steps_to_success": round(g[g.success].n_steps.mean(), 3)
                    if g.success.any()
                    else None,
                    "max_steps_rate": round(g.hit_max_steps.mean(), 6),
                }
            ),
            include_groups=False,
        )
        .reset_index()
    )


def tables(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every phase 3 table (named as its CSV file) from the per-episode rows."""
    per_quadrant = per_quadrant_results(rows)
    return {
        "overall_task_results": overall_task_results(rows),
        "per_quadrant_results": per_quadrant,
        "transfer_matrix": transfer_matrix(per_quadrant),
        "retention_results": retention_results(rows),
        "stuckness_results": stuckness_results(rows),
        "pass_k": pass_k_results(rows),
    }


# -- intervals for a rate whose units are not independent Bernoulli draws --------------------------
def wilson_interval(p: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion p observed on n units, n not necessarily an integer
    (an effective sample size); with integer successes and n it is
    `teachable.labeling.estimates.wilson`."""
    z = float(norm.ppf(0.5 + confidence / 2))
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n)))
    return max(0.0, centre - half), min(1.0, centre + half)


# -- pass^k ----------------------------------------------------------------------------------------
def pass_hat_k(successes, n: int, k: int) -> np.ndarray:
    """Per item the chance that k of its n rollouts drawn without replacement all succeed, C(c, k) /
    C(n, k) (tau-bench's unbiased estimator of p^k from c successes in n); needs 1 <= k <= n."""
    if not 1 <= k <= n:
        raise ValueError(f"pass^k needs 1 <= k <= n rollouts, got k={k}, n={n}")
    c = np.asarray(successes, dtype=int)
    if c.size and (c.min() < 0 or c.max() > n):
        raise ValueError(f"successes must lie in 0..{n}")
    return np.array([math.comb(j, k) for j in range(n + 1)], dtype=float)[c] / math.comb(n, k)


def pass_k(a: np.ndarray, max_k: int = PASS_K_MAX, confidence: float = 0.95) -> list[dict]:
    """pass^1 .. pass^min(n, max_k) of one model from its outcomes (training seeds, items,
    rollouts), n rollouts per item. For each training seed pass^k = mean over items of C(c, k) /
    C(n, k), c = the item's successes under that seed; a model with several seeds gets the mean over
    its seeds (equivalently the mean over items of each item's seed-averaged value). pass^1 is the
    mean success; pass^k never increases with k.

    The 95% interval is over items (items resampled, the seeds kept as they are): Wilson's interval
    at the effective number of items n_eff = n_items * v(1 - v) / var(item values), the sample size
    at which a Bernoulli mean has the observed variance, so its width at the centre is the item
    bootstrap's z * sd / sqrt(n_items) and it keeps Wilson's behaviour near 0 and 1. n_eff is at
    least n_items (values in [0, 1] vary at most like Bernoulli draws; it is n_items where v is 0 or
    1 and there is no variance to estimate) and at most every episode counted once (seeds x items x
    rollouts). With one seed and one rollout this is Wilson on the tasks."""
    a = np.asarray(a, dtype=float)
    seeds, n_items, n = a.shape
    successes = a.sum(axis=2).round().astype(int)  # (seeds, items)
    out = []
    for k in range(1, min(n, max_k) + 1):
        per_item = pass_hat_k(successes, n, k).mean(axis=0) if n_items else np.zeros(0)
        value = float(per_item.mean()) if n_items else None
        ci = [None, None]
        if n_items:
            spread = float(per_item.var())
            n_eff = float(n_items)
            if 0 < value < 1:
                n_eff = min(
                    max(n_items * value * (1 - value) / spread, n_items)
                    if spread > 0
                    else math.inf,
                    float(seeds * n_items * n),
                )
            ci = list(wilson_interval(value, n_eff, confidence))
        out.append(
            {
                "k": k,
                "value": value,
                "ci": ci,
                "n_items": n_items,
                "n_rollouts": n,
                "n_seeds": seeds,
            }
        )
    return out


def pass_k_results(rows: pd.DataFrame, max_k: int = PASS_K_MAX) -> pd.DataFrame:
    """`pass_k.csv`: per model on the held-out task panel (the items of overall_task_results) pass^k
    for k = 1 .. min(n_rollouts, max_k), long: one row per model and k with its 95% interval over
    items, n items, n rollouts per item and n training seeds (`pass_k`)."""
    columns = MODEL_COLUMNS + PASS_K_COLUMNS
    tasks = normalise(rows)[rows.panel == "task"]
    if tasks.empty:
        return pd.DataFrame(columns=columns, dtype=float)
    items = panel_items(tasks)
    out = []
    for _, model in tasks.drop_duplicates("model")[MODEL_COLUMNS].iterrows():
        for entry in pass_k(outcomes(tasks[tasks.model == model.model], items), max_k):
            out.append(
                {
                    **model.to_dict(),
                    "k": entry["k"],
                    "value": entry["value"],
                    "ci_low": entry["ci"][0],
                    "ci_high": entry["ci"][1],
                    "n_items": entry["n_items"],
                    "n_rollouts": entry["n_rollouts"],
                    "n_seeds": entry["n_seeds"],
                }
            )
    return pd.DataFrame(out, columns=columns).round(6)


# -- parse failures --------------------------------------------------------------------------------
def clustered_rate(failures, replies, confidence: float = 0.95) -> dict:
    """failures / replies pooled over episodes with a 95% interval clustered by episode: Wilson's
    interval at the effective number of replies n / deff, deff (at least 1) the design effect, the
    ratio estimator's variance (sum over episodes of (f_i - R r_i)^2, times m / (m - 1), over n^2)
    against the binomial R (1 - R) / n. Where R is 0 or 1 there is no variance to estimate and deff
    is 1 (plain Wilson on the replies). None without replies."""
    f, r = np.asarray(failures, dtype=float), np.asarray(replies, dtype=float)
    n, k, m = float(r.sum()), float(f.sum()), len(r)
    if n <= 0:
        return {
            "rate": None,
            "ci": [None, None],
            "failures": int(k),
            "replies": 0,
            "n_episodes": m,
            "design_effect": None,
        }
    rate_ = k / n
    deff = 1.0
    if 0 < rate_ < 1 and m > 1:
        clustered = m / (m - 1) * float(((f - rate_ * r) ** 2).sum()) / n**2
        deff = max(1.0, clustered / (rate_ * (1 - rate_) / n))
    low, high = wilson_interval(rate_, n / deff, confidence)
    return {
        "rate": round(rate_, 6),
        "ci": [round(low, 6), round(high, 6)],
        "failures": int(k),
        "replies": int(n),
        "n_episodes": m,
        "design_effect": round(deff, 6),
    }


def _recorded(rows: pd.DataFrame, count: str = "n_parse_failures") -> bool:
    """Whether every row carries its episode's reply count and `count` (rows from before they were
    recorded, or hand-made ones, do not)."""
    return (
        {count, "n_replies"} <= set(rows.columns)
        and bool(len(rows))
        and not pd.to_numeric(rows[count], errors="coerce").isna().any()
        and not pd.to_numeric(rows.n_replies, errors="coerce").isna().any()
    )


def parse_failure_rates(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model over its rows (every seed and rollout): the action mode it ran in, replies, failed
    replies (a generated reply `parse_action` could not map to a valid action) and the failure rate
    with its 95% interval clustered by episode (`clustered_rate`); the same for the malformed ones
    among them (no action form at all, `is_malformed`: tau-bench's parse failures). A model whose
    rows lack a count gets missing values there."""
    out = []
    for name, part in rows.groupby("model", sort=False):
        modes = (
            sorted({str(m) for m in part.action_mode.dropna() if str(m)})
            if "action_mode" in part
            else []
        )
        row = {"model": name, "action_mode": "+".join(modes) if modes else None}
        if _recorded(part):
            r = clustered_rate(pd.to_numeric(part.n_parse_failures), pd.to_numeric(part.n_replies))
            row.update(
                n_replies=r["replies"],
                parse_failures=r["failures"],
                parse_failure_rate=r["rate"],
                parse_failure_ci_low=r["ci"][0],
                parse_failure_ci_high=r["ci"][1],
            )
        if _recorded(part, "n_malformed"):
            r = clustered_rate(pd.to_numeric(part.n_malformed), pd.to_numeric(part.n_replies))
            row.update(
                malformed=r["failures"],
                malformed_rate=r["rate"],
                malformed_ci_low=r["ci"][0],
                malformed_ci_high=r["ci"][1],
            )
        out.append(row)
    return pd.DataFrame(out, columns=["model", *PARSE_COLUMNS])


# -- the gates -------------------------------------------------------------------------------------
def _arrays(rows: pd.DataFrame, items: list[str], models: list[str]) -> dict[str, np.ndarray]:
    return {m: outcomes(rows[rows.model == m], items) for m in models}


def task_level(item: str) -> str:
    """A held-out task's level from its id (`GoToLocal-40000000` -> `GoToLocal`)."""
    return item.rsplit("-", 1)[0]


def stratified_halves(items: list[str]) -> tuple[list[str], list[str]]:
    """The validation and test halves of the held-out tasks, each in panel order: within each level
    the tasks go alternately to validation and test, so every level has an equal share (within one)
    in both halves. A level with an odd count gives its extra task to the half the previous odd
    level did not, keeping the halves' sizes within one. (`make_tasks` alternates levels, so taking
    every other task overall would choose the model on one level and test it on another.)"""
    by_level: dict[str, list[str]] = {}
    for item in items:
        by_level.setdefault(task_level(item), []).append(item)
    half_of, start = {}, 0
    for level_items in by_level.values():
        half_of.update({item: (start + k) % 2 for k, item in enumerate(level_items)})
        start = (start + len(level_items)) % 2
    return [i for i in items if half_of[i] == 0], [i for i in items if half_of[i] == 1]


def _level_counts(halves: tuple[list[str], list[str]]) -> dict[str, list[int]]:
    levels = dict.fromkeys(task_level(i) for half in halves for i in half)
    return {
        level: [sum(task_level(i) == level for i in half) for half in halves] for level in levels
    }


def phase3_gates(rows: pd.DataFrame, g: GateParams, seed: int) -> dict[str, dict]:
    """The four phase 3 gates (`teachable.gates.evaluation`) on the per-episode rows. End-to-end
    gain: the model is chosen on the validation half of the held-out tasks with its training seeds
    [0, S//2) and tested on the test half with its seeds [S//2, S); the halves alternate within each
    level (`stratified_halves`), and the verdict records each level's [validation, test] task
    counts."""
    rows = normalise(rows)
    trained = rows[rows.kind.isin(TRAINED_KINDS)]
    names = list(dict.fromkeys(trained.model))
    tasks, kept, snaps = (rows[rows.panel == p] for p in ("task", "retention", "snapshot"))
    items = panel_items(tasks)
    halves = stratified_halves(items)
    validation, test = (_arrays(tasks, half, names) for half in halves)
    base_val, base_test = (outcomes(tasks[tasks.model == "base"], half) for half in halves)
    retention_items = panel_items(kept)
    snapshot_items = panel_items(snaps)
    quadrant_of = dict(zip(snaps.item, snaps.eval_quadrant))
    cells = trained[trained.kind == "cell"].drop_duplicates("model")
    per_quadrant: dict[str, dict[str, np.ndarray]] = {}
    for _, cell in cells.iterrows():
        own = [i for i in snapshot_items if quadrant_of[i] == cell.train_quadrant]
        per_quadrant.setdefault(cell.train_quadrant, {})[cell.format] = outcomes(
            snaps[snaps.model == cell.model], own
        )
    snapshot_cells = (
        {
            c.model: (c.train_quadrant, outcomes(snaps[snaps.model == c.model], snapshot_items))
            for _, c in cells.iterrows()
        }
        if snapshot_items
        else {}
    )
    return {
        "end_to_end_gain": {
            **gates.end_to_end_gain(validation, base_val, test, base_test, g.alpha, g.min_effect),
            "tasks_per_level": _level_counts(halves),
        },
        "retention": gates.non_inferiority(
            _arrays(kept, retention_items, names),
            outcomes(kept[kept.model == "base"], retention_items)
            if len(kept)
            else np.zeros((1, 0, 1)),
            g.alpha,
            g.retention_margin,
            "worst_retention_delta_lower_bound",
        ),
        "supervision_differentiation": gates.supervision_differentiation(
            per_quadrant, g.alpha, g.min_effect
        ),
        "transfer_diagonal": gates.transfer_diagonal(
            snapshot_cells,
            outcomes(snaps[snaps.model == "base"], snapshot_items)
            if snapshot_items
            else np.zeros((1, 0, 1)),
            [quadrant_of[i] for i in snapshot_items],
            g.alpha,
            g.min_effect,
            g.n_resamples,
            seed,
        ),
    }


def _median(table: pd.DataFrame, column: str) -> float | None:
    values = table[column].dropna() if column in table else []
    return round(float(values.median()), 6) if len(values) else None


def _significant(table: pd.DataFrame, sign: int) -> int:
    """Models whose paired delta differs from the base in the direction `sign` after Holm's
    adjustment."""
    if "p_holm" not in table or not len(table):
        return 0
    return int(((table.p_holm < 0.05) & (np.sign(table.delta) == sign)).sum())


def headline(results: dict[str, pd.DataFrame], verdicts: dict[str, dict]) -> dict:
    """The DVC metrics: the base's success with its interval, the gates' verdicts and their numbers
    (the chosen model's tested gain, the transfer diagonal, the worst retention bound, the best
    format per quadrant), and what this n can detect. No number here is the best of many picked
    after the fact."""
    overall, retention = results["overall_task_results"], results["retention_results"]
    base = overall[overall.model == "base"].iloc[0]
    trained = overall[overall.model != "base"]
    gain, diagonal = verdicts["end_to_end_gain"], verdicts["transfer_diagonal"]
    differentiation = verdicts["supervision_differentiation"]
    return {
        "base_success": float(base.success),
        "base_success_ci": [float(base.ci_low), float(base.ci_high)],
        "n_tasks": int(base.n_tasks),
        "n_rollouts": int(base.n_rollouts),
        "n_seeds": int(trained.n_seeds.max()) if len(trained) else 0,
        "n_models": int(overall.model.nunique()),
        "chosen_model": gain.get("chosen_model"),
        "chosen_model_test_delta": gain.get("value"),
        "chosen_model_test_delta_ci": gain.get("ci"),
        "diagonal_mean_delta": diagonal.get("diagonal_mean"),
        "off_diagonal_mean_delta": diagonal.get("off_diagonal_mean"),
        "worst_retention_lower_bound": verdicts["retention"].get("value"),
        "best_format_per_quadrant": {
            q: v["best_format"] for q, v in (differentiation.get("per_quadrant") or {}).items()
        },
        # paired against the base on the same tasks (Holm across the trained models, 0.05): what
        # this n can see
        "median_min_detectable_delta": _median(trained, "min_detectable_delta"),
        "n_models_above_base_holm": _significant(trained, 1),
        "n_models_below_base_holm": _significant(trained, -1),
        "n_models_losing_retention_holm": _significant(retention[retention.model != "base"], -1),
        "headlines": {
            "base_success": {
                "value": float(base.success),
                "ci": [float(base.ci_low), float(base.ci_high)],
                "n": int(base.n_tasks),
            },
            "chosen_model_test_delta": {
                "value": gain.get("value"),
                "ci": gain.get("ci"),
                "n": gain.get("n"),
                "min_detectable": gain.get("min_detectable"),
            },
        },
        # the `self` control minus the base: what an update that teaches nothing costs (each
        # model minus it: the tables' vs_self columns)
        "self_control_delta": _control_delta(overall),
        "pass_k": pass_k_summary(results.get("pass_k"), ["base", gain.get("chosen_model")]),
        "parse_failures": parse_failure_summary(overall),
        "gates": verdicts,
    }


def _control_delta(overall: pd.DataFrame) -> dict | None:
    control = overall[overall.model == CONTROL]
    if control.empty:
        return None
    row = control.iloc[0]
    return {
        "value": _number(row.delta),
        "ci": [_number(row.delta_ci_low), _number(row.delta_ci_high)],
        "n": int(row.n_tasks),
    }


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 6)


def pass_k_summary(table: pd.DataFrame | None, models: list[str | None]) -> dict:
    """metrics.json's `pass_k`: pass^1 .. pass^K on the held-out tasks, each with its 95% interval
    over tasks, for `models` (the base and the end-to-end gate's chosen model; descriptive, over all
    held-out tasks and seeds, whereas the gate chose that model on the validation half with half its
    seeds and tests it on the rest)."""
    if table is None or table.empty:
        return {
            "panel": "task",
            "max_k": 0,
            "n_rollouts": None,
            "n_items": None,
            "models": {},
            "note": "no held-out task episodes",
        }
    n_rollouts = int(table.n_rollouts.max())
    note = "pass^1 equals the mean success over tasks, rollouts and seeds"
    if n_rollouts < 2:
        note += (
            "; with one rollout per task only pass^1 exists: pass^k needs evaluate.n_rollouts >= k"
        )
    elif n_rollouts > PASS_K_MAX:
        note += f"; k stops at {PASS_K_MAX}"
    per_model = {}
    for m in dict.fromkeys(x for x in models if x):
        part = table[table.model == m].sort_values("k")
        if len(part):
            per_model[m] = {
                f"pass^{int(r.k)}": {
                    "value": _number(r.value),
                    "ci": [_number(r.ci_low), _number(r.ci_high)],
                }
                for r in part.itertuples()
            }
    return {
        "panel": "task",
        "max_k": int(table.k.max()),
        "n_rollouts": n_rollouts,
        "n_items": int(table.n_items.max()),
        "models": per_model,
        "note": note,
    }


def parse_failure_summary(overall: pd.DataFrame) -> dict:
    """metrics.json's `parse_failures`: per model on the held-out tasks the share of the student's
    replies that did not parse to a valid action, with its 95% interval clustered by episode, and
    the action mode it ran in; under `malformed` the same for the replies with no action form
    (tau-bench's parse failures); a model whose episodes did not record the counts is left out."""
    out = {"panel": "task", "action_mode": None, "models": {}}
    if "parse_failure_rate" not in overall:
        return out
    modes = sorted({str(m) for m in overall.action_mode.dropna()})
    out["action_mode"] = "+".join(modes) if modes else None
    for r in overall.itertuples():
        if _number(r.parse_failure_rate) is not None:
            out["models"][r.model] = {
                "rate": _number(r.parse_failure_rate),
                "ci": [_number(r.parse_failure_ci_low), _number(r.parse_failure_ci_high)],
                "failures": int(r.parse_failures),
                "replies": int(r.n_replies),
            }
            if _number(getattr(r, "malformed_rate", None)) is not None:  # absent from older tables
                out["models"][r.model]["malformed"] = {
                    "rate": _number(r.malformed_rate),
                    "count": int(r.malformed),
                    "ci": [_number(r.malformed_ci_low), _number(r.malformed_ci_high)],
                }
    return out


def selection_gates(rows: pd.DataFrame, models: dict[str, str], g: GateParams) -> dict[str, dict]:
    """Phase 5's gates on the selection runs' rows (`models`: method -> model name): the ordering
    predictor > entropy > random on the held-out tasks as paired comparisons, and retention
    non-inferiority per method."""
    rows = normalise(rows)
    tasks, kept = rows[rows.panel == "task"], rows[rows.panel == "retention"]
    task_items, kept_items = panel_items(tasks), panel_items(kept)
    return {
        "selection_ordering": gates.ordering(
            {m: outcomes(tasks[tasks.model == name], task_items) for m, name in models.items()},
            ["predictor", "entropy", "random"],
            g.alpha,
            g.min_effect,
        ),
        "selection_retention": gates.non_inferiority(
            {m: outcomes(kept[kept.model == name], kept_items) for m, name in models.items()},
            outcomes(kept[kept.model == "base"], kept_items) if kept_items else np.zeros((1, 0, 1)),
            g.alpha,
            g.retention_margin,
            "worst_retention_delta_lower_bound",
        ),
    }
