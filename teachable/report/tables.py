"""Paper tables: each built as a DataFrame from the loaded inputs, then written as CSV (the source of truth),
Markdown and LaTeX from that same frame. A builder returns None when its inputs are missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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
        rows.append({"quadrant": SHORT_NAMES[q], "n": len(part), "share": len(part) / len(snapshots),
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
        rows.append({"quadrant": SHORT_NAMES.get(q, q), "n": stats.get("n"), "rho": stats.get("rho"),
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


def best_supervision(phase3_metrics: dict | None, per_quadrant: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """Tab H3.1: per quadrant, as the phase 3 gate `supervision_differentiation` decided it: each non-demo format's
    in-quadrant success delta against demo with its 95% interval and Holm-adjusted p, whether a format beats demo
    and which one is best (the gate's own choice, never re-derived here). `best_delta` is the best format's
    in-quadrant success delta against the base model (from per_quadrant_results.csv, when present)."""
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
            ci = comp.get("ci") if isinstance(comp.get("ci"), (list, tuple)) and len(comp.get("ci")) == 2 \
                else [None, None]
            row.update({f"{fmt}_minus_demo": comp.get("delta"), f"{fmt}_minus_demo_ci_low": ci[0],
                        f"{fmt}_minus_demo_ci_high": ci[1], f"{fmt}_p_holm": comp.get("p_holm")})
        row["best_delta"] = (against_base.loc[q].get(best) if against_base is not None and best in FORMATS
                             else np.nan)
        rows.append(row)
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c not in ("quadrant", "best_format", "differs")]
    return frame.astype({c: float for c in numeric})


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


def main_results(overall: pd.DataFrame | None, retention: pd.DataFrame | None,
                 stuckness: pd.DataFrame | None) -> pd.DataFrame | None:
    """Tab H5.1: every evaluated model: held-out tasks and training seeds, held-out task success with its 95% CI,
    its delta against the base with the paired 95% interval, Holm-adjusted p and the smallest delta detectable at
    this n, retention and its delta (with the same), and loop rate. Columns the inputs lack are left out."""
    if not usable(overall, {"model", "kind", "train_quadrant", "success", "delta"}):
        return None
    cols = ["model", "kind", "train_quadrant", "format", "n_tasks", "n_seeds", "success", "ci_low", "ci_high",
            "delta", "delta_ci_low", "delta_ci_high", "p_holm", "min_detectable_delta"]
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


PREDICTOR_GATES = {"R2(U)": "r2_U", "R2(L_local)": "r2_L", "quadrant accuracy": "accuracy_lift"}


def predictor_metrics(result: dict | None, targets: dict) -> pd.DataFrame | None:
    """Tab H6.1: R2 of U, L_local and ELP_net, quadrant accuracy, and NDCG@K / P@K per ranking method. The rows a
    phase 4 gate decides carry that gate's interval and status as the predictor stage wrote them."""
    if not result:
        return None
    reg, quad = result.get("regression") or {}, result.get("quadrant") or {}
    rows = [{"metric": "R2(U)", "value": (reg.get("U") or {}).get("r2"), "target": targets.get("r2_U")},
            {"metric": "R2(L_local)", "value": (reg.get("L_local") or {}).get("r2"), "target": targets.get("r2_L")},
            {"metric": "R2(ELP_net)", "value": (reg.get("ELP_net") or {}).get("r2"), "target": None},
            {"metric": "quadrant accuracy", "value": quad.get("accuracy"), "target": targets.get("accuracy")},
            {"metric": "majority-class accuracy", "value": quad.get("majority_baseline"), "target": None}]
    for row in rows:
        verdict = gate_verdict(result, PREDICTOR_GATES.get(row["metric"], ""))
        ci = (verdict or {}).get("ci") or [None, None]
        row.update(ci_low=ci[0], ci_high=ci[1], gate_status=(verdict or {}).get("status"))
    for k, methods in sorted((result.get("ranking") or {}).items(), key=lambda kv: int(kv[0])):
        for method, scores in methods.items():
            for score, label in (("ndcg", "NDCG"), ("precision", "P")):
                if score in scores:
                    rows.append({"metric": f"{label}@{k} {method}", "value": scores[score], "target": None})
    columns = ["metric", "value", "ci_low", "ci_high", "target", "gate_status"]
    return pd.DataFrame(rows, columns=columns).astype({"value": float, "ci_low": float, "ci_high": float,
                                                       "target": float})


def ranking_by_k(ranking: pd.DataFrame | None, metric: str = "ndcg") -> pd.DataFrame | None:
    """NDCG@K (or precision@K) with one column per ranking method, one row per K (the DVC plot's source)."""
    if not usable(ranking, {"k", "method", metric}):
        return None
    wide = ranking.pivot_table(index="k", columns="method", values=metric, aggfunc="mean")
    first = ("predictor", "entropy", "random", "oracle")
    order = [m for m in first if m in wide] + sorted(set(wide) - set(first))
    return wide[order].reset_index().rename_axis(columns=None)


def selection_summary(selection: dict | None) -> pd.DataFrame | None:
    """Tab H7.1: per selection method: records trained, success with its 95% CI, delta against the base (with its
    paired interval when the stage wrote one), retention and its delta, the mean true ELP_net of the chosen
    snapshots, and success per evaluation quadrant."""
    if not selection or not selection.get("methods"):
        return None
    methods = selection["methods"]
    order = [m for m in SELECTION_METHODS if m in methods] + [m for m in methods if m not in SELECTION_METHODS]
    rows = []
    for name in order:
        m = methods[name]
        per_q = {f"success_{short_quadrant(q)}": v for q, v in (m.get("per_quadrant") or {}).items()}
        delta_ci = m.get("delta_ci") if isinstance(m.get("delta_ci"), (list, tuple)) else \
            [m.get("delta_ci_low"), m.get("delta_ci_high")]
        rows.append({"method": name, "n_snapshots": len(m.get("snapshot_ids", [])), "n_records": m.get("n_records"),
                     "success": m.get("success"), "ci_low": m.get("ci_low"), "ci_high": m.get("ci_high"),
                     "delta": m.get("delta"), "delta_ci_low": delta_ci[0], "delta_ci_high": delta_ci[1],
                     "retention": m.get("retention"), "retention_delta": m.get("retention_delta"),
                     "mean_true_elp": m.get("mean_true_elp"), **per_q})
    frame = pd.DataFrame(rows)
    absent = [c for c in ("ci_low", "ci_high", "delta_ci_low", "delta_ci_high") if frame[c].isna().all()]
    return frame.drop(columns=absent)
