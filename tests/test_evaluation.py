"""Phase 3 tables and the held-out split, on constructed episodes; and a real (tiny) model evaluated
twice."""

import dataclasses
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from teachable.core.params import GateParams, Params
from teachable.evaluation.panels import (
    EvalModel,
    episode_rows,
    evaluate_models,
    evaluation_plan,
    heldout_snapshots,
    matrix_models,
)
from teachable.evaluation.results import headline, overall_task_results, phase3_gates, tables
from teachable.gates import holm
from teachable.labeling.quadrants import QUADRANTS
from teachable.core.records import Episode, Step
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.core.resume import ScratchLog
from teachable.core.tasks import is_heldout, make_tasks, rollout_sample_seed, training_snapshots

BASE = EvalModel("base", "base")


def episode(eid, success, hashes_actions, cycled=False):
    steps = [
        Step(obs="o", valid_actions=["a", "b"], action=a, state_hash=h) for h, a in hashes_actions
    ]
    return Episode(
        episode_id=eid,
        env="babyai",
        task_id="GoToLocal-7",
        seed=7,
        policy="p",
        success=success,
        reward=float(success),
        n_steps=len(steps),
        steps=steps,
        cycled=cycled,
    )


def test_a_repeated_state_and_action_is_a_loop_and_running_out_of_steps_is_counted():
    eps = [
        episode("task|GoToLocal-7|0", False, [("h1", "a"), ("h2", "b"), ("h1", "a")]),  # loop
        # same state, new action
        episode("task|GoToLocal-8|0", False, [("h1", "a"), ("h1", "b"), ("h2", "a")]),
        episode("task|GoToLocal-9|0", True, [("h1", "a"), ("h2", "a")]),
        episode("task|GoToLocal-10|0", False, [("h1", "a")], cycled=True),
    ]
    rows = pd.DataFrame(episode_rows(BASE, eps, {}, {"GoToLocal": 3}))
    assert rows.looped.tolist() == [True, False, False, True]
    assert rows.hit_max_steps.tolist() == [True, True, False, True]
    stuck = tables(rows)["stuckness_results"].iloc[0]
    assert (
        stuck.loop_rate == 0.5 and stuck.max_steps_rate == 0.75 and stuck.mean_steps_to_success == 2
    )


def synthetic_rows():
    """Base solves 1 of 4 snapshots in every quadrant; cell Qi-demo solves 3 of 4 in its own
    quadrant only."""
    rows = []
    models = [BASE] + [EvalModel(f"Q{i}-demo", "cell", "x", f"Q{i}", "demo") for i in range(1, 5)]
    for m in models:
        for q in range(1, 5):
            solved = 3 if m.train_quadrant == f"Q{q}" else 1
            rows += [
                {
                    **m.columns,
                    "panel": "snapshot",
                    "item": f"s{q}{j}",
                    "eval_quadrant": f"Q{q}",
                    "success": j < solved,
                    "n_steps": 4,
                    "looped": False,
                    "hit_max_steps": j >= solved,
                }
                for j in range(4)
            ]
        rows += [
            {
                **m.columns,
                "panel": panel,
                "item": f"{panel}{j}",
                "eval_quadrant": "",
                "success": j == 0,
                "n_steps": 5,
                "looped": j > 0,
                "hit_max_steps": j > 0,
            }
            for panel in ("task", "retention")
            for j in range(2)
        ]
    return pd.DataFrame(rows)


@pytest.mark.heavy
def test_transfer_matrix_is_4_by_4_with_the_gain_on_the_diagonal():
    t = tables(synthetic_rows())
    transfer = t["transfer_matrix"]
    assert len(transfer) == 16 and set(transfer.train_quadrant) == {"Q1", "Q2", "Q3", "Q4"}
    diagonal = transfer[transfer.train_quadrant == transfer.eval_quadrant]
    off = transfer[transfer.train_quadrant != transfer.eval_quadrant]
    assert (diagonal.delta == 0.5).all() and (off.delta == 0).all()
    metrics = headline(
        t, phase3_gates(synthetic_rows(), GateParams.defaults(n_resamples=999), seed=0)
    )
    assert metrics["diagonal_mean_delta"] == 0.5 and metrics["off_diagonal_mean_delta"] == 0
    diagonal_gate = metrics["gates"]["transfer_diagonal"]
    assert diagonal_gate["value"] == 0.5 and diagonal_gate["ci"][0] > 0
    # demo is the only format
    assert metrics["gates"]["supervision_differentiation"]["status"] == "not_applicable"


