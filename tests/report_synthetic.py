"""Synthetic upstream outputs that follow the phase 0-5 contracts (notes/contracts.md), for the
report's tests.

`write_repo(root, phases)` writes the files of the listed phases under `root` with numbers chosen so
every gate passes; `good=False` flips each gate to its failing side. The gate verdicts of phases 1-5
are written as their stages write them (`teachable.gates.core.verdict` under each file's `gates`);
`statuses` overrides a verdict's status ({"end_to_end_gain": "inconclusive"}) without touching its
numbers, so a test can tell a copied status from a re-derived one. `old_format=True` writes the
files as stages wrote them before they decided gates: no `gates`, no headlines, the phase 3 CSVs
without intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from teachable.core.params import MicroTrainParams
from teachable.gates.core import INCONCLUSIVE, verdict
from teachable.labeling.estimates import cpt, leverage
from teachable.labeling.quadrants import QUADRANTS, SHORT_NAMES
from teachable.training.microtrain import summarise
from teachable.training.supervision import FORMATS

SHORT = tuple(SHORT_NAMES.values())
ALPHA = 0.05


N_ROLLOUTS = 14


def _outcomes(p: float) -> list[bool]:
    """N_ROLLOUTS outcomes with success rate p (clipped to [0, 1]); lists of one rate share their
    order, as arms on shared seeds are coupled."""
    k = round(min(1.0, max(0.0, p)) * N_ROLLOUTS)
    return [True] * k + [False] * (N_ROLLOUTS - k)


def snapshot(i: int, q: str, rng) -> dict:
    high_u, high_l = q in (QUADRANTS[0], QUADRANTS[1]), q in (QUADRANTS[0], QUADRANTS[3])
    u = float(rng.uniform(1.0, 1.6) if high_u else rng.uniform(0.2, 0.9))
    p_student = float(rng.choice([0.0, 1 / 7, 2 / 7]))
    l_local = float(rng.choice([1 / 7, 3 / 7, 5 / 7]) if high_l else rng.choice([-1 / 7, 0.0]))
    elp = float(rng.choice([0.0, 0.5, 1.0]) if high_l else rng.choice([-0.5, 0.0, 0.0, 0.5]))
    student, placebo = _outcomes(p_student), _outcomes(0.5)
    lev = leverage({"student": student, "force": _outcomes(p_student + l_local), "expert": [True]})
    actions = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
    probs = rng.dirichlet(np.ones(6) * (0.5 if high_u else 0.1))
    return {
        "snapshot_id": f"ep{i:06d}-s{i % 9 + 1}",
        "env": "babyai",
        "task_id": f"GoToLocal-{i}",
        "seed": i,
        "step_idx": i % 9 + 1,
        "source": "student_failure",
        "mission": 'go to the <grey> ball & "box"',
        "history": [{"obs": "You see: nothing.", "action": "turn left"}],
        "obs": "You see: grey ball 2 forward <b>bold?</b>. You carry nothing.",
        "valid_actions": actions,
        "student_action": actions[int(np.argmax(probs))],
        "state": {"level": "GoToLocal", "seed": i, "actions": []},
        "state_hash": "abc",
        "U": u,
        "uncertainty": {"entropy": u, "margin": 0.2, "top_prob": float(probs.max())},
        "student_probs": {a: round(float(p), 6) for a, p in zip(actions, probs)},
        "teacher": {
            "suggested_action": "go forward",
            "diagnosis": "The ball is ahead <script>x</script>.",
            "hint": "The ball is 2 ahead.",
            "contrast": "'turn left' is wrong; 'go forward' is right.",
            "source": "oracle",
            "valid": True,
        },
        "patches": {
            "base": None,
            "placebo": "Teacher: keep going.",
            "demo": "Teacher: do 'go forward'.",
            "contrast": "Teacher: not 'turn left'.",
            "hint": "Teacher: the ball is ahead.",
        },
        "leverage": {
            **lev,
            "horizon": 16,
            "threshold": 0.1,
            "side": "high" if high_l else "low",
            "decision_ci": lev["ci"]["L_local"],
            "decision_confidence": 0.975,
        },
        "cpt": cpt(
            {
                "student": student,
                "placebo": placebo,
                "demo": _outcomes(0.5 + elp),
                "contrast": placebo,
                "hint": placebo,
            }
        ),
        "rollouts": {"n_per_arm": N_ROLLOUTS, "total": 7 * N_ROLLOUTS},
        "quadrant": q,
        "split": "eval" if i % 4 == 0 else "train",
    }


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, pd.DataFrame):
        obj.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in obj))
    else:
        path.write_text(json.dumps(obj, indent=1))


def models() -> list[tuple[str, str, str, str]]:
    """(model, kind, train_quadrant, format) rows of the phase 3 CSVs."""
    rows = [("base", "base", "", "")]
    rows += [(f"{q}-{f}", "cell", q, f) for q in SHORT for f in FORMATS]
    rows += [
        ("random", "baseline", "", ""),
        ("all", "baseline", "", ""),
        ("self", "control", "", ""),
        ("recovery", "recovery", "", ""),
    ]
    rows += [
        (f"select-{m}", "selection", "", "") for m in ("random", "entropy", "predictor", "oracle")
    ]
    return rows


def _gate(
    key: str, good: bool, statuses: dict | None, statistic: str, value, ci, p_value, n, **detail
) -> dict:
    """A verdict as a stage writes it: pass when `good`, else fail, unless `statuses` says otherwise
    (the numbers stay as given, so a status the report re-derived would differ). An inconclusive one
    gets an n_needed."""
    status = (statuses or {}).get(key, "pass" if good else "fail")
    if status == INCONCLUSIVE:
        detail.setdefault("n_needed", 480)
    return verdict(statistic, value, ci, p_value, ALPHA, status, n, **detail)


def _phase3_gates(good: bool, statuses: dict | None, in_quadrant: dict) -> dict:
    """The evaluate_models stage's four verdicts; `in_quadrant[q][f]` is the in-quadrant success
    delta of each cell."""
    per_quadrant = {}
    for q in SHORT:
        comparisons = {
            f: {
                "delta": round(in_quadrant[q][f] - in_quadrant[q]["demo"], 6),
                "ci": [
                    round(in_quadrant[q][f] - in_quadrant[q]["demo"] - 0.08, 6),
                    round(in_quadrant[q][f] - in_quadrant[q]["demo"] + 0.08, 6),
                ],
                "p": 0.5,
                "p_holm": 0.01 if in_quadrant[q][f] - in_quadrant[q]["demo"] > 0.05 else 0.6,
                "n": 20,
            }
            for f in FORMATS[1:]
        }
        winners = {f: c["delta"] for f, c in comparisons.items() if c["p_holm"] < ALPHA}
        best = max(winners, key=winners.get) if winners else "demo"
        per_quadrant[q] = {
            "best_format": best,
            "differs": bool(winners),
            "comparisons": comparisons,
        }
    differ = sum(v["differs"] for v in per_quadrant.values())
    return {
        "end_to_end_gain": _gate(
            "end_to_end_gain",
            good,
            statuses,
            "test_delta_of_chosen_model",
            0.08 if good else 0.01,
            [0.02, 0.14] if good else [-0.03, 0.04],
            0.01 if good else 0.4,
            50,
            threshold=0.05,
            chosen_model="Q1-demo",
            validation_delta=0.1,
            n_candidates=19,
            min_detectable=0.07,
            n_unit="test tasks",
        ),
        "retention": _gate(
            "retention",
            good,
            statuses,
            "worst_lower_bound",
            -0.02 if good else -0.12,
            [-0.02, 0.02] if good else [-0.12, -0.04],
            None,
            50,
            threshold=-0.03,
            margin=0.03,
            worst_model="Q2-hint",
            worst_delta=0.0 if good else -0.08,
            n_models=18,
            n_noninferior=18 if good else 0,
            n_inferior=0 if good else 18,
            min_detectable=0.04,
        ),
        "supervision_differentiation": _gate(
            "supervision_differentiation",
            good,
            statuses,
            "n_quadrants_where_a_format_beats_demo",
            differ,
            None,
            None,
            20,
            threshold=2,
            required=2,
            n_quadrants_differ=differ,
            min_detectable=0.15,
            n_unit="held-out snapshots per quadrant",
            per_quadrant=per_quadrant,
        ),
        "transfer_diagonal": _gate(
            "transfer_diagonal",
            good,
            statuses,
            "diagonal_minus_off_diagonal_delta",
            0.13 if good else -0.05,
            [0.09, 0.17] if good else [-0.08, -0.02],
            0.001 if good else 0.99,
            80,
            threshold=0.05,
            diagonal_mean=0.15 if good else 0.0,
            off_diagonal_mean=0.02 if good else 0.05,
            min_detectable=0.06,
            n_unit="held-out snapshots",
        ),
    }


def write_repo(
    root: Path,
    phases=(1, 2, 3, 4, 5),
    good: bool = True,
    n_per_quadrant: int = 12,
    statuses: dict | None = None,
    old_format: bool = False,
    min_per_quadrant: int = 10,
) -> dict:
    """Write the contract files of `phases` under `root`; returns the snapshot records."""
    rng = np.random.default_rng(0)
    records = [
        snapshot(i * 4 + k, q, rng) for i in range(n_per_quadrant) for k, q in enumerate(QUADRANTS)
    ]
    if not good:  # Q3 nearly empty: the balance gate fails
        records = [r for r in records if r["quadrant"] != QUADRANTS[2]] + [
            r for r in records if r["quadrant"] == QUADRANTS[2]
        ][:2]
    base = 0.4
    if 1 in phases:
        _write(root / "data/quadrant_snapshots.jsonl", records)
        _write(
            root / "reports/phase1/quadrant_thresholds.json", {"U": 0.95, "L": 0.0, "mode": "auto"}
        )
        counts = {SHORT_NAMES[q]: sum(r["quadrant"] == q for r in records) for q in QUADRANTS}
        low = min(counts.values())
        metrics = {q: {"count": counts[SHORT_NAMES[q]]} for q in QUADRANTS}
        if not old_format:  # not a test: a count against quadrants.min_per_quadrant
            metrics["gates"] = {
                "quadrant_balance": verdict(
                    "min_quadrant_count",
                    low,
                    None,
                    None,
                    None,
                    (statuses or {}).get(
                        "quadrant_balance", "pass" if low >= min_per_quadrant else "fail"
                    ),
                    len(records),
                    threshold=min_per_quadrant,
                    counts=counts,
                    paper_threshold=300,
                    paper_status="pass" if low > 300 else "fail",
                )
            }
        _write(root / "reports/phase1/quadrant_metrics.json", metrics)
        micro = []
        for i, r in enumerate(records[:40]):
            elp = r["cpt"]["ELP_net"]
            gain = round((elp if good else -elp) * 0.8 + (i % 5 - 2) * 0.02, 6)
            micro.append(
                {
                    "snapshot_id": r["snapshot_id"],
                    "quadrant": r["quadrant"],
                    "ELP_net": elp,
                    "gain": gain,
                    "ELP_net_halves": [elp + (i % 3 - 1) * 0.05, elp],
                    "format": "demo",
                    "gain_halves": [gain + (i % 3 - 1) * 0.05, gain - (i % 3 - 1) * 0.05],
                    "n_validation": 8,
                    "p_base": 0.25,
                    "p_base_pooled": 0.25,
                    "L_local": r["leverage"]["L_local"],
                }
            )
        _write(root / "reports/phase1b/micro_training_results.json", {"results": micro})
        correlation = summarise(micro, MicroTrainParams.defaults(), seed=0, min_effect=0.05)
        if old_format:
            correlation.pop("gates", None)
        for key, status in (statuses or {}).items():
            if key in correlation.get("gates", {}):
                correlation["gates"][key]["status"] = status
        _write(root / "reports/phase1b/cpt_correlation.json", correlation)
    if 2 in phases:
        runs = []
        for model, kind, q, f in models()[1:16]:
            ids = [
                r["snapshot_id"] for r in records if kind == "cell" and r["quadrant"].startswith(q)
            ][:6]
            _write(
                root / f"models/phase2/{model}/metrics.json",
                {
                    "trained": True,
                    "n_records": len(ids),
                    "small": False,
                    "train_loss": 0.3,
                    "method": "sft",
                    "snapshot_ids": ids,
                },
            )
            runs.append(
                {"run_id": model, "n_records": len(ids), "trained": True, "final_loss": 0.3}
            )
        _write(root / "reports/phase2/training_summary.json", {"n_runs": len(runs), "runs": runs})
    if 3 in phases:
        overall, per_q, retention, stuck = [], [], [], []
        in_quadrant = {q: {} for q in SHORT}
        for i, (model, kind, q, f) in enumerate(models()):
            delta = 0.0 if kind == "base" else round(0.02 * (i % 5) - 0.01, 3)
            s = base + delta
            paired = [
                delta - 0.06,
                delta + 0.06,
                0.5 if kind == "base" else 0.2,
                0.6 if kind == "base" else 0.8,
                0.07,
            ]
            overall.append(
                [model, kind, q, f, 100, 2, round(s * 100), s, s - 0.09, s + 0.09, delta, *paired]
            )
            for eq in SHORT:
                d = 0.0 if kind == "base" else (0.15 if eq == q else 0.02)
                if kind == "cell" and eq == q:
                    # demo best in Q1 only; hint best in Q2, contrast best in Q3/Q4 (bad: demo
                    # everywhere)
                    d = {
                        "demo": 0.2 if q == "Q1" or not good else 0.05,
                        "hint": 0.15 if q != "Q2" or not good else 0.25,
                        "contrast": 0.1 if q in ("Q1", "Q2") or not good else 0.3,
                    }[f]
                    in_quadrant[q][f] = d
                per_q.append(
                    [
                        model,
                        kind,
                        q,
                        f,
                        eq,
                        20,
                        round((0.3 + d) * 20),
                        0.3 + d,
                        0.1,
                        0.6,
                        d,
                        d - 0.1,
                        d + 0.1,
                    ]
                )
            rd = 0.0 if kind == "base" else (0.01 - 0.01 * (i % 4) if good else -0.08)
            retention.append(
                [
                    model,
                    kind,
                    q,
                    f,
                    50,
                    2,
                    40,
                    0.8 + rd,
                    0.8,
                    rd,
                    rd - 0.04,
                    rd + 0.04,
                    0.5,
                    0.6,
                    0.05,
                ]
            )
            stuck.append([model, kind, q, f, 100, 0.1, 12.0, 0.2])
        cols = ["model", "kind", "train_quadrant", "format"]
        paired_cols = ["delta_ci_low", "delta_ci_high", "p_value", "p_holm", "min_detectable_delta"]
        frames = {
            "overall_task_results": pd.DataFrame(
                overall,
                columns=cols
                + [
                    "n_tasks",
                    "n_seeds",
                    "successes",
                    "success",
                    "ci_low",
                    "ci_high",
                    "delta",
                    *paired_cols,
                ],
            ),
            "per_quadrant_results": pd.DataFrame(
                per_q,
                columns=cols
                + [
                    "eval_quadrant",
                    "n_snapshots",
                    "successes",
                    "success",
                    "ci_low",
                    "ci_high",
                    "delta",
                    "delta_ci_low",
                    "delta_ci_high",
                ],
            ),
            "retention_results": pd.DataFrame(
                retention,
                columns=cols
                + [
                    "n_tasks",
                    "n_seeds",
                    "successes",
                    "success",
                    "base_success",
                    "delta",
                    *paired_cols,
                ],
            ),
        }
        for name, frame in frames.items():
            if old_format:
                frame = frame.drop(columns=[c for c in [*paired_cols, "n_seeds"] if c in frame])
            _write(root / f"reports/phase3/{name}.csv", frame)
        _write(
            root / "reports/phase3/stuckness_results.csv",
            pd.DataFrame(
                stuck,
                columns=cols
                + ["n_episodes", "loop_rate", "mean_steps_to_success", "max_steps_rate"],
            ),
        )
        metrics = {"base_success": base, "n_models": len(overall)}
        if not old_format:
            gates = _phase3_gates(good, statuses, in_quadrant)
            chosen = gates["end_to_end_gain"]
            metrics.update(
                n_tasks=100,
                n_rollouts=1,
                temperature=1.0,
                n_seeds=2,
                median_min_detectable_delta=0.07,
                headlines={
                    "base_success": {
                        "value": base,
                        "ci": [0.31, 0.49],
                        "n": 100,
                        "min_detectable": None,
                    },
                    "chosen_model_test_delta": {
                        "value": chosen["value"],
                        "ci": chosen["ci"],
                        "n": chosen["n"],
                        "min_detectable": 0.07,
                    },
                },
                gates=gates,
            )
        _write(root / "reports/phase3/metrics.json", metrics)
        transfer = [
            [tq, eq, 0.3 + d, 0.3, d]
            for tq in SHORT
            for eq in SHORT
            for d in [(0.15 if tq == eq else 0.02) if good else (0.0 if tq == eq else 0.05)]
        ]
        _write(
            root / "reports/phase3/transfer_matrix.csv",
            pd.DataFrame(
                transfer,
                columns=["train_quadrant", "eval_quadrant", "success", "base_success", "delta"],
            ),
        )
    if 4 in phases:
        r2 = (0.7, 0.55, 0.3, 0.75) if good else (0.5, 0.4, 0.1, 0.6)
        ks = [5, 10, 20]
        ndcg = {"predictor": 0.7 if good else 0.3, "entropy": 0.5, "random": 0.35, "oracle": 1.0}
        _write(
            root / "reports/phase4/training_result.json",
            {
                "n_snapshots": len(records),
                "n_folds": 5,
                "embedder": "hashing",
                "regression": {
                    "U": {"r2": r2[0], "threshold": 0.6, "pass": r2[0] > 0.6},
                    "L_local": {"r2": r2[1], "threshold": 0.5, "pass": r2[1] > 0.5},
                    "ELP_net": {"r2": r2[2]},
                },
                "quadrant": {
                    "accuracy": r2[3],
                    "threshold": 0.7,
                    "pass": r2[3] > 0.7,
                    "majority_baseline": 0.35,
                },
                "ranking": {
                    str(k): {m: {"precision": v * 0.9, "ndcg": v} for m, v in ndcg.items()}
                    for k in ks
                },
                "beats_entropy": good,
                "passes": {},
                **(
                    {}
                    if old_format
                    else {
                        "gates": {
                            "r2_U": _gate(
                                "r2_U",
                                good,
                                statuses,
                                "r2_out_of_fold",
                                r2[0],
                                [r2[0] - 0.05, r2[0] + 0.05],
                                0.01 if good else 0.99,
                                len(records),
                                threshold=0.6,
                                min_detectable=0.08,
                            ),
                            "r2_L": _gate(
                                "r2_L",
                                good,
                                statuses,
                                "r2_out_of_fold",
                                r2[1],
                                [r2[1] - 0.04, r2[1] + 0.04],
                                0.02 if good else 0.99,
                                len(records),
                                threshold=0.5,
                                min_detectable=0.07,
                            ),
                            "accuracy_lift": _gate(
                                "accuracy_lift",
                                good,
                                statuses,
                                "accuracy_minus_best_baseline",
                                r2[3] - 0.35,
                                [r2[3] - 0.45, r2[3] - 0.25],
                                0.01 if good else 0.7,
                                len(records),
                                threshold=0.0,
                                min_detectable=0.1,
                            ),
                            "beats_entropy": _gate(
                                "beats_entropy",
                                good,
                                statuses,
                                "ndcg_predictor_minus_entropy",
                                ndcg["predictor"] - 0.5,
                                [ndcg["predictor"] - 0.6, ndcg["predictor"] - 0.4],
                                0.01 if good else 0.99,
                                len(records),
                                threshold=0.0,
                                k=10,
                                min_detectable=0.12,
                            ),
                        }
                    }
                ),
            },
        )
        _write(
            root / "reports/phase4/ranking_curves.csv",
            pd.DataFrame(
                [[k, m, v * 0.9 - 0.01 * k, v - 0.005 * k] for k in ks for m, v in ndcg.items()],
                columns=["k", "method", "precision", "ndcg"],
            ),
        )
        # out-of-fold predictions: true ELP_net plus noise
        train = [r for r in records if r["split"] == "train"]
        _write(
            root / "reports/phase4/oof_predictions.csv",
            pd.DataFrame(
                {
                    "snapshot_id": [r["snapshot_id"] for r in train],
                    "ELP_pred": [
                        round(r["cpt"]["ELP_net"] * (0.6 if good else -0.6) + rng.normal(0, 0.2), 6)
                        for r in train
                    ],
                }
            ),
        )
    if 5 in phases:
        deltas = {"random": 0.01, "entropy": 0.04, "predictor": 0.08, "oracle": 0.1}
        if not good:
            deltas["predictor"] = 0.0
        methods = {
            m: {
                "snapshot_ids": [r["snapshot_id"] for r in records[i::4]][:8],
                "n_records": 8,
                "success": base + d,
                "delta": d,
                "retention": 0.79,
                "retention_delta": -0.01,
                "retention_delta_ci": [-0.05, 0.03],
                "per_quadrant": {q: 0.3 + d for q in SHORT},
                "mean_true_elp": d * 3,
            }
            for i, (m, d) in enumerate(deltas.items())
        }
        _write(
            root / "reports/phase5/selection_summary.json",
            {
                "budget": 8,
                "format": "demo",
                "methods": methods,
                "base_success": base,
                "ordering": {"predictor>entropy": good, "entropy>random": True, "pass": good},
                **(
                    {}
                    if old_format
                    else {
                        "gates": {
                            "selection_ordering": _gate(
                                "selection_ordering",
                                good,
                                statuses,
                                "ordering_predictor>entropy>random",
                                deltas["predictor"] - deltas["entropy"],
                                [-0.01, 0.09] if good else [-0.09, -0.01],
                                0.02 if good else 0.95,
                                100,
                                threshold=0.05,
                                weakest_pair="predictor>entropy",
                                comparisons={
                                    "predictor>entropy": {
                                        "delta": deltas["predictor"] - deltas["entropy"],
                                        "ci": [-0.01, 0.09],
                                        "p": 0.01,
                                        "p_holm": 0.02,
                                        "n": 100,
                                    },
                                    "entropy>random": {
                                        "delta": 0.03,
                                        "ci": [0.0, 0.06],
                                        "p": 0.01,
                                        "p_holm": 0.02,
                                        "n": 100,
                                    },
                                },
                                min_detectable=0.06,
                                n_unit="tasks",
                            ),
                            "selection_retention": _gate(
                                "selection_retention",
                                good,
                                statuses,
                                "worst_lower_bound",
                                -0.025,
                                [-0.025, 0.005],
                                None,
                                50,
                                threshold=-0.03,
                                margin=0.03,
                                worst_model="select-random",
                                n_models=4,
                                min_detectable=0.04,
                            ),
                        }
                    }
                ),
            },
        )
        _write(
            root / "reports/phase5/selection_results.csv",
            pd.DataFrame(
                [
                    [m, 8, base + d, base + d - 0.09, base + d + 0.09, d, 0.79, -0.01, d * 3]
                    for m, d in deltas.items()
                ],
                columns=[
                    "method",
                    "n_records",
                    "success",
                    "ci_low",
                    "ci_high",
                    "delta",
                    "retention",
                    "retention_delta",
                    "mean_true_elp",
                ],
            ),
        )
    return records
