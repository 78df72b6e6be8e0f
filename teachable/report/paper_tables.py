"""Paper tables: each built as a DataFrame from the loaded inputs, then written as CSV (the source
of truth), Markdown and LaTeX from that same frame. A builder returns None when its inputs are
missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from teachable.gates.core import holm
from teachable.gates.predictor import cluster_weights, tie_groups, weighted_ndcg
from teachable.labeling.estimates import rate
from teachable.labeling.quadrants import QUADRANTS, SHORT_NAMES
from teachable.report.loaders import gate_verdict
from teachable.evaluation.selection import SELECTION_METHODS
from teachable.training.supervision import FORMATS

SHORT = tuple(SHORT_NAMES.values())  # Q1..Q4, in the order of QUADRANTS


def usable(frame: pd.DataFrame | None, columns: set[str]) -> bool:
    """A non-empty frame with all of `columns` (a file of the wrong shape counts as missing)."""
    return frame is not None and not frame.empty and columns <= set(frame.columns)


def short_quadrant(value) -> str:
    return SHORT_NAMES.get(value, value) if isinstance(value, str) else value


def write_table(
    frame: pd.DataFrame, out_dir: Path, name: str, caption: str = ""
) -> tuple[list[Path], pd.DataFrame]:
    """`name`.csv (floats to 6 places), then .md and .tex (3 places) rendered from the CSV as read
    back, so every rendering shows exactly what the CSV holds. Returns the paths and that frame."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md, tex = (out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex"))
    frame.round(6).to_csv(csv, index=False)
    frame = pd.read_csv(csv)
    md.write_text(markdown(frame) + "\n", encoding="utf-8")
    tex.write_text(
        frame.to_latex(
            index=False,
            float_format="%.3f",
            na_rep="--",
            caption=caption or None,
            label=f"tab:{name}",
            escape=True,
        ),
        encoding="utf-8",
    )
    return [csv, md, tex], frame


def markdown(frame: pd.DataFrame) -> str:
    """Markdown with floats to 3 places and empty cells for missing values."""
    return (
        frame.astype(object)
        .where(frame.notna(), None)
        .to_markdown(index=False, floatfmt=".3f", missingval="")
    )


