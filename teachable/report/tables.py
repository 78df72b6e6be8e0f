"""Paper tables: each built as a DataFrame from the loaded inputs, then written as CSV (the source of truth),
Markdown and LaTeX from that same frame. A builder returns None when its inputs are missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from teachable.labeling.quadrants import QUADRANTS

QUADRANT_SHORT = {q: q.split("_")[0] for q in QUADRANTS}  # Q1_highU_highL -> Q1
SHORT = ("Q1", "Q2", "Q3", "Q4")
FORMATS = ("demo", "hint", "contrast")
SELECTION_METHODS = ("random", "entropy", "predictor", "oracle")


def usable(frame: pd.DataFrame | None, columns: set[str]) -> bool:
    """A non-empty frame with all of `columns` (a file of the wrong shape counts as missing)."""
    return frame is not None and not frame.empty and columns <= set(frame.columns)


def short_quadrant(value) -> str:
    return QUADRANT_SHORT.get(value, value) if isinstance(value, str) else value


def write_table(frame: pd.DataFrame, out_dir: Path, name: str, caption: str = "") -> tuple[list[Path], pd.DataFrame]:
    """`name`.csv (floats to 6 places), then .md and .tex (3 places) rendered from the CSV as read back, so every
    rendering shows exactly what the CSV holds. Returns the paths and that frame."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md, tex = (out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex"))
    frame.round(6).to_csv(csv, index=False)
    frame = pd.read_csv(csv)
    md.write_text(markdown(frame) + "\n", encoding="utf-8")
    tex.write_text(frame.to_latex(index=False, float_format="%.3f", na_rep="--", caption=caption or None,
                                  label=f"tab:{name}", escape=True), encoding="utf-8")
    return [csv, md, tex], frame


def markdown(frame: pd.DataFrame) -> str:
    """Markdown with floats to 3 places and empty cells for missing values."""
    return frame.astype(object).where(frame.notna(), None).to_markdown(index=False, floatfmt=".3f", missingval="")


