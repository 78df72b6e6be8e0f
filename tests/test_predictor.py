import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from teachable.core.params import Params, PredictorParams
from teachable.gates import STATUSES
from teachable.evaluation.predictor import (
    EmbedderError,
    Predictor,
    feature_matrix,
    grouped_folds,
    level_of,
    ndcg_at_k,
    precision_at_k,
    ranking_curves,
    state_text,
)
from teachable.core.tasks import training_snapshots
from teachable.evaluation.predictor.features import make_spec
from teachable.evaluation.predictor.model import FOREST
from teachable.core.records import RecordError, write_jsonl
from tests.project_copy import load_stage

QUADRANTS = ("Q1_highU_highL", "Q2_highU_lowL", "Q3_lowU_lowL", "Q4_lowU_highL")
COLORS, OBJECTS = ("red", "green", "blue", "purple"), ("ball", "box", "key")


def quadrant_of(u: float, lev: float) -> str:
    if u > 0.95:
        return QUADRANTS[0] if lev > 0.1 else QUADRANTS[1]
    return QUADRANTS[3] if lev > 0.1 else QUADRANTS[2]


@pytest.fixture
def small_forest(monkeypatch):
    """20 trees instead of 200: the same code paths, a tenth of the time."""
    monkeypatch.setitem(FOREST, "n_estimators", 20)


