import dataclasses

import numpy as np
import pytest

from teachable.core.records import Episode
from teachable.envs import make_env
from teachable.envs.babyai import ACTIONS
from teachable.policy.hf import Scores
from teachable.rollout.engine import RolloutEngine, RolloutSpec


class RecordingPolicy:
    """A test double: a fixed preference for one action; remembers every prompt it was shown."""

    name = "recording"

    def __init__(self, favourite="turn left"):
        self.favourite = favourite
        self.prompts = []
        self.calls = 0

    def score(self, messages, candidates):
        self.calls += 1
        self.prompts += [m[-1]["content"] for m in messages]
        return [
            Scores(c, np.array([0.0 if a == self.favourite else -1.0 for a in c]))
            for c in candidates
        ]


def specs(n, **kw):
    return [RolloutSpec(f"e{i}", "GoToLocal", 100 + i, sample_seed=i, **kw) for i in range(n)]


def test_forced_first_action_is_taken_then_the_policy_acts():
    engine = RolloutEngine(RecordingPolicy("turn right"), max_steps=5, temperature=0)
    (ep,) = engine.run(specs(1, forced_action="go forward"))
    assert [s.action for s in ep.steps] == ["go forward"] + ["turn right"] * 4


def test_patch_is_in_the_prompt_at_the_first_step_only():
    policy = RecordingPolicy()
    RolloutEngine(policy, max_steps=3, temperature=0).run(specs(1, patch="Teacher: hello there."))
    assert ["Teacher: hello there." in p for p in policy.prompts] == [True, False, False]


def test_one_policy_call_per_step_for_all_live_episodes():
    policy = RecordingPolicy()
    RolloutEngine(policy, max_steps=4, batch_size=64).run(specs(10))
    assert policy.calls == 4


@pytest.mark.heavy
def test_same_seeds_give_identical_records_whatever_the_batch_size(tiny_policy):
    run = lambda batch: RolloutEngine(
        tiny_policy, max_steps=6, temperature=1.0, batch_size=batch
    ).run(specs(6))
    a, b, c = run(6), run(6), run(2)
    assert [e.model_dump() for e in a] == [e.model_dump() for e in b]
    assert [[s.action for s in e.steps] for e in a] == [[s.action for s in e.steps] for e in c]


def test_rollout_from_a_stored_state_continues_from_it():
    env = make_env("babyai", "GoToLocal")
    env.reset(100)
    for action in ["turn left", "go forward", "turn right"]:
        env.step(action)
    engine = RolloutEngine(RecordingPolicy(), max_steps=6, temperature=0)
    spec = RolloutSpec(
        "s",
        "GoToLocal",
        100,
        start_actions=tuple(env.state()["actions"]),
        start_hash=env.state_hash(),
    )
    # the second one is a fork
    a, b = engine.run([spec, dataclasses.replace(spec, episode_id="s2")])
    assert a.steps[0].state_hash == env.state_hash() == b.steps[0].state_hash
    assert a.n_steps == 3  # horizon 6 counts the 3 replayed actions


def test_expert_control_solves_the_task():
    episodes = RolloutEngine(None, max_steps=64).run(specs(5, control="expert"))
    assert all(ep.success and ep.policy == "expert" for ep in episodes)


def test_probabilities_are_recorded_for_every_valid_action():
    (ep,) = RolloutEngine(RecordingPolicy(), max_steps=2).run(specs(1))
    probs = ep.steps[0].action_probs
    assert list(probs) == ACTIONS and abs(sum(probs.values()) - 1) < 1e-5


class ChattyPolicy:
    """A test double for generate mode: replies alternate between a parseable action and noise."""

    name = "chatty"

    def generate(self, messages, max_new_tokens=32, temperature=0.0, seed=0):
        self.n = getattr(self, "n", 0) + 1
        return ["I will go forward." if self.n % 2 else "hmm, not sure" for _ in messages]


def test_generate_mode_counts_unparseable_replies_as_wasted_steps():
    (ep,) = RolloutEngine(ChattyPolicy(), max_steps=4, action_mode="generate").run(specs(1))
    assert [s.parse_ok for s in ep.steps] == [True, False, True, False]
    assert [s.action for s in ep.steps] == ["go forward", None, "go forward", None]
    assert ep.n_steps == 4
    # the unparseable replies are kept, verbatim, on their steps (and survive a JSONL round trip);
    # parsed ones not
    assert [getattr(s, "reply", None) for s in ep.steps] == [
        None,
        "hmm, not sure",
        None,
        "hmm, not sure",
    ]
    back = Episode.model_validate_json(ep.model_dump_json())
    assert back.steps[1].reply == "hmm, not sure" and "reply" not in back.steps[0].model_dump()


