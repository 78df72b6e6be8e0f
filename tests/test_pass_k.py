"""pass^k (tau-bench's reliability metric) and parse failures in phase 3, and their tables in the
report."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from teachable.core.params import GateParams, Params
from teachable.core.records import Episode, Step
from teachable.core.resume import ScratchLog
from teachable.evaluation.panels import EvalModel, episode_rows, evaluate_models, evaluation_plan
from teachable.evaluation.results import (
    PARSE_COLUMNS,
    clustered_rate,
    headline,
    overall_task_results,
    parse_failure_rates,
    parse_failure_summary,
    pass_hat_k,
    pass_k,
    pass_k_results,
    phase3_gates,
    tables,
    wilson_interval,
)
from teachable.labeling.estimates import wilson
from teachable.report import paper_tables
from teachable.report.build import build_report
from teachable.report.loaders import load_inputs
from tests.report_synthetic import write_repo

BASE = EvalModel("base", "base")
CELL = EvalModel("Q1-demo", "cell", "x", "Q1", "demo")


def values(a, max_k=8):
    return [e["value"] for e in pass_k(np.asarray(a, dtype=float), max_k)]


def outcome_array(successes, n, seeds=1):
    """(seeds, items, n) outcomes whose item i has successes[s][i] (or successes[i] for every seed)
    successes."""
    successes = np.atleast_2d(successes)
    successes = np.repeat(successes, seeds, axis=0) if successes.shape[0] == 1 else successes
    return (np.arange(n)[None, None, :] < successes[:, :, None]).astype(float)


# -- pass^k: exact values --------------------------------------------------------------------------
def test_pass_k_exact_values_on_a_hand_made_panel():
    """Items with 4, 2 and 0 successes of 4: per item C(c, k) / C(4, k) is (1, 1/2, 0), (1, 1/6, 0),
    (1, 0, 0), (1, 0, 0) for k = 1..4."""
    assert pass_hat_k([4, 2, 0], 4, 2).tolist() == pytest.approx([1, 1 / 6, 0])
    assert values(outcome_array([4, 2, 0], 4)) == pytest.approx([1 / 2, 7 / 18, 1 / 3, 1 / 3])
    # 3 successes of 5: C(3, k) / C(5, k) = 3/5, 3/10, 1/10, 0, 0
    assert values(outcome_array([3], 5)) == pytest.approx([0.6, 0.3, 0.1, 0, 0])
    # the order of the rollouts does not matter, only their count
    shuffled = outcome_array([4, 2, 0], 4)[:, :, ::-1]
    assert values(shuffled) == pytest.approx([1 / 2, 7 / 18, 1 / 3, 1 / 3])
    with pytest.raises(ValueError):
        pass_hat_k([1], 2, 3)


def test_pass_1_is_the_mean_success_and_pass_k_never_increases():
    rng = np.random.default_rng(0)
    for seeds, items, n in ((1, 30, 1), (1, 25, 4), (3, 20, 6), (2, 15, 10)):
        a = (rng.random((seeds, items, n)) < rng.random((1, items, 1))).astype(float)
        v = values(a)
        assert len(v) == min(n, 8)  # k stops at 8
        assert v[0] == pytest.approx(a.mean())
        assert all(later <= earlier + 1e-12 for earlier, later in zip(v, v[1:]))


def test_several_training_seeds_are_averaged_per_seed_not_pooled():
    """One item, seed 0 solves all 4 rollouts, seed 1 none: pass^2 is the mean of the seeds' 1 and
    0, not pooled rollouts' C(4, 2) / C(8, 2) = 6/28."""
    a = outcome_array([[4], [0]], 4)
    assert values(a)[1] == pytest.approx(0.5)
    assert values(a)[1] != pytest.approx(6 / 28)
    rng = np.random.default_rng(3)
    a = (rng.random((3, 12, 5)) < 0.6).astype(float)
    per_seed = np.mean([values(a[s : s + 1]) for s in range(3)], axis=0)
    assert values(a) == pytest.approx(per_seed.tolist())
    entries = pass_k(a)
    assert {(e["n_items"], e["n_rollouts"], e["n_seeds"]) for e in entries} == {(12, 5, 3)}