def quadrant_characteristics(snapshots: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tab H1.1: per quadrant the count, share and mean U, L_local, L_upper, p_student, ELP_net, and how often each
    patch was the CPT's best route."""
    if snapshots is None or snapshots.empty:
        return None
    rows = []
    for q in QUADRANTS:
        part = snapshots[snapshots.quadrant == q]
        routes = part.route_net.value_counts()
        rows.append({"quadrant": QUADRANT_SHORT[q], "n": len(part), "share": len(part) / len(snapshots),
                     **{f"mean_{c}": part[c].mean() if len(part) else np.nan
                        for c in ("U", "L_local", "L_upper", "p_student", "ELP_net")},
                     "elp_positive_share": (part.ELP_net > 0).mean() if len(part) else np.nan,
                     **{f"route_{f}": int(routes.get(f, 0)) for f in FORMATS}})
    return pd.DataFrame(rows)


def cpt_validity(cpt: dict | None) -> pd.DataFrame | None:
    """Tab H2.1: Spearman rho of ELP_net vs micro-training gain over all micro-runs (the gate: permutation p, Fisher
    interval, reliabilities, disattenuated rho, power) and per quadrant (descriptive), with the mean gain."""
    if not cpt:
        return None
    gate = (cpt.get("gates") or {}).get("cpt_validity") or {}
    ci = gate.get("ci") or [None, None]
    rows = [{"quadrant": "all", "n": gate.get("n"), "rho": gate.get("value"), "p_value": gate.get("p_value"),
             "ci_low": ci[0], "ci_high": ci[1], "disattenuated_rho": gate.get("disattenuated_rho"),
             "power": gate.get("power"), "n_needed": gate.get("n_needed"), "mean_gain": None,
             "status": gate.get("status")}]
    for q in QUADRANTS:
        stats = (cpt.get("per_quadrant") or {}).get(q, {})
        rows.append({"quadrant": QUADRANT_SHORT.get(q, q), "n": stats.get("n"), "rho": stats.get("rho"),
                     "mean_gain": stats.get("mean_gain")})
    return pd.DataFrame(rows).astype({"rho": float, "p_value": float, "ci_low": float, "ci_high": float,
                                      "mean_gain": float})


def in_quadrant_matrix(per_quadrant: pd.DataFrame | None, value: str = "delta") -> pd.DataFrame | None:
    """Quadrant x format matrix of `value` for matrix cells evaluated on their own quadrant (rows Q1..Q4)."""
    if not usable(per_quadrant, {"kind", "train_quadrant", "eval_quadrant", "format", value}):
        return None
    frame = per_quadrant.assign(train_quadrant=per_quadrant.train_quadrant.map(short_quadrant),
                                eval_quadrant=per_quadrant.eval_quadrant.map(short_quadrant))
    cells = frame[(frame.kind == "cell") & (frame.train_quadrant == frame.eval_quadrant)]
    if cells.empty:
        return None
    matrix = cells.pivot_table(index="train_quadrant", columns="format", values=value, aggfunc="mean")
    return matrix.reindex(index=list(SHORT), columns=list(FORMATS)).astype(float)


def best_supervision(per_quadrant: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tab H3.1: per quadrant the in-quadrant success delta of each format and the best one. A non-demo format is
    best only when it beats demo strictly (ties go to demo, the conservative reading of the gate)."""
    matrix = in_quadrant_matrix(per_quadrant)
    success = in_quadrant_matrix(per_quadrant, "success")
    if matrix is None:
        return None
    rows = []
    for q in SHORT:
        deltas = matrix.loc[q]
        if deltas.isna().all():
            best = None
        else:
            best = deltas.idxmax()
            if "demo" in deltas and pd.notna(deltas["demo"]) and deltas["demo"] >= deltas[best]:
                best = "demo"
        rows.append({"quadrant": q, **{f"delta_{f}": deltas.get(f) for f in FORMATS}, "best_format": best,
                     "best_delta": deltas.get(best) if best else np.nan,
                     "best_success": success.loc[q].get(best) if best and success is not None else np.nan})
    return pd.DataFrame(rows)


def transfer_pivot(transfer: pd.DataFrame | None, value: str = "delta") -> pd.DataFrame | None:
    """Train quadrant (rows) x eval quadrant (columns) matrix of `value`."""
    if not usable(transfer, {"train_quadrant", "eval_quadrant", value}):
        return None
    frame = transfer.assign(train_quadrant=transfer.train_quadrant.map(short_quadrant),
                            eval_quadrant=transfer.eval_quadrant.map(short_quadrant))
    matrix = frame.pivot_table(index="train_quadrant", columns="eval_quadrant", values=value, aggfunc="mean")
    return matrix.reindex(index=list(SHORT), columns=list(SHORT)).astype(float)


def transfer_table(transfer: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tab H4.1: the numeric transfer matrix (success delta vs base), one row per training quadrant."""
    matrix = transfer_pivot(transfer)
    if matrix is None:
        return None
    table = matrix.rename(columns=lambda c: f"eval_{c}").reset_index().rename(columns={"train_quadrant": "train"})
    diag = [matrix.loc[q, q] for q in SHORT]
    off = [matrix.loc[q].drop(q).mean() for q in SHORT]
    return table.assign(diagonal=diag, off_diagonal_mean=off)


def diagonal_stats(transfer: pd.DataFrame | None) -> dict | None:
    matrix = transfer_pivot(transfer)
    if matrix is None:
        return None
    values = matrix.to_numpy()
    mask = np.eye(len(SHORT), dtype=bool)
    return {"diagonal_mean": float(np.nanmean(values[mask])), "off_diagonal_mean": float(np.nanmean(values[~mask]))}


def main_results(overall: pd.DataFrame | None, retention: pd.DataFrame | None,
                 stuckness: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tab H5.1: every evaluated model: held-out task success with its 95% CI, its delta against the base with the
    paired 95% interval and Holm-adjusted p, retention and its delta (with the same), and loop rate."""
    if not usable(overall, {"model", "kind", "train_quadrant", "success", "delta"}):
        return None
    cols = ["model", "kind", "train_quadrant", "format", "n_tasks", "success", "ci_low", "ci_high", "delta",
            "delta_ci_low", "delta_ci_high", "p_holm"]
    table = overall[[c for c in cols if c in overall]].copy()
    if usable(retention, {"model", "success", "delta"}):
        kept = [c for c in ("model", "success", "delta", "delta_ci_low", "delta_ci_high", "p_holm") if c in retention]
        table = table.merge(retention[kept].rename(
            columns={"success": "retention", "delta": "retention_delta", "delta_ci_low": "retention_delta_ci_low",
                     "delta_ci_high": "retention_delta_ci_high", "p_holm": "retention_p_holm"}),
            on="model", how="left")
    if usable(stuckness, {"model", "loop_rate"}):
        table = table.merge(stuckness[["model", "loop_rate"]], on="model", how="left")
    table["train_quadrant"] = table.train_quadrant.map(short_quadrant)
    return table


def predictor_metrics(result: dict | None, targets: dict) -> pd.DataFrame | None:
    """Tab H6.1: R2 of U, L_local and ELP_net, quadrant accuracy, and NDCG@K / P@K per ranking method."""
    if not result:
        return None
    reg, quad = result.get("regression", {}), result.get("quadrant", {})
    rows = [{"metric": "R2(U)", "value": reg.get("U", {}).get("r2"), "target": targets.get("r2_U")},
            {"metric": "R2(L_local)", "value": reg.get("L_local", {}).get("r2"), "target": targets.get("r2_L")},
            {"metric": "R2(ELP_net)", "value": reg.get("ELP_net", {}).get("r2"), "target": None},
            {"metric": "quadrant accuracy", "value": quad.get("accuracy"), "target": targets.get("accuracy")},
            {"metric": "majority-class accuracy", "value": quad.get("majority_baseline"), "target": None}]
    for k, methods in sorted(result.get("ranking", {}).items(), key=lambda kv: int(kv[0])):
        for method, scores in methods.items():
            for score, label in (("ndcg", "NDCG"), ("precision", "P")):
                if score in scores:
                    rows.append({"metric": f"{label}@{k} {method}", "value": scores[score], "target": None})
    table = pd.DataFrame(rows).astype({"value": float, "target": float})
    table["meets_target"] = [None if pd.isna(t) or pd.isna(v) else bool(v > t)
                             for v, t in zip(table.value, table.target)]
    return table


def ranking_by_k(ranking: pd.DataFrame | None, metric: str = "ndcg") -> pd.DataFrame | None:
    """NDCG@K (or precision@K) with one column per ranking method, one row per K (the DVC plot's source)."""
    if not usable(ranking, {"k", "method", metric}):
        return None
    wide = ranking.pivot_table(index="k", columns="method", values=metric, aggfunc="mean")
    first = ("predictor", "entropy", "random", "oracle")
    order = [m for m in first if m in wide] + sorted(set(wide) - set(first))
    return wide[order].reset_index().rename_axis(columns=None)


def selection_summary(selection: dict | None) -> pd.DataFrame | None:
    """Tab H7.1: per selection method: records trained, success and delta, retention and its delta, the mean true
    ELP_net of the chosen snapshots, and success per evaluation quadrant."""
    if not selection or not selection.get("methods"):
        return None
    methods = selection["methods"]
    order = [m for m in SELECTION_METHODS if m in methods] + [m for m in methods if m not in SELECTION_METHODS]
    rows = []
    for name in order:
        m = methods[name]
        per_q = {f"success_{short_quadrant(q)}": v for q, v in (m.get("per_quadrant") or {}).items()}
        rows.append({"method": name, "n_snapshots": len(m.get("snapshot_ids", [])), "n_records": m.get("n_records"),
                     "success": m.get("success"), "delta": m.get("delta"), "retention": m.get("retention"),
                     "retention_delta": m.get("retention_delta"), "mean_true_elp": m.get("mean_true_elp"), **per_q})
    return pd.DataFrame(rows)