def quadrant_characteristics(snapshots: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tab H1.1: per quadrant the count, share and mean U, L_local, L_upper, p_student, ELP_net, and
    how often each patch was the CPT's best route."""
    if snapshots is None or snapshots.empty:
        return None
    rows = []
    for q in QUADRANTS:
        part = snapshots[snapshots.quadrant == q]
        routes = part.route_net.value_counts()
        rows.append(
            {
                "quadrant": SHORT_NAMES[q],
                "n": len(part),
                "share": len(part) / len(snapshots),
                **{
                    f"mean_{c}": part[c].mean() if len(part) else np.nan
                    for c in ("U", "L_local", "L_upper", "p_student", "ELP_net")
                },
                "elp_positive_share": (part.ELP_net > 0).mean() if len(part) else np.nan,
                **{f"route_{f}": int(routes.get(f, 0)) for f in FORMATS},
            }
        )
    return pd.DataFrame(rows)


def cpt_validity(cpt: dict | None) -> pd.DataFrame | None:
    """Tab H2.1: Spearman rho of ELP_net vs micro-training gain over all micro-runs (the gate:
    permutation p, Fisher interval, reliabilities, disattenuated rho, power) and per quadrant
    (descriptive), with the mean gain."""
    if not cpt:
        return None
    gate = (cpt.get("gates") or {}).get("cpt_validity") or {}
    ci = gate.get("ci") or [None, None]
    rows = [
        {
            "quadrant": "all",
            "n": gate.get("n"),
            "rho": gate.get("value"),
            "p_value": gate.get("p_value"),
            "ci_low": ci[0],
            "ci_high": ci[1],
            "disattenuated_rho": gate.get("disattenuated_rho"),
            "power": gate.get("power"),
            "n_needed": gate.get("n_needed"),
            "mean_gain": None,
            "status": gate.get("status"),
        }
    ]
    for q in QUADRANTS:
        stats = (cpt.get("per_quadrant") or {}).get(q, {})
        rows.append(
            {
                "quadrant": SHORT_NAMES.get(q, q),
                "n": stats.get("n"),
                "rho": stats.get("rho"),
                "mean_gain": stats.get("mean_gain"),
            }
        )
    return pd.DataFrame(rows).astype(
        {"rho": float, "p_value": float, "ci_low": float, "ci_high": float, "mean_gain": float}
    )


def in_quadrant_matrix(
    per_quadrant: pd.DataFrame | None, value: str = "delta"
) -> pd.DataFrame | None:
    """Quadrant x format matrix of `value` for matrix cells evaluated on their own quadrant (rows
    Q1..Q4)."""
    if not usable(per_quadrant, {"kind", "train_quadrant", "eval_quadrant", "format", value}):
        return None
    frame = per_quadrant.assign(
        train_quadrant=per_quadrant.train_quadrant.map(short_quadrant),
        eval_quadrant=per_quadrant.eval_quadrant.map(short_quadrant),
    )
    cells = frame[(frame.kind == "cell") & (frame.train_quadrant == frame.eval_quadrant)]
    if cells.empty:
        return None
    matrix = cells.pivot_table(
        index="train_quadrant", columns="format", values=value, aggfunc="mean"
    )
    return matrix.reindex(index=list(SHORT), columns=list(FORMATS)).astype(float)


def best_supervision(
    phase3_metrics: dict | None, per_quadrant: pd.DataFrame | None = None
) -> pd.DataFrame | None:
    """Tab H3.1: per quadrant, as the phase 3 gate `supervision_differentiation` decided it: each
    non-demo format's in-quadrant success delta against demo with its 95% interval and Holm-adjusted
    p, whether a format beats demo and which one is best (the gate's own choice, never re-derived
    here). `best_delta` is the best format's in-quadrant success delta against the base model (from
    per_quadrant_results.csv, when present)."""
    gate = gate_verdict(phase3_metrics, "supervision_differentiation")
    per_q = (gate or {}).get("per_quadrant")
    if not isinstance(per_q, dict) or not per_q:
        return None
    against_base = in_quadrant_matrix(per_quadrant) if per_quadrant is not None else None
    rows = []
    for q in SHORT:
        entry = next((v for k, v in per_q.items() if short_quadrant(k) == q), None) or {}
        best = entry.get("best_format")
        row = {"quadrant": q, "best_format": best, "differs": entry.get("differs")}
        for fmt in FORMATS[1:]:  # every format against demo
            comp = (entry.get("comparisons") or {}).get(fmt) or {}
            ci = (
                comp.get("ci")
                if isinstance(comp.get("ci"), (list, tuple)) and len(comp.get("ci")) == 2
                else [None, None]
            )
            row.update(
                {
                    f"{fmt}_minus_demo": comp.get("delta"),
                    f"{fmt}_minus_demo_ci_low": ci[0],
                    f"{fmt}_minus_demo_ci_high": ci[1],
                    f"{fmt}_p_holm": comp.get("p_holm"),
                }
            )
        row["best_delta"] = (
            against_base.loc[q].get(best)
            if against_base is not None and best in FORMATS
            else np.nan
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c not in ("quadrant", "best_format", "differs")]
    return frame.astype({c: float for c in numeric})


def transfer_pivot(transfer: pd.DataFrame | None, value: str = "delta") -> pd.DataFrame | None:
    """Train quadrant (rows) x eval quadrant (columns) matrix of `value`."""
    if not usable(transfer, {"train_quadrant", "eval_quadrant", value}):
        return None
    frame = transfer.assign(
        train_quadrant=transfer.train_quadrant.map(short_quadrant),
        eval_quadrant=transfer.eval_quadrant.map(short_quadrant),
    )
    matrix = frame.pivot_table(
        index="train_quadrant", columns="eval_quadrant", values=value, aggfunc="mean"
    )
    return matrix.reindex(index=list(SHORT), columns=list(SHORT)).astype(float)


def transfer_table(transfer: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tab H4.1: the numeric transfer matrix (success delta vs base), one row per training
    quadrant."""
    matrix = transfer_pivot(transfer)
    if matrix is None:
        return None
    table = (
        matrix.rename(columns=lambda c: f"eval_{c}")
        .reset_index()
        .rename(columns={"train_quadrant": "train"})
    )
    diag = [matrix.loc[q, q] for q in SHORT]
    off = [matrix.loc[q].drop(q).mean() for q in SHORT]
    return table.assign(diagonal=diag, off_diagonal_mean=off)


def main_results(
    overall: pd.DataFrame | None, retention: pd.DataFrame | None, stuckness: pd.DataFrame | None
) -> pd.DataFrame | None:
    """Tab H5.1: every evaluated model: held-out tasks and training seeds, held-out task success
    with its 95% CI, its delta against the base with the paired 95% interval, Holm-adjusted p and
    the smallest delta detectable at this n, minus the `self` control (paired, Holm over the
    models), retention and its delta (with the same), and loop rate. Columns the inputs lack are
    left out."""
    if not usable(overall, {"model", "kind", "train_quadrant", "success", "delta"}):
        return None
    cols = [
        "model",
        "kind",
        "train_quadrant",
        "format",
        "n_tasks",
        "n_seeds",
        "success",
        "ci_low",
        "ci_high",
        "delta",
        "delta_ci_low",
        "delta_ci_high",
        "p_holm",
        "min_detectable_delta",
        "vs_self_delta",
        "vs_self_ci_low",
        "vs_self_ci_high",
    ]
    table = overall[[c for c in cols if c in overall]].copy()
    if "vs_self_p" in overall and overall.vs_self_p.notna().any():
        # each model minus the self control: Holm over those comparisons, as p_holm over the base's
        compared = overall.vs_self_p.notna()
        table.loc[compared, "vs_self_p_holm"] = holm(overall.vs_self_p[compared].tolist())
    # no `self` control in this run: its columns are empty
    table = table.drop(
        columns=[c for c in table if c.startswith("vs_self") and table[c].isna().all()]
    )
    if usable(retention, {"model", "success", "delta"}):
        kept = [
            c
            for c in ("model", "success", "delta", "delta_ci_low", "delta_ci_high", "p_holm")
            if c in retention
        ]
        table = table.merge(
            retention[kept].rename(
                columns={
                    "success": "retention",
                    "delta": "retention_delta",
                    "delta_ci_low": "retention_delta_ci_low",
                    "delta_ci_high": "retention_delta_ci_high",
                    "p_holm": "retention_p_holm",
                }
            ),
            on="model",
            how="left",
        )
    if usable(stuckness, {"model", "loop_rate"}):
        table = table.merge(stuckness[["model", "loop_rate"]], on="model", how="left")
    table["train_quadrant"] = table.train_quadrant.map(short_quadrant)
    return table


PREDICTOR_GATES = {"R2(U)": "r2_U", "R2(L_local)": "r2_L", "quadrant accuracy": "accuracy_lift"}


def predictor_metrics(result: dict | None, targets: dict) -> pd.DataFrame | None:
    """Tab H6.1: R2 of U, L_local and ELP_net, quadrant accuracy, and NDCG@K / P@K per ranking
    method. The rows a phase 4 gate decides carry that gate's interval and status as the predictor
    stage wrote them."""
    if not result:
        return None
    reg, quad = result.get("regression") or {}, result.get("quadrant") or {}
    rows = [
        {"metric": "R2(U)", "value": (reg.get("U") or {}).get("r2"), "target": targets.get("r2_U")},
        {
            "metric": "R2(L_local)",
            "value": (reg.get("L_local") or {}).get("r2"),
            "target": targets.get("r2_L"),
        },
        {"metric": "R2(ELP_net)", "value": (reg.get("ELP_net") or {}).get("r2"), "target": None},
        {
            "metric": "quadrant accuracy",
            "value": quad.get("accuracy"),
            "target": targets.get("accuracy"),
        },
        {
            "metric": "majority-class accuracy",
            "value": quad.get("majority_baseline"),
            "target": None,
        },
    ]
    for row in rows:
        verdict = gate_verdict(result, PREDICTOR_GATES.get(row["metric"], ""))
        ci = (verdict or {}).get("ci") or [None, None]
        row.update(ci_low=ci[0], ci_high=ci[1], gate_status=(verdict or {}).get("status"))
    for k, methods in sorted((result.get("ranking") or {}).items(), key=lambda kv: int(kv[0])):
        for method, scores in methods.items():
            for score, label in (("ndcg", "NDCG"), ("precision", "P")):
                if score in scores:
                    rows.append(
                        {"metric": f"{label}@{k} {method}", "value": scores[score], "target": None}
                    )
    columns = ["metric", "value", "ci_low", "ci_high", "target", "gate_status"]
    return pd.DataFrame(rows, columns=columns).astype(
        {"value": float, "ci_low": float, "ci_high": float, "target": float}
    )


def ranking_by_k(ranking: pd.DataFrame | None, metric: str = "ndcg") -> pd.DataFrame | None:
    """NDCG@K (or precision@K) with one column per ranking method, one row per K (the DVC plot's
    source)."""
    if not usable(ranking, {"k", "method", metric}):
        return None
    wide = ranking.pivot_table(index="k", columns="method", values=metric, aggfunc="mean")
    first = ("predictor", "entropy", "random", "oracle")
    order = [m for m in first if m in wide] + sorted(set(wide) - set(first))
    return wide[order].reset_index().rename_axis(columns=None)


# the methods with an interval, and the score each ranks by
RANKED_BY = {"predictor": "ELP_pred", "entropy": "U"}


def weighted_precision(relevant, scores, k: int, weights) -> np.ndarray:
    """Precision@k of ranking by `scores` when item i appears weights[b, i] times, for each row b of
    `weights` (a row of ones gives `precision_at_k`: items tied at the k-th place count pro
    rata)."""
    relevant, scores = np.asarray(relevant, dtype=float), np.asarray(scores, dtype=float)
    weights = np.atleast_2d(np.asarray(weights)).astype(np.int64)
    counts, hits, end = tie_groups(scores, weights, relevant)
    inside = np.clip(np.minimum(end, k) - (end - counts), 0, None)
    share = np.divide(hits, counts, out=np.zeros_like(hits, dtype=float), where=counts > 0)
    return (inside * share).sum(1) / k


def ranking_intervals(
    oof: pd.DataFrame | None,
    snapshots: list[dict] | None,
    ks,
    level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame | None:
    """Fig H6.1's intervals: NDCG@K and precision@K of the predictor's out-of-fold ranking and of
    entropy's, each with its percentile interval at `level` over a cluster bootstrap of tasks (as
    the phase 4 gates resample), from `oof_predictions.csv` joined to the labeled snapshots (true
    ELP_net, U, task). One row per (k, method); None when either input is missing."""
    if not usable(oof, {"snapshot_id", "ELP_pred"}) or not snapshots:
        return None
    by_id = {r["snapshot_id"]: r for r in snapshots}
    rows = [(by_id[s], p) for s, p in zip(oof.snapshot_id, oof.ELP_pred) if s in by_id]
    rows = [
        (r, p)
        for r, p in rows
        if (r.get("cpt") or {}).get("ELP_net") is not None and r.get("U") is not None
    ]
    if len(rows) < 2:
        return None
    elp = np.array([r["cpt"]["ELP_net"] for r, _ in rows], dtype=float)
    scores = {
        "ELP_pred": np.array([p for _, p in rows], dtype=float),
        "U": np.array([r["U"] for r, _ in rows], dtype=float),
    }
    _, task = np.unique([str(r.get("task_id")) for r, _ in rows], return_inverse=True)
    draws = cluster_weights(int(task.max()) + 1, n_resamples, seed)[:, task]
    ones = np.ones((1, len(elp)), dtype=np.int64)
    tail = (1 - level) / 2
    out = []
    for k in sorted({int(k) for k in ks if int(k) <= len(elp)}):
        for method, column in RANKED_BY.items():
            row = {"k": k, "method": method, "n": len(elp)}
            for metric, score in (
                ("ndcg", lambda w: weighted_ndcg(np.maximum(elp, 0), scores[column], k, w)),
                ("precision", lambda w: weighted_precision(elp > 0, scores[column], k, w)),
            ):
                low, high = np.quantile(score(draws), [tail, 1 - tail])
                row.update(
                    {
                        metric: float(score(ones)[0]),
                        f"{metric}_ci_low": float(low),
                        f"{metric}_ci_high": float(high),
                    }
                )
            out.append(row)
    return pd.DataFrame(out) if out else None


def selection_summary(selection: dict | None) -> pd.DataFrame | None:
    """Tab H7.1: per selection method: records trained, success with its 95% CI, delta against the
    base (with its paired interval when the stage wrote one), retention and its delta (likewise),
    the mean true ELP_net of the chosen snapshots, and success per evaluation quadrant."""
    if not selection or not selection.get("methods"):
        return None
    methods = selection["methods"]
    order = [m for m in SELECTION_METHODS if m in methods] + [
        m for m in methods if m not in SELECTION_METHODS
    ]
    rows = []
    for name in order:
        m = methods[name]
        per_q = {
            f"success_{short_quadrant(q)}": v for q, v in (m.get("per_quadrant") or {}).items()
        }
        delta_ci = (
            m.get("delta_ci")
            if isinstance(m.get("delta_ci"), (list, tuple))
            else [m.get("delta_ci_low"), m.get("delta_ci_high")]
        )
        retention_ci = (
            m.get("retention_delta_ci")
            if isinstance(m.get("retention_delta_ci"), (list, tuple))
            else [None, None]
        )
        rows.append(
            {
                "method": name,
                "n_snapshots": len(m.get("snapshot_ids", [])),
                "n_records": m.get("n_records"),
                "success": m.get("success"),
                "ci_low": m.get("ci_low"),
                "ci_high": m.get("ci_high"),
                "delta": m.get("delta"),
                "delta_ci_low": delta_ci[0],
                "delta_ci_high": delta_ci[1],
                "retention": m.get("retention"),
                "retention_delta": m.get("retention_delta"),
                "retention_delta_ci_low": retention_ci[0],
                "retention_delta_ci_high": retention_ci[1],
                "mean_true_elp": m.get("mean_true_elp"),
                **per_q,
            }
        )
    frame = pd.DataFrame(rows)
    absent = [
        c
        for c in (
            "ci_low",
            "ci_high",
            "delta_ci_low",
            "delta_ci_high",
            "retention_delta_ci_low",
            "retention_delta_ci_high",
        )
        if frame[c].isna().all()
    ]
    return frame.drop(columns=absent)


# -- reliability: pass^k ---------------------------------------------------------------------------
PASS_K_NOTE = (
    "pass^k (tau-bench's reliability metric): the chance that k rollouts of a held-out task all "
    "succeed, estimated per task as C(c, k) / C(n, k) from its c successes in n rollouts and "
    "averaged over the tasks (per training seed, then over the seeds), with its 95% interval over "
    "tasks (the training seeds held as they are; Tab H5.1's interval also counts their spread). "
    "pass^1 equals the mean success (Tab H5.1); pass^k never increases with k."
)


def _n_rollouts(
    pass_k: pd.DataFrame | None, overall: pd.DataFrame | None, metrics: dict | None
) -> int | None:
    """Rollouts per task: from pass_k.csv, else the overall table, else phase 3's metrics; None if
    none says."""
    for frame in (pass_k, overall):
        if frame is not None and "n_rollouts" in frame:
            counts = pd.to_numeric(frame.n_rollouts, errors="coerce").dropna()
            if len(counts):
                return int(counts.max())
    value = metrics.get("n_rollouts") if isinstance(metrics, dict) else None
    return int(value) if isinstance(value, (int, float)) else None


def pass_k_table(
    pass_k: pd.DataFrame | None, overall: pd.DataFrame | None = None
) -> pd.DataFrame | None:
    """Tab H5.2: per model pass^1 .. pass^K on the held-out tasks with 95% intervals (from
    pass_k.csv, long: one row per model and k), one row per model, models in the evaluation's order.
    Without pass_k.csv (an evaluate stage from before it was written) pass^1 alone, which is the
    mean success, with its interval from the overall table."""
    if usable(pass_k, {"model", "k", "value"}):
        frame = pass_k.dropna(subset=["k"]).assign(k=lambda f: f.k.astype(int))
        models = list(dict.fromkeys(frame.model))
        first = frame.drop_duplicates("model").set_index("model")
        table = pd.DataFrame({"model": models})
        for column, source in (
            ("kind", "kind"),
            ("n_tasks", "n_items"),
            ("n_rollouts", "n_rollouts"),
            ("n_seeds", "n_seeds"),
        ):
            if source in first:
                table[column] = table.model.map(first[source])
        for k in sorted(frame.k.unique()):
            part = frame[frame.k == k].drop_duplicates("model").set_index("model")
            for column, source in (
                (f"pass^{k}", "value"),
                (f"pass^{k}_ci_low", "ci_low"),
                (f"pass^{k}_ci_high", "ci_high"),
            ):
                if source in part:
                    table[column] = table.model.map(part[source]).astype(float)
        return table
    if not usable(overall, {"model", "success"}):
        return None
    keep = {
        "model": "model",
        "kind": "kind",
        "n_tasks": "n_tasks",
        "n_rollouts": "n_rollouts",
        "n_seeds": "n_seeds",
        "success": "pass^1",
        "ci_low": "pass^1_ci_low",
        "ci_high": "pass^1_ci_high",
    }
    return overall[[c for c in keep if c in overall]].rename(columns=keep)


def pass_k_caption(
    pass_k: pd.DataFrame | None, overall: pd.DataFrame | None, metrics: dict | None = None
) -> str:
    """Tab H5.2's caption: what pass^k is, and what this run's rollouts per task allow."""
    n = _n_rollouts(pass_k, overall, metrics)
    text = PASS_K_NOTE
    if not usable(pass_k, {"model", "k", "value"}):
        text += (
            " reports/phase3/pass_k.csv is missing (an evaluate stage from before it was written): "
            "pass^1 only, the mean success and its interval from overall_task_results.csv."
        )
    if n is not None and n < 2:
        text += (
            f" This run has {n} rollout per task, so only pass^1 exists: pass^k for k > 1 needs "
            "evaluate.n_rollouts >= k."
        )
    elif n is not None:
        ks = pd.to_numeric(pass_k.k, errors="coerce").dropna() if usable(pass_k, {"k"}) else []
        top = int(ks.max()) if len(ks) else 1
        text += f" This run has {n} rollouts per task: pass^1 .. pass^{top}" + (
            f" (k stops at {top})." if n > top else "."
        )
    return text


# -- parse failures per stage ----------------------------------------------------------------------
PARSE_NOTE = (
    "Parse failures per stage: the share of the student's replies that named no valid "
    "action (a wasted step), with its 95% interval (phase 3: Wilson at the effective number "
    "of replies, clustered by episode; phase 0: Wilson on the totals its metrics give). "
    "In generate mode the student writes free text that parse_action maps to a valid action; "
    "in score mode it ranks the valid actions, so a failure can only arise from open-action "
    "sampling (the shop's search queries). The malformed columns count the failed replies with "
    "no action form at all (no tool call, no search[...]/click[...]; every failed plain-text "
    "reply), which is all tau-bench counts as parse failures; the rest were well formed but "
    "named no valid action (a miscopied id, a message not among the listed ones)."
)
PARSE_TABLE_COLUMNS = [
    "stage",
    "model",
    "action_mode",
    "n_replies",
    "parse_failures",
    "parse_failure_rate",
    "ci_low",
    "ci_high",
    "malformed",
    "malformed_rate",
    "malformed_ci_low",
    "malformed_ci_high",
    "note",
]
COUNT_COLUMNS = ("n_replies", "parse_failures", "malformed")


def _phase0_parse_row(phase0: dict | None, mode: str | None) -> dict:
    row = {"stage": "rollouts (phase 0)", "model": "base"}
    if not isinstance(phase0, dict):
        return {**row, "note": "reports/phase0/metrics.json missing: phase 0 not run"}
    value = phase0.get("parse_failure_rate")
    if not isinstance(value, (int, float)):
        return {**row, "note": "reports/phase0/metrics.json has no parse_failure_rate"}
    row.update(
        action_mode=phase0.get("action_mode") or (f"{mode} (params)" if mode else None),
        parse_failure_rate=float(value),
    )
    replies, failures = phase0.get("n_replies"), phase0.get("n_parse_failures")
    if not (isinstance(replies, int) and isinstance(failures, int) and replies > 0):
        return {
            **row,
            "note": (
                "reports/phase0/metrics.json has no reply counts (n_replies, n_parse_failures): "
                "re-run `dvc repro rollouts` for an interval"
            ),
        }
    r = rate(failures, replies)
    row.update(
        n_replies=replies, parse_failures=failures, ci_low=r["ci"][0], ci_high=r["ci"][1], note=None
    )
    malformed = phase0.get("n_malformed")
    if not isinstance(malformed, int):
        return {
            **row,
            "note": (
                "reports/phase0/metrics.json has no n_malformed: "
                "re-run `dvc repro rollouts` to split the failures"
            ),
        }
    m = rate(malformed, replies)
    return {
        **row,
        "malformed": malformed,
        "malformed_rate": m["p"],
        "malformed_ci_low": m["ci"][0],
        "malformed_ci_high": m["ci"][1],
    }


def parse_failures(
    phase0: dict | None,
    overall: pd.DataFrame | None,
    phase0_mode: str | None = None,
    phase3_metrics: dict | None = None,
) -> pd.DataFrame | None:
    """The "Parse failures per stage" table: phase 0's rollouts (the base student;
    `reports/phase0/metrics.json`, its action mode from those metrics or else `phase0_mode`, the
    params') and phase 3's evaluation per model (the overall table's parse-failure columns, on the
    held-out tasks), each with the action mode it ran in, replies, failed replies and the rate with
    its 95% interval. Phase 3's models with no failed reply are one row (`_fold_clean`). A stage not
    run, or run before it recorded the counts, is a row saying so. None when neither input
    exists."""
    if phase0 is None and overall is None:
        return None
    rows = [_phase0_parse_row(phase0, phase0_mode)]
    stage = "evaluate (phase 3)"
    if overall is None:
        rows.append(
            {
                "stage": stage,
                "note": "reports/phase3/overall_task_results.csv missing: phase 3 not run",
            }
        )
    elif (
        not usable(overall, {"model", "parse_failure_rate"})
        or overall.parse_failure_rate.isna().all()
    ):
        rows.append(
            {
                "stage": stage,
                "note": "not recorded (an evaluate stage from before parse failures were counted)",
            }
        )
    else:
        fallback = phase3_metrics.get("action_mode") if isinstance(phase3_metrics, dict) else None
        for r in overall.itertuples():
            mode = getattr(r, "action_mode", None)
            recorded = pd.notna(r.parse_failure_rate)
            rows.append(
                {
                    "stage": stage,
                    "model": r.model,
                    "action_mode": mode if isinstance(mode, str) and mode else fallback,
                    "n_replies": getattr(r, "n_replies", None),
                    "parse_failures": getattr(r, "parse_failures", None),
                    "parse_failure_rate": r.parse_failure_rate,
                    "ci_low": getattr(r, "parse_failure_ci_low", None),
                    "ci_high": getattr(r, "parse_failure_ci_high", None),
                    **{
                        c: getattr(r, c, None)
                        for c in PARSE_TABLE_COLUMNS
                        if c.startswith("malformed")
                    },
                    "note": None if recorded else "not recorded",
                }
            )
    frame = pd.DataFrame(_fold_clean(rows, stage), columns=PARSE_TABLE_COLUMNS)
    frame = frame.astype(
        {
            c: float
            for c in PARSE_TABLE_COLUMNS
            if c not in ("stage", "model", "action_mode", "note")
        }
    )
    counts = {c: int for c in COUNT_COLUMNS if frame[c].notna().all()}  # "2469", not "2469.000"
    return frame.astype(counts)


def _fold_clean(rows: list[dict], stage: str) -> list[dict]:
    """The rows of `stage` with no failed reply (parse failures and malformed both 0) as one row: in
    score mode every model's row is zeros, which said nothing in 17 lines. Its replies are the
    models' total, its upper bound the largest of theirs (each model's own interval is clustered by
    episode; pooling them would need the episodes). Rows with a failure, or without counts, stay as
    they are; a single clean row is not folded."""
    clean = [
        r
        for r in rows
        if r.get("stage") == stage
        and r.get("parse_failures") == 0
        and (r.get("malformed") is None or pd.isna(r.get("malformed")) or r.get("malformed") == 0)
        and isinstance(r.get("n_replies"), (int, float, np.number))
        and pd.notna(r.get("n_replies"))
    ]
    if len(clean) < 2:
        return rows
    models = [str(r["model"]) for r in clean]
    modes = sorted({r["action_mode"] for r in clean if r.get("action_mode")})
    highs = [
        float(r["ci_high"])
        for r in clean
        if isinstance(r.get("ci_high"), (int, float, np.number)) and pd.notna(r.get("ci_high"))
    ]
    folded = {
        "stage": stage,
        "model": f"{len(clean)} models, none failed",
        "action_mode": ", ".join(modes) or None,
        "n_replies": int(sum(r["n_replies"] for r in clean)),
        "parse_failures": 0,
        "parse_failure_rate": 0.0,
        "ci_low": 0.0,
        "ci_high": max(highs) if highs else None,
        **(
            {
                "malformed": 0,
                "malformed_rate": 0.0,
                "malformed_ci_low": 0.0,
                "malformed_ci_high": max(highs) if highs else None,
            }
            if all(r.get("malformed") == 0 for r in clean)
            else {}
        ),
        "note": "no failed reply in any of: "
        + ", ".join(models)
        + " (n_replies: their total; ci_high: the "
        "largest of their upper bounds)",
    }
    first = rows.index(clean[0])
    rest = [r for r in rows if not any(r is c for c in clean)]
    return rest[:first] + [folded] + rest[first:]


PARSE_EXAMPLES_NOTE = (
    "Phase 0's first unparseable replies, verbatim (the student's own words where it named no "
    "valid action; every one is the `reply` of its step in data/rollouts/student.jsonl)."
)
MAX_REPLY_CHARS = 300


def parse_failure_examples(failures: dict | None) -> pd.DataFrame | None:
    """Tab P.2: phase 0's first unparseable replies (`reports/phase0/parse_failures.json`), one row
    each with its episode, step and number of valid actions; a long reply is cut at MAX_REPLY_CHARS.
    None when there were none."""
    examples = (failures or {}).get("examples") or []
    if not examples:
        return None
    frame = pd.DataFrame(examples, columns=["episode_id", "step", "n_valid_actions", "reply"])
    frame["reply"] = [
        r if len(r) <= MAX_REPLY_CHARS else r[:MAX_REPLY_CHARS] + " ..." for r in frame.reply
    ]
    return frame