# -- pass^k: the interval --------------------------------------------------------------------------
def test_one_seed_one_rollout_gives_wilson_over_the_tasks():
    a = outcome_array([1] * 7 + [0] * 13, 1)
    (entry,) = pass_k(a)
    assert entry["value"] == pytest.approx(0.35) and entry["ci"] == pytest.approx(
        list(wilson(7, 20))
    )
    assert wilson_interval(7 / 20, 20) == pytest.approx(wilson(7, 20))
    zero = pass_k(outcome_array([0] * 20, 3))
    # not a [0, 0] interval
    assert all(e["value"] == 0 and e["ci"][0] == 0 and e["ci"][1] > 0.1 for e in zero)


def test_the_interval_over_items_covers_the_true_pass_k():
    """Items with success chances p ~ Beta(1, 1), 4 rollouts each: the true pass^k is E[p^k] = 1 /
    (k + 1). The 95% interval (items resampled) covers it in about 95% of 300 panels of 50 items."""
    rng = np.random.default_rng(7)
    hits, reps = np.zeros(4), 300
    for _ in range(reps):
        p = rng.random(50)
        a = (rng.random((1, 50, 4)) < p[None, :, None]).astype(float)
        hits += [e["ci"][0] <= 1 / (e["k"] + 1) <= e["ci"][1] for e in pass_k(a)]
    assert (hits / reps >= 0.9).all() and (hits / reps <= 0.99).all(), hits / reps


# -- pass^k: the table and metrics -----------------------------------------------------------------
def task_rows(per_model: dict[str, list], n: int, extra: dict | None = None) -> pd.DataFrame:
    """Task-panel rows: per model a list of successes per item (or per seed a list of them), n
    rollouts each."""
    rows = []
    for name, successes in per_model.items():
        model = BASE if name == "base" else EvalModel(name, "cell", "x", "Q1", "demo")
        by_seed = successes if isinstance(successes[0], list) else [successes]
        for seed, items in enumerate(by_seed):
            for i, c in enumerate(items):
                rows += [
                    {
                        **model.columns,
                        "seed": seed,
                        "panel": "task",
                        "item": f"t{i}",
                        "rollout": r,
                        "eval_quadrant": "",
                        "success": r < c,
                        "n_steps": 3,
                        "looped": False,
                        "hit_max_steps": r >= c,
                        **(extra or {}),
                    }
                    for r in range(n)
                ]
    return pd.DataFrame(rows)


def test_pass_k_table_per_model_with_n_and_intervals():
    rows = task_rows({"base": [4, 2, 0, 1], "Q1-demo": [[4, 4, 0, 1], [4, 2, 2, 1]]}, 4)
    table = pass_k_results(rows)
    assert list(table.columns) == [
        "model",
        "kind",
        "train_quadrant",
        "format",
        "k",
        "value",
        "ci_low",
        "ci_high",
        "n_items",
        "n_rollouts",
        "n_seeds",
    ]
    base = table[table.model == "base"].set_index("k")
    assert base.value.tolist() == pytest.approx([7 / 16, (1 + 1 / 6) / 4, 1 / 4, 1 / 4], abs=1e-6)
    assert (base.n_items == 4).all() and (base.n_rollouts == 4).all() and (base.n_seeds == 1).all()
    assert ((table.ci_low <= table.value) & (table.value <= table.ci_high)).all()
    cell = table[table.model == "Q1-demo"].set_index("k")
    assert cell.n_seeds.iloc[0] == 2
    # seed 0: (1 + 1 + 0 + 0) / 4 = 1/2 at k = 2; seed 1: (1 + 1/6 + 1/6 + 0) / 4 = 1/3
    assert cell.value[2] == pytest.approx((0.5 + 1 / 3) / 2, abs=1e-6)
    overall = overall_task_results(rows).set_index("model")
    assert table[table.k == 1].set_index("model").value.to_dict() == pytest.approx(
        overall.success.to_dict()
    )