def snapshots(n_tasks: int = 12, per_task: int = 4, seed: int = 0) -> list[dict]:
    """Quadrant snapshots shaped like the pilot's: text, uncertainty and every rollout label."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n_tasks):
        level = ("GoToLocal", "PickupDist")[t % 2]
        target = f"{COLORS[t % 4]} {OBJECTS[t % 3]}"
        for s in range(per_task):
            u = float(rng.uniform(0.5, 1.4))
            lev, elp = float(rng.choice([0.0, 0.14, 0.5])), float(rng.choice([0.0, 0.0, 0.5, 1.0]))
            out.append(
                {
                    "snapshot_id": f"ep{t:04d}-s{s}",
                    "env": "babyai",
                    "task_id": f"{level}-{t}",
                    "seed": t,
                    "step_idx": s + 1,
                    "source": "student_failure",
                    "mission": f"go to the {target}",
                    "history": [
                        {"obs": "You see: nothing.", "action": ("turn left", "go forward")[s % 2]}
                    ],
                    "obs": f"You see: {target} {s + 1} forward {t % 3} left. You carry nothing.",
                    "valid_actions": ["turn left", "turn right", "go forward"],
                    "student_action": "turn right",
                    "U": u,
                    "uncertainty": {"entropy": u, "margin": 1.4 - u, "top_prob": 1 - u / 2},
                    "leverage": {"L_local": lev, "L_upper": 1.0, "p_student": 0.0},
                    "cpt": {"ELP_net": elp, "p_placebo": 0.0, "route_net": "demo"},
                    "teacher": {"suggested_action": "turn left", "hint": "left"},
                    "quadrant": quadrant_of(u, lev),
                    "split": "eval" if t % 4 == 3 else "train",
                }
            )
    return out


def test_precision_at_k_by_hand():
    relevant, scores = np.array([1, 0, 1, 0]), np.array([4.0, 3.0, 2.0, 1.0])
    assert [precision_at_k(relevant, scores, k) for k in (1, 2, 3)] == [
        1.0,
        0.5,
        pytest.approx(2 / 3),
    ]
    # ties at the K-th score count pro rata: the top 1 is either of two tied items, one relevant
    assert precision_at_k(np.array([1, 0, 0, 1]), np.array([1.0, 1.0, 0.0, 0.0]), 1) == 0.5
    assert precision_at_k(
        np.array([1, 0, 0, 1]), np.array([1.0, 1.0, 0.0, 0.0]), 3
    ) == pytest.approx(1.5 / 3)


def test_ndcg_at_k_by_hand():
    gains, scores = np.array([3.0, 0.0, 1.0]), np.array([3.0, 2.0, 1.0])
    ideal3, ideal2 = 3 + 1 / math.log2(3), 3 + 1 / math.log2(3)
    assert ndcg_at_k(gains, scores, 3) == pytest.approx((3 + 1 / math.log2(4)) / ideal3)
    assert ndcg_at_k(gains, scores, 2) == pytest.approx(3 / ideal2)
    assert ndcg_at_k(gains, gains, 2) == pytest.approx(1.0)
    assert ndcg_at_k(np.zeros(3), scores, 2) == 0.0


def test_ranking_curves_skip_large_k_and_bound_the_methods():
    elp = np.array([0.5, -0.5, 0.0, 1.0, 0.0, 0.5])
    rows = ranking_curves(
        elp, predicted=elp, uncertainty=np.zeros(6), ks=[2, 4, 50], seed=0, n_random=50
    )
    assert sorted({r["k"] for r in rows}) == [2, 4]
    by = {(r["k"], r["method"]): r for r in rows}
    assert (
        by[(2, "oracle")]["ndcg"] == pytest.approx(1.0) and by[(2, "predictor")]["precision"] == 1.0
    )
    # constant entropy scores: every order equally likely, so precision is the base rate (3 of 6
    # relevant)
    assert by[(4, "entropy")]["precision"] == pytest.approx(0.5)
    assert 0.0 < by[(4, "random")]["ndcg"] < 1.0 and rows == ranking_curves(
        elp, elp, np.zeros(6), [2, 4, 50], 0, 50
    )


def test_grouped_folds_never_split_a_task():
    records = snapshots(n_tasks=7, per_task=3)
    groups = [r["task_id"] for r in records]
    folds = grouped_folds(groups, n_folds=5, seed=0)
    assert len(folds) == 5
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert sorted(np.concatenate([test for _, test in folds])) == list(range(len(records)))
    assert len(grouped_folds(groups[:9], n_folds=5, seed=0)) == 3  # capped by the 3 tasks there
    with pytest.raises(RecordError, match="at least 2 tasks"):
        grouped_folds(["GoToLocal-1"] * 4, n_folds=5, seed=0)


def test_features_read_no_rollout_label():
    records = snapshots(n_tasks=4, per_task=2)
    spec = make_spec(records, "hashing", 32, None)
    relabeled = [
        {
            **r,
            "leverage": {"L_local": -1.0, "L_upper": 0.0},
            "cpt": {"ELP_net": 9.0},
            "quadrant": "Q3_lowU_lowL",
            "teacher": {"hint": "something else"},
            "patches": {"demo": "x"},
            "split": "eval",
        }
        for r in records
    ]
    x = feature_matrix(records, spec)
    assert x.shape == (8, len(spec.names())) and np.array_equal(x, feature_matrix(relabeled, spec))
    # U's own model sees no uncertainty column
    shifted = [
        {**r, "U": 0.0, "uncertainty": {"entropy": 0.0, "margin": 0.0, "top_prob": 1.0}}
        for r in records
    ]
    assert not np.array_equal(x, feature_matrix(shifted, spec))
    assert np.array_equal(
        feature_matrix(records, spec, text_only=True), feature_matrix(shifted, spec, text_only=True)
    )


def test_level_and_state_text():
    record = snapshots(n_tasks=1, per_task=1)[0]
    assert level_of("GoToLocal-123") == "GoToLocal" and level_of("Pickup-Dist-7") == "Pickup-Dist"
    text = state_text(record)
    assert "m:go" in text and "o:red" in text and "a:turn_left" in text and "Q1" not in text


@pytest.mark.heavy
def test_save_load_gives_identical_predictions(tmp_path, small_forest):
    records = [r for r in snapshots() if r["split"] == "train"]
    for kind in ("forest", "linear"):
        predictor = Predictor.fit(records, embedding_dim=32, kind=kind, seed=1)
        predictor.save(tmp_path / kind)
        loaded = Predictor.load(tmp_path / kind)
        assert loaded.spec == predictor.spec and loaded.kind == kind
        new = snapshots(n_tasks=3, seed=5)
        elp = loaded.predict_elp(new)
        assert elp.shape == (len(new),) and elp.dtype == np.float64
        assert np.array_equal(elp, predictor.predict_elp(new))
        before, after = predictor.predict(new), loaded.predict(new)
        assert all(
            np.array_equal(before[t], after[t]) for t in ("U", "L_local", "ELP_net", "quadrant")
        )
    assert json.loads((tmp_path / "forest" / "features.json").read_text())["levels"] == [
        "GoToLocal",
        "PickupDist",
    ]
    assert loaded.predict_elp([]).shape == (0,)


@pytest.mark.heavy
def test_a_single_quadrant_still_fits_and_cross_validates(tmp_path, small_forest):
    from teachable.evaluation.predictor import cross_validate

    records = [{**r, "quadrant": "Q2_highU_lowL"} for r in snapshots(n_tasks=4, per_task=2)]
    spec = make_spec(records, "hashing", 16, None)
    for kind in ("linear", "forest"):
        cv = cross_validate(records, spec, n_folds=2, seed=0, kind=kind)
        assert cv.accuracy == 1.0 and cv.majority_baseline == 1.0 and cv.n_folds == 2
    Predictor.fit(records, embedding_dim=16, kind="linear").save(tmp_path)
    assert list(Predictor.load(tmp_path).predict(records[:2])["quadrant"]) == ["Q2_highU_lowL"] * 2


class NotAModel:
    pass


def test_load_refuses_untrusted_types(tmp_path):
    import skops.io as sio

    Predictor.fit(snapshots(n_tasks=4), embedding_dim=16, kind="linear").save(tmp_path)
    sio.dump(NotAModel(), tmp_path / "U.skops")
    with pytest.raises(ValueError, match="untrusted"):
        Predictor.load(tmp_path)


def test_sentence_transformers_needs_a_local_model(tmp_path):
    with pytest.raises(EmbedderError, match="sentence_model"):
        make_spec(snapshots(n_tasks=2), "sentence-transformers", 32, None)
    with pytest.raises(EmbedderError, match="sentence-transformers|not a local directory"):
        make_spec(snapshots(n_tasks=2), "sentence-transformers", 32, str(tmp_path / "missing"))


def test_training_split_keeps_train_rows_or_all_without_the_field():
    records = snapshots(n_tasks=4, per_task=1)
    assert [r["split"] for r in training_snapshots(records)] == ["train"] * 3
    unsplit = [{k: v for k, v in r.items() if k != "split"} for r in records]
    assert training_snapshots(unsplit) == unsplit


@pytest.mark.heavy
def test_the_stage_writes_the_contract_files(tmp_path, monkeypatch, small_forest):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    records = snapshots()
    write_jsonl("data/quadrant_snapshots.jsonl", records)
    stage = load_stage("predictor")
    stage.main(Params.defaults(predictor={"embedding_dim": 32, "n_folds": 3, "ks": [5, 10, 1000]}))

    result = json.loads(Path("reports/phase4/training_result.json").read_text())
    assert set(result) == {
        "n_snapshots",
        "n_folds",
        "embedder",
        "regression",
        "quadrant",
        "ranking",
        "gates",
    }
    n_train = sum(r["split"] == "train" for r in records)
    assert (
        result["n_snapshots"] == n_train
        and result["n_folds"] == 3
        and result["embedder"] == "hashing"
    )
    assert set(result["regression"]["U"]) == {"r2"} == set(result["regression"]["L_local"])
    assert set(result["regression"]["ELP_net"]) == {"r2"}
    assert set(result["quadrant"]) == {"accuracy", "majority_baseline", "U_threshold_baseline"}
    assert set(result["ranking"]) == {"5", "10"}
    assert set(result["ranking"]["5"]) == {"predictor", "entropy", "random"}
    assert set(result["ranking"]["5"]["predictor"]) == {"precision", "ndcg"}

    # the phase 4 gates, decided here: pass | fail | inconclusive with an interval, a p-value and
    # the n
    gates = result["gates"]
    assert set(gates) == {"r2_U", "r2_L", "accuracy_lift", "beats_entropy"}
    for gate in gates.values():
        assert {
            "statistic",
            "value",
            "ci",
            "p_value",
            "alpha",
            "status",
            "n",
            "threshold",
            "min_detectable",
            "n_needed",
        } <= set(gate)
        assert gate["status"] in STATUSES and gate["alpha"] == 0.05 and gate["n"] == n_train
        assert gate["status"] == "not_applicable" or gate["ci"][0] <= gate["ci"][1]
    assert gates["r2_U"]["value"] == pytest.approx(result["regression"]["U"]["r2"], abs=1e-6)
    assert gates["r2_U"]["threshold"] == 0.6 and gates["r2_L"]["threshold"] == 0.5
    assert gates["r2_L"]["value"] == pytest.approx(result["regression"]["L_local"]["r2"], abs=1e-6)
    lift = gates["accuracy_lift"]
    assert lift["accuracy"] == pytest.approx(result["quadrant"]["accuracy"], abs=1e-6)
    assert lift["baseline_majority"] == pytest.approx(
        result["quadrant"]["majority_baseline"], abs=1e-6
    )
    assert lift["target_accuracy"] == 0.7 and len(lift["accuracy_ci"]) == 2
    assert lift["value"] == pytest.approx(
        lift["accuracy"] - max(lift["baseline_majority"], lift["baseline_U_threshold"]), abs=1e-5
    )
    ranking = gates["beats_entropy"]
    assert ranking["k"] == 10  # the largest of 5, 10, 1000 at or below the training snapshots
    assert ranking["ndcg_predictor"] == pytest.approx(
        result["ranking"]["10"]["predictor"]["ndcg"], abs=1e-6
    )
    assert ranking["ndcg_entropy"] == pytest.approx(
        result["ranking"]["10"]["entropy"]["ndcg"], abs=1e-6
    )

    with open("reports/phase4/ranking_curves.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["k", "method", "precision", "ndcg"]
    assert {(r["k"], r["method"]) for r in rows} == {
        (k, m) for k in ("5", "10") for m in ("predictor", "entropy", "random", "oracle")
    }
    with open("reports/phase4/oof_predictions.csv") as fh:
        oof = list(csv.DictReader(fh))
    assert {r["snapshot_id"] for r in oof} == {
        r["snapshot_id"] for r in records if r["split"] == "train"
    }
    elp = Predictor.load("models/predictor").predict_elp(
        [r for r in records if r["split"] == "eval"]
    )
    assert elp.shape == (len(records) - n_train,) and np.isfinite(elp).all()
    assert PredictorParams.defaults().model == "forest"


def test_the_stage_stops_on_an_unusable_embedder_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = Params.defaults(
        predictor={"embedder": "sentence-transformers", "sentence_model": None}
    )
    Path("params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    stage = load_stage("predictor")
    with pytest.raises(SystemExit) as exit_info:
        stage.run()
    assert exit_info.value.code == 2 and "sentence_model" in capsys.readouterr().err
    assert not Path("mlflow.db").exists()