def test_generate_mode_with_a_real_model_reports_parse_failures(tiny_policy):
    (ep,) = RolloutEngine(tiny_policy, max_steps=2, action_mode="generate").run(specs(1))
    assert len(ep.steps) == 2 and all(s.action in ACTIONS or not s.parse_ok for s in ep.steps)


def test_a_greedy_loop_is_stopped_as_the_failure_it_would_be():
    looping = RolloutEngine(
        RecordingPolicy("turn left"), max_steps=30, temperature=0, stop_cycles=True
    )
    (ep,) = looping.run(specs(1))
    # four left turns face the start again; with the same last actions shown, the prompt repeats too
    assert ep.cycled and not ep.success and ep.n_steps < 10
    (full,) = RolloutEngine(RecordingPolicy("turn left"), max_steps=30, temperature=0).run(specs(1))
    assert not full.cycled and full.n_steps == 30


@pytest.mark.heavy
def test_stopping_cycles_changes_no_outcome(tiny_policy):
    run = lambda stop: RolloutEngine(
        tiny_policy, max_steps=20, temperature=0, stop_cycles=stop
    ).run(specs(12))
    stopped, full = run(True), run(False)
    assert [e.success for e in stopped] == [e.success for e in full]
    assert sum(e.n_steps for e in stopped) < sum(e.n_steps for e in full)


def test_stopping_cycles_needs_greedy_decoding():
    import pytest

    with pytest.raises(ValueError, match="greedy"):
        RolloutEngine(RecordingPolicy(), temperature=1.0, stop_cycles=True)


@pytest.mark.heavy
def test_shared_runs_equal_separate_runs_for_arms_on_the_same_seeds(tiny_policy):
    """Arms from one stored state on shared sample seeds (student, forced, patched, expert), 12
    seeds each: running each distinct episode once gives exactly the outcomes of running every spec,
    in far fewer episodes."""
    env = make_env("babyai", "GoToLocal")
    env.reset(101)
    for action in ["turn left", "go forward"]:
        env.step(action)
    base = dict(
        level="GoToLocal",
        seed=101,
        start_actions=tuple(env.state()["actions"]),
        start_hash=env.state_hash(),
        horizon=6,
    )
    arms = {
        "student": {},
        "force": {"forced_action": "turn right"},
        "demo": {"patch": "Teacher: do 'go forward'."},
        "placebo": {"patch": "Teacher: stay calm."},
        "expert": {"control": "expert"},
    }
    specs = [
        RolloutSpec(f"{arm}|{i}", sample_seed=1000 + i, **base, **extra)
        for arm, extra in arms.items()
        for i in range(12)
    ]
    engine = RolloutEngine(
        tiny_policy, max_steps=32, temperature=1.0, batch_size=16, record_steps=False
    )
    separate, shared = engine.run(specs), engine.run_shared(specs)
    assert [e.model_dump() for e in shared] == [e.model_dump() for e in separate]
    # the horizon counts from the stored state
    assert {e.n_steps for e in separate} <= set(range(1, 7))


class CopyingPolicy:
    """A test double for generate mode: copies the longest listed tool call as `tool_calls` JSON,
    cut at the engine's token budget as a model's `generate` would cut it."""

    name = "copying"

    def __init__(self, tokenizer):
        self.tokenizer, self.budgets = tokenizer, []

    def generate(self, messages, max_new_tokens=32, temperature=0.0, seed=0):
        self.budgets.append(max_new_tokens)
        replies = []
        for m in messages:
            listed = [line for line in m[-1]["content"].splitlines() if line.startswith('{"name"')]
            reply = '{"tool_calls": [{"function": ' + max(listed, key=len) + "}]}"
            replies.append(
                self.tokenizer.decode(
                    self.tokenizer(reply, add_special_tokens=False).input_ids[:max_new_tokens]
                )
            )
        return replies


def test_generate_mode_gives_long_tool_calls_room(tiny_student_dir):
    """Retail's longest calls (a confirmation, an address change) take more tokens than the old
    fixed budget of 32; cut short, each counted as a parse failure."""
    from transformers import AutoTokenizer

    policy = CopyingPolicy(AutoTokenizer.from_pretrained(tiny_student_dir))
    levels = ["cancel", "return", "modify_address"] * 4
    specs_ = [RolloutSpec(f"r{i}", level, i, sample_seed=i) for i, level in enumerate(levels)]
    episodes = RolloutEngine(policy, "retail", max_steps=4, action_mode="generate").run(specs_)
    steps = [s for ep in episodes for s in ep.steps]
    assert len(steps) >= len(levels) and all(s.parse_ok for s in steps)
    assert max(policy.budgets) > 32