def test_one_rollout_gives_pass_1_only_and_says_what_higher_k_needs():
    rows = task_rows({"base": [1, 0, 1, 0, 0], "Q1-demo": [1, 1, 1, 0, 0]}, 1)
    table = pass_k_results(rows)
    assert set(table.k) == {1} and len(table) == 2
    metrics = headline(
        tables(rows),
        {
            "end_to_end_gain": {"chosen_model": "Q1-demo"},
            "transfer_diagonal": {},
            "supervision_differentiation": {},
            "retention": {},
        },
    )
    summary = metrics["pass_k"]
    assert summary["max_k"] == 1 and summary["n_rollouts"] == 1 and summary["n_items"] == 5
    assert set(summary["models"]) == {"base", "Q1-demo"}
    assert summary["models"]["Q1-demo"]["pass^1"]["value"] == pytest.approx(0.6)
    assert summary["models"]["base"]["pass^1"]["ci"] == pytest.approx(list(wilson(2, 5)), abs=1e-6)
    assert "evaluate.n_rollouts >= k" in summary["note"]


@pytest.mark.heavy
def test_metrics_carry_pass_k_of_the_base_and_the_chosen_model():
    rng = np.random.default_rng(1)
    per_model = {
        "base": rng.integers(0, 5, 12).tolist(),
        "Q1-demo": rng.integers(0, 5, 12).tolist(),
        "Q2-demo": rng.integers(0, 5, 12).tolist(),
    }
    rows = task_rows(per_model, 4)
    rows = pd.concat([rows, rows.assign(panel="retention")], ignore_index=True)
    results = tables(rows)
    metrics = headline(results, phase3_gates(rows, GateParams.defaults(n_resamples=99), seed=0))
    chosen = metrics["chosen_model"]
    assert chosen in ("Q1-demo", "Q2-demo")
    summary = metrics["pass_k"]
    assert set(summary["models"]) == {"base", chosen} and summary["max_k"] == 4
    for model in ("base", chosen):
        expected = values(outcome_array(per_model[model], 4))
        got = [summary["models"][model][f"pass^{k}"]["value"] for k in range(1, 5)]
        assert got == pytest.approx(expected, abs=1e-6)
    json.dumps(metrics)  # JSON-ready


# -- parse failures --------------------------------------------------------------------------------
def test_clustered_rate_is_wilson_unless_failures_cluster_in_episodes():
    even = clustered_rate([1] * 10, [5] * 10)  # one failure in each episode: no clustering
    assert even["rate"] == 0.2 and even["ci"] == pytest.approx(list(wilson(10, 50)), abs=1e-6)
    lumped = clustered_rate([5, 5] + [0] * 8, [5] * 10)  # the same 10 failures in 2 of 10 episodes
    assert lumped["rate"] == 0.2 and lumped["design_effect"] > 4
    assert lumped["ci"][1] - lumped["ci"][0] > 1.5 * (even["ci"][1] - even["ci"][0])
    # nothing to estimate a clustering from: Wilson on the replies
    none = clustered_rate([0] * 10, [5] * 10)
    assert none["rate"] == 0 and none["ci"] == pytest.approx(list(wilson(0, 50)), abs=1e-6)
    assert clustered_rate([], [])["rate"] is None


def episode(eid, parse_oks, success=False, replies=()):
    """Steps that parsed where `parse_oks` is true; the failed ones keep the next of `replies`
    (default: text with no action form)."""
    replies = iter(replies)
    steps = [
        Step(
            obs="o",
            valid_actions=["a"],
            action="a" if ok else None,
            parse_ok=ok,
            state_hash=f"h{i}",
            **({} if ok else {"reply": next(replies, "hmm, not sure")}),
        )
        for i, ok in enumerate(parse_oks)
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
    )