def test_success_has_a_wilson_interval_and_a_delta_against_the_base_model():
    per_quadrant = tables(synthetic_rows())["per_quadrant_results"]
    row = per_quadrant[
        (per_quadrant.model == "Q2-demo") & (per_quadrant.eval_quadrant == "Q2")
    ].iloc[0]
    assert (row.successes, row.n_snapshots, row.success, row.delta) == (3, 4, 0.75, 0.5)
    assert 0.2 < row.ci_low < 0.75 < row.ci_high < 1


def snapshot_records(n_tasks=40):
    records = []
    for i, task in enumerate(make_tasks(["GoToLocal"], n_tasks, "pipeline")):
        for step in range(3):
            split = "eval" if is_heldout(task.seed, 0.3) else "train"
            records.append(
                {
                    "snapshot_id": f"{task.task_id}-{step}",
                    "seed": task.seed,
                    "split": split,
                    "quadrant": QUADRANTS[i % 4],
                }
            )
    return records


def test_the_split_is_by_task_so_no_task_is_on_both_sides():
    records = snapshot_records()
    train, held = training_snapshots(records), heldout_snapshots(records, 100, seed=0)
    assert train and held
    assert not {r["seed"] for r in train} & {r["seed"] for r in held}
    assert {r["split"] for r in held} == {"eval"}
    # a stable hash of the seed, not Python's salted hash(): another process with another hash seed
    # agrees
    code = (
        "from teachable.core.tasks import is_heldout; "
        "print([is_heldout(s, 0.3) for s in range(200)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    assert other == str([is_heldout(s, 0.3) for s in range(200)])
    assert 0.2 < sum(is_heldout(s, 0.3) for s in range(2000)) / 2000 < 0.4


def test_untrained_cells_are_evaluated_as_the_base_model(tmp_path):
    for name, trained in (("Q1-demo", True), ("Q2-hint", False), ("random", True), ("self", True)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(f'{{"trained": {str(trained).lower()}}}')
        if trained:
            (tmp_path / name / "adapter_config.json").write_text("{}")
    models = {m.model: m for m in matrix_models(tmp_path, ["Q1-demo", "Q2-hint", "random", "self"])}
    assert models["Q2-hint"].adapter is None and models["Q1-demo"].adapter == str(
        tmp_path / "Q1-demo"
    )
    assert (models["Q2-hint"].train_quadrant, models["Q2-hint"].format) == ("Q2", "hint")
    assert models["random"].kind == "baseline" and models["base"].kind == "base"
    assert models["self"].kind == "control"


def make_tiny_plan():
    params = Params.defaults(
        env={"levels": ["GoToObj"], "max_steps": 8},
        evaluate={"n_tasks": 6, "n_snapshots_per_quadrant": 1, "retention_max": 2},
    )
    retention = [{"task_id": f"GoToObj-{s}", "level": "GoToObj", "seed": s} for s in (3, 4)]
    return evaluation_plan(params, [], retention)


@pytest.fixture
def tiny_plan():
    return make_tiny_plan()


@pytest.mark.heavy
def test_a_sampled_evaluation_does_not_replay_phase_0_episodes(tiny_policy):
    """Retention tasks are phase 0 tasks the base solved. Rolled out with phase 0's sample seed
    (`tasks.rollout_sample_seed`) a task replays its phase 0 episode action for action; the
    evaluation's own seeds must not, or the base would keep every retention task by construction."""
    tasks = make_tasks(["GoToObj"], 8, "pipeline")
    retention = [{"task_id": t.task_id, "level": t.level, "seed": t.seed} for t in tasks]
    params = Params.defaults(
        env={"levels": ["GoToObj"], "max_steps": 8},
        evaluate={"n_tasks": 1, "n_snapshots_per_quadrant": 1, "retention_max": 8},
    )
    plan = evaluation_plan(params, [], retention)
    engine = RolloutEngine(tiny_policy, record_steps=True, **plan["engine_kwargs"])
    actions = lambda eps: [[st.action for st in ep.steps] for ep in eps]  # noqa: E731
    phase0 = [
        RolloutSpec(f"ep{i}", t.level, t.seed, sample_seed=rollout_sample_seed(params.seed, i))
        for i, t in enumerate(tasks)
    ]
    replayed = [dataclasses.replace(s, episode_id=f"again{i}") for i, s in enumerate(phase0)]
    # the same seed replays the episode
    assert actions(engine.run(phase0)) == actions(engine.run(replayed))
    evaluated = [s for s in plan["specs"] if s.episode_id.startswith("retention|")]
    assert [s.seed for s in evaluated] == [t.seed for t in tasks]
    assert actions(engine.run(evaluated)) != actions(engine.run(phase0))
    assert [s.sample_seed for s in evaluation_plan(params, [], retention)["specs"]] == [
        s.sample_seed for s in plan["specs"]
    ]  # and every run the same


def test_evaluating_the_same_model_twice_gives_identical_tables(
    tiny_policy, tiny_plan, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # scratch logs go under the working directory
    results = [
        tables(
            evaluate_models(
                tiny_policy, [BASE], scratch=ScratchLog("eval-test", {"run": i}), **tiny_plan
            )
        )
        for i in range(2)
    ]
    for name in results[0]:
        pd.testing.assert_frame_equal(results[0][name], results[1][name])
    assert results[0]["overall_task_results"].n_tasks.iloc[0] == 6


def test_a_restarted_evaluation_skips_finished_models(
    tiny_policy, tiny_plan, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    scratch = ScratchLog("eval-test", {"run": "resume"})
    first = evaluate_models(tiny_policy, [BASE], scratch=scratch, **tiny_plan)

    class Exploding:
        def score(self, *a):
            raise AssertionError("a finished model was evaluated again")

    again = evaluate_models(Exploding(), [BASE], scratch=scratch, **tiny_plan)
    pd.testing.assert_frame_equal(first, again)


def test_seeds_of_a_model_are_averaged_and_their_spread_widens_the_interval():
    """Two seeds of one cell that disagree (one solves every task, one none) against two that agree
    at the same mean: the same delta, a wider interval for the pair that disagrees."""

    def rows_for(seed_outcomes):
        base = [
            {
                "model": "base",
                "kind": "base",
                "train_quadrant": "",
                "format": "",
                "seed": 0,
                "panel": "task",
                "item": f"t{i}",
                "success": i % 2 == 0,
            }
            for i in range(40)
        ]
        cell = [
            {
                "model": "Q1-demo",
                "kind": "cell",
                "train_quadrant": "Q1",
                "format": "demo",
                "seed": k,
                "panel": "task",
                "item": f"t{i}",
                "success": outcome(i),
            }
            for k, outcome in enumerate(seed_outcomes)
            for i in range(40)
        ]
        return pd.DataFrame(base + cell)

    split = (
        overall_task_results(rows_for([lambda i: True, lambda i: False]))
        .set_index("model")
        .loc["Q1-demo"]
    )
    agree = (
        overall_task_results(rows_for([lambda i: i % 2 == 0] * 2)).set_index("model").loc["Q1-demo"]
    )
    assert (
        split.n_seeds == 2
        and split.success == agree.success == 0.5
        and split.delta == agree.delta == 0
    )
    assert split.delta_ci_high - split.delta_ci_low > 2 * (agree.delta_ci_high - agree.delta_ci_low)


def test_cells_with_seeds_are_one_model_per_seed(tmp_path):
    for k in range(3):
        (tmp_path / f"Q1-demo/seed-{k}").mkdir(parents=True)
        (tmp_path / f"Q1-demo/seed-{k}/adapter_config.json").write_text("{}")
    (tmp_path / "Q1-demo" / "metrics.json").write_text(
        json.dumps(
            {
                "trained": True,
                "seeds": [
                    {
                        "seed_index": k,
                        "dir": str(tmp_path / f"Q1-demo/seed-{k}"),
                        "mlflow_run_id": f"r{k}",
                    }
                    for k in range(3)
                ],
            }
        )
    )
    models = [m for m in matrix_models(tmp_path, ["Q1-demo"]) if m.model == "Q1-demo"]
    assert [(m.seed, m.adapter, m.mlflow_run_id) for m in models] == [
        (k, str(tmp_path / f"Q1-demo/seed-{k}"), f"r{k}") for k in range(3)
    ]
    assert len({m.key for m in models}) == 3


def test_paired_deltas_have_intervals_exact_p_values_and_holm_across_models():
    """Three models against the base on the same 40 tasks: one identical, one that wins 10 tasks the
    base lost, one that swaps 5 wins for 5 losses. Only the second differs after Holm, and its
    interval excludes 0."""
    base = [True] * 10 + [False] * 30
    models = {
        "base": base,
        "same": base,
        "better": [True] * 20 + [False] * 20,
        "swapped": [False] * 5 + [True] * 5 + [True] * 5 + [False] * 25,
    }
    rows = pd.DataFrame(
        [
            {
                "model": m,
                "kind": "base" if m == "base" else "cell",
                "train_quadrant": "",
                "format": "",
                "panel": "task",
                "item": f"t{i}",
                "success": s,
            }
            for m, outcomes in models.items()
            for i, s in enumerate(outcomes)
        ]
    )
    table = overall_task_results(rows).set_index("model")
    assert table.delta["better"] == 0.25 and table.delta_ci_low["better"] > 0
    # exact McNemar: 10 of 10 discordant
    assert table.p_value["better"] == pytest.approx(2 * 0.5**10, abs=1e-6)
    assert table.p_holm["better"] == pytest.approx(3 * 2 * 0.5**10, abs=1e-6)
    assert (
        table.p_value["same"] == 1.0
        and table.delta_ci_low["same"] < 0 < table.delta_ci_high["same"]
    )
    assert table.p_value["swapped"] == 1.0 and table.delta["swapped"] == 0
    assert table.min_detectable_delta["swapped"] > table.min_detectable_delta["same"]
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_every_model_is_compared_with_the_self_control_and_the_control_is_in_no_gate():
    """On 40 tasks the base solves 20; the `self` control loses 10 of them, a cell keeps the base's
    20 and wins 6 more. The cell minus self is +0.4 with McNemar's exact p (16 of 16 discordant);
    the control is in no Holm family and no gate: the gates are the same with or without it."""
    base = [True] * 20 + [False] * 20
    outcomes = {
        "base": ("base", base),
        "self": ("control", [True] * 10 + [False] * 30),
        "Q1-demo": ("cell", [True] * 26 + [False] * 14),
    }
    rows = pd.DataFrame(
        [
            {
                "model": m,
                "kind": kind,
                "train_quadrant": "Q1" if kind == "cell" else "",
                "format": "demo" if kind == "cell" else "",
                "panel": "task",
                "item": f"t{i}",
                "success": s,
            }
            for m, (kind, won) in outcomes.items()
            for i, s in enumerate(won)
        ]
    )
    table = overall_task_results(rows).set_index("model")
    assert table.vs_self_delta["Q1-demo"] == pytest.approx(0.4)
    assert table.vs_self_ci_low["Q1-demo"] > 0 and table.vs_self_p["Q1-demo"] == pytest.approx(
        2 * 0.5**16, abs=1e-6
    )
    assert table.delta["self"] == pytest.approx(-0.25)
    for name in ("base", "self"):
        assert pd.isna(table.vs_self_delta[name])
    # Holm's family is the trained models: the cell's p is not doubled by the control
    assert table.p_holm["Q1-demo"] == pytest.approx(table.p_value["Q1-demo"])
    assert pd.isna(table.p_holm["self"])
    summary = headline(
        {
            "overall_task_results": overall_task_results(rows),
            "retention_results": overall_task_results(rows)[:0],
        },
        {
            "end_to_end_gain": {},
            "transfer_diagonal": {},
            "supervision_differentiation": {},
            "retention": {},
        },
    )
    assert summary["self_control_delta"]["value"] == pytest.approx(-0.25)
    assert summary["self_control_delta"]["ci"][1] < 0

    # the gates see the matrix without the control
    with_control = synthetic_rows()
    control = with_control[with_control.model == "base"].assign(model="self", kind="control")
    control = control.assign(success=~control.success)
    gated = phase3_gates(pd.concat([with_control, control]), GateParams.defaults(), seed=0)
    assert gated == phase3_gates(with_control, GateParams.defaults(), seed=0)