def test_episode_rows_count_replies_and_parse_failures():
    eps = [
        episode("task|GoToLocal-7|0", [True, False, False, True], replies=["click[b]", "hmm"]),
        episode("task|GoToLocal-8|0", [True] * 3),
        episode("task|GoToLocal-9|0", [False]),
    ]
    rows = pd.DataFrame(episode_rows(BASE, eps, {}, {"GoToLocal": 8}, "generate"))
    assert rows.n_parse_failures.tolist() == [2, 0, 1] and rows.n_replies.tolist() == [4, 3, 1]
    # click[b] is well formed, it just names no valid action
    assert rows.n_malformed.tolist() == [1, 0, 1]
    assert set(rows.action_mode) == {"generate"}
    row = overall_task_results(rows).iloc[0]
    assert (row.n_replies, row.parse_failures, row.parse_failure_rate, row.action_mode) == (
        8,
        3,
        0.375,
        "generate",
    )
    expected = clustered_rate([2, 0, 1], [4, 3, 1])["ci"]
    assert [row.parse_failure_ci_low, row.parse_failure_ci_high] == pytest.approx(expected)
    assert (row.malformed, row.malformed_rate) == (2, 0.25)
    expected = clustered_rate([1, 0, 1], [4, 3, 1])["ci"]
    assert [row.malformed_ci_low, row.malformed_ci_high] == pytest.approx(expected)
    (summary,) = parse_failure_summary(overall_task_results(rows))["models"].values()
    assert summary["malformed"] == {
        "rate": 0.25,
        "count": 2,
        "ci": pytest.approx(expected, abs=1e-6),
    }
    assert list(overall_task_results(rows).columns[-len(PARSE_COLUMNS) :]) == PARSE_COLUMNS


def test_phase0_metrics_split_off_the_malformed_replies():
    from stages.rollouts import summarise

    eps = [
        episode("ep0", [True, False, False], replies=["click[b]", "hmm"]),
        episode("ep1", [False], success=True),
    ]
    m = summarise(eps, "generate")
    assert (m["n_replies"], m["n_parse_failures"], m["n_malformed"]) == (4, 3, 2)
    assert (m["parse_failure_rate"], m["malformed_rate"], m["success_rate"]) == (0.75, 0.5, 0.5)


class FixedReply:
    """A generate-mode test double: every reply is the same text."""

    name = "fixed"

    def __init__(self, reply):
        self.reply = reply

    def generate(self, messages, temperature=0.0, seed=0, **_):
        return [self.reply] * len(messages)

    def score(self, *a):
        raise AssertionError("generate mode must not score")


def tiny_plan(mode: str) -> dict:
    params = Params.defaults(
        env={"levels": ["GoToObj"], "max_steps": 5},
        rollouts={"action_mode": mode},
        evaluate={"n_tasks": 3, "n_snapshots_per_quadrant": 1, "retention_max": 1},
    )
    return evaluation_plan(params, [], [{"task_id": "GoToObj-3", "level": "GoToObj", "seed": 3}])


@pytest.mark.heavy
def test_evaluate_honours_the_action_mode_and_records_parse_failures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = tiny_plan("generate")
    assert plan["engine_kwargs"]["action_mode"] == "generate"
    assert tiny_plan("score")["engine_kwargs"]["action_mode"] == "score"
    noise = evaluate_models(
        FixedReply("hmm, not sure"), [BASE], scratch=ScratchLog("pk", {"r": 1}), **plan
    )
    assert (noise.n_parse_failures == noise.n_replies).all() and (noise.n_replies == 5).all()
    assert set(noise.action_mode) == {"generate"} and not noise.success.any()
    fine = evaluate_models(
        FixedReply("go forward"), [BASE], scratch=ScratchLog("pk", {"r": 2}), **plan
    )
    assert (fine.n_parse_failures == 0).all() and (fine.n_replies > 0).all()
    overall = tables(noise)["overall_task_results"].iloc[0]
    assert (
        overall.parse_failure_rate == 1
        and overall.n_replies == 15
        and overall.action_mode == "generate"
    )
    metrics = headline(
        tables(noise), phase3_gates(noise, GateParams.defaults(n_resamples=99), seed=0)
    )
    assert metrics["parse_failures"]["action_mode"] == "generate"
    assert metrics["parse_failures"]["models"]["base"]["rate"] == 1
    # "hmm, not sure": no form
    assert metrics["parse_failures"]["models"]["base"]["malformed"]["rate"] == 1
    calls = evaluate_models(
        FixedReply("click[nothing here]"), [BASE], scratch=ScratchLog("pk", {"r": 3}), **plan
    )
    assert (calls.n_parse_failures == calls.n_replies).all() and (calls.n_malformed == 0).all()


def test_rows_cached_before_parse_failures_were_counted_still_make_the_tables(
    tmp_path, monkeypatch
):
    """A scratch log (or an episodes.csv) from before these columns: no crash, the parse columns
    empty for the model whose rows lack them, numbers for the others."""
    monkeypatch.chdir(tmp_path)
    plan = tiny_plan("generate")
    scratch = ScratchLog("pk-old", {"r": 1})
    new = evaluate_models(
        FixedReply("go forward"), [BASE], scratch=ScratchLog("pk-new", {"r": 1}), **plan
    )
    old = [
        {
            k: v
            for k, v in row.items()
            if k not in ("action_mode", "n_replies", "n_parse_failures", "n_malformed")
        }
        for row in new.to_dict("records")
    ]
    scratch.append({"model": BASE.key, "rows": old})
    # read back, not rerun
    rows = evaluate_models(FixedReply("unused"), [BASE], scratch=scratch, **plan)
    results = tables(rows)
    overall = results["overall_task_results"].iloc[0]
    assert pd.isna(overall.parse_failure_rate) and pd.isna(overall.action_mode)
    assert len(results["pass_k"]) == 1
    metrics = headline(results, phase3_gates(rows, GateParams.defaults(n_resamples=99), seed=0))
    assert metrics["parse_failures"]["models"] == {}
    mixed = pd.concat(
        [rows, new.assign(model="Q1-demo", kind="cell", train_quadrant="Q1", format="demo")]
    )
    rates = parse_failure_rates(mixed[mixed.panel == "task"]).set_index("model")
    assert pd.isna(rates.parse_failure_rate["base"]) and rates.parse_failure_rate["Q1-demo"] == 0
    unsplit = new.drop(columns="n_malformed")  # counted failures, but from before they were split
    rates = parse_failure_rates(unsplit[unsplit.panel == "task"]).iloc[0]
    assert rates.parse_failure_rate == 0 and pd.isna(rates.malformed_rate)


# -- the report ------------------------------------------------------------------------------------
def write_phase3(root, rows):
    results = tables(rows)
    for name in ("overall_task_results", "pass_k"):
        results[name].to_csv(root / f"reports/phase3/{name}.csv", index=False)
    return results


def test_report_tables_read_pass_k_and_parse_failures(tmp_path):
    write_repo(tmp_path, phases=(3,), n_per_quadrant=4)
    rows = task_rows(
        {"base": [4, 2, 0, 1], "Q1-demo": [4, 4, 0, 1]},
        4,
        extra={"action_mode": "score", "n_replies": 3, "n_parse_failures": 0},
    )
    write_phase3(tmp_path, rows)
    (tmp_path / "reports/phase0").mkdir(parents=True)
    (tmp_path / "reports/phase0/metrics.json").write_text(
        json.dumps(
            {
                "n_episodes": 200,
                "success_rate": 0.4,
                "mean_steps": 10.5,
                "parse_failure_rate": 0.01,
                "n_replies": 2100,
                "n_parse_failures": 21,
                "n_malformed": 5,
                "malformed_rate": 0.0024,
            }
        )
    )
    inputs = load_inputs(tmp_path)
    wide = paper_tables.pass_k_table(inputs.pass_k, inputs.overall).set_index("model")
    assert [c for c in wide if re.fullmatch(r"pass\^\d", c)] == [
        "pass^1",
        "pass^2",
        "pass^3",
        "pass^4",
    ]
    assert wide.loc["base", ["pass^1", "pass^2", "pass^3", "pass^4"]].tolist() == pytest.approx(
        [7 / 16, (1 + 1 / 6) / 4, 1 / 4, 1 / 4], abs=1e-6
    )
    assert (wide["pass^2_ci_low"] <= wide["pass^2"]).all() and (wide.n_rollouts == 4).all()
    caption = paper_tables.pass_k_caption(inputs.pass_k, inputs.overall, inputs.phase3_metrics)
    assert (
        "pass^1 equals the mean success" in caption
        and "4 rollouts per task: pass^1 .. pass^4" in caption
    )
    assert "missing" not in caption

    parse = paper_tables.parse_failures(
        inputs.phase0_metrics, inputs.overall, "score", inputs.phase3_metrics
    )
    phase0 = parse.iloc[0]
    assert (phase0.stage, phase0.action_mode, phase0.n_replies, phase0.parse_failures) == (
        "rollouts (phase 0)",
        "score (params)",
        2100,
        21,
    )
    assert [phase0.ci_low, phase0.ci_high] == pytest.approx(list(wilson(21, 2100)), abs=1e-6)
    assert (phase0.malformed, phase0.malformed_rate) == (5, pytest.approx(5 / 2100, abs=1e-6))
    assert [phase0.malformed_ci_low, phase0.malformed_ci_high] == pytest.approx(
        list(wilson(5, 2100)), abs=1e-6
    )
    # score mode: no model failed, so phase 3 is one row, not a row of zeros per model
    (phase3,) = parse[parse.stage == "evaluate (phase 3)"].itertuples()
    assert phase3.model == "2 models, none failed" and phase3.action_mode == "score"
    assert (phase3.parse_failures, phase3.parse_failure_rate, phase3.n_replies) == (0, 0, 96)
    assert phase3.ci_high == pytest.approx(wilson(0, 48)[1], abs=1e-6)
    assert "base, Q1-demo" in phase3.note


@pytest.mark.heavy
def test_the_page_shows_pass_k_and_parse_failures_and_what_one_rollout_allows(tmp_path):
    write_repo(tmp_path, phases=(3,), n_per_quadrant=4)
    rows = task_rows(
        {"base": [1, 0, 1, 0], "Q1-demo": [1, 1, 1, 0]},
        1,
        extra={"action_mode": "generate", "n_replies": 4, "n_parse_failures": 1, "n_malformed": 1},
    )
    write_phase3(tmp_path, rows)
    report = build_report(Params.defaults(), tmp_path)
    sections = {s.key: s for s in report.sections}
    assert not sections["h5"].not_run and not sections["parsing"].not_run
    ((caption, frame, _),) = [t for t in sections["h5"].tables if t[0].startswith("Tab H5.2")]
    assert [c for c in frame if c.startswith("pass^")] == [
        "pass^1",
        "pass^1_ci_low",
        "pass^1_ci_high",
    ]
    assert (
        "only pass^1 exists: pass^k for k &gt; 1 needs evaluate.n_rollouts &gt;= k"
        in report.detail.read_text()
    )
    assert "pass^1 equals the mean success" in caption
    page = report.detail.read_text()
    assert "Parse failures per stage" in page and "<th>pass^1</th>" in page
    assert "reports/phase0/metrics.json missing: phase 0 not run" in page  # its row says so
    parse = pd.read_csv(tmp_path / "reports/tables/parse_failures.csv")
    phase3 = parse[parse.stage == "evaluate (phase 3)"]
    assert phase3.model.tolist() == ["base", "Q1-demo"] and phase3.parse_failure_rate.tolist() == [
        0.25,
        0.25,
    ]
    assert phase3.malformed_rate.tolist() == [0.25, 0.25] and "<th>malformed_rate</th>" in page
    assert set(parse.action_mode.dropna()) == {"generate"}


@pytest.mark.heavy
def test_the_page_shows_phase0_unparseable_replies_verbatim_and_escaped(tmp_path):
    write_repo(tmp_path, phases=(3,), n_per_quadrant=4)
    write_phase3(tmp_path, task_rows({"base": [1, 0, 1, 0]}, 1))
    long_reply = (
        '<tool_call>{"name": "cancel_pending_order", "arguments": {"order_id": "#W'
        + "7" * 400
        + '"}}'
    )
    examples = [
        {"episode_id": "ep000003", "step": 2, "n_valid_actions": 9, "reply": "hmm, not sure"},
        {"episode_id": "ep000007", "step": 0, "n_valid_actions": 4, "reply": long_reply},
    ]
    (tmp_path / "reports/phase0").mkdir(parents=True)
    (tmp_path / "reports/phase0/parse_failures.json").write_text(
        json.dumps({"n_parse_failures": 2, "examples": examples})
    )
    report = build_report(Params.defaults(), tmp_path)
    ((caption, frame, _),) = [
        t
        for t in next(s for s in report.sections if s.key == "parsing").tables
        if t[0].startswith("Tab P.2")
    ]
    assert frame.episode_id.tolist() == ["ep000003", "ep000007"] and frame.step.tolist() == [2, 0]
    assert frame.reply[0] == "hmm, not sure" and frame.reply[1] == long_reply[:300] + " ..."
    page = report.detail.read_text()
    # shown as text, never as markup
    assert "&lt;tool_call&gt;" in page and "<tool_call>" not in page

    (tmp_path / "reports/phase0/parse_failures.json").write_text(
        json.dumps({"n_parse_failures": 0, "examples": []})
    )
    report = build_report(Params.defaults(), tmp_path)
    # no failures: Tab P.1's zero says it, no empty table
    assert "Tab P.2" not in report.detail.read_text()


def test_older_outputs_degrade_to_what_they_hold():
    """No pass_k.csv: pass^1 from the overall table's success, and the caption says so; no parse
    columns: a row saying they were not recorded; nothing at all: no table."""
    overall = pd.DataFrame(
        {
            "model": ["base", "Q1-demo"],
            "kind": ["base", "cell"],
            "n_tasks": [10, 10],
            "success": [0.3, 0.5],
            "ci_low": [0.1, 0.2],
            "ci_high": [0.6, 0.8],
        }
    )
    wide = paper_tables.pass_k_table(None, overall)
    assert wide["pass^1"].tolist() == [0.3, 0.5] and wide["pass^1_ci_high"].tolist() == [0.6, 0.8]
    assert "pass_k.csv is missing" in paper_tables.pass_k_caption(None, overall, {"n_rollouts": 1})
    parse = paper_tables.parse_failures(None, overall)
    assert parse.note.tolist()[1].startswith("not recorded")
    assert (
        paper_tables.parse_failures(None, None) is None
        and paper_tables.pass_k_table(None, None) is None
    )
    only_phase0 = paper_tables.parse_failures({"parse_failure_rate": 0.0}, None)
    assert only_phase0.note.tolist()[0].startswith(
        "reports/phase0/metrics.json has no reply counts"
    )
    assert (
        only_phase0.note.tolist()[1]
        == "reports/phase3/overall_task_results.csv missing: phase 3 not run"
    )
    # no counts: no interval
    assert only_phase0.n_replies.isna().all() and only_phase0.ci_low.isna().all()
    unsplit = paper_tables.parse_failures(
        {"parse_failure_rate": 0.01, "n_replies": 100, "n_parse_failures": 1}, None
    ).iloc[0]
    assert (
        unsplit.ci_high > 0.01
        and pd.isna(unsplit.malformed_rate)
        and "no n_malformed" in unsplit.note
    )
