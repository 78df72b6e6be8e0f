"""Free-text replies in the retail domain (issue 31 item 3): `respond` with any text (an open
action), required outputs checked as tau-bench checks them, the expert saying them, both tool-call
reply forms, and `retail.parse_failure`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from teachable.core.params import Params, RetailParams, load_params
from teachable.envs.retail import RetailEnv, configure_retail
from teachable.envs.retail.env import SAY, answer_text
from teachable.envs.retail.tasks import outputs_said
from teachable.envs.retail.user import ASK_MORE, UNCLEAR
from teachable.envs.toolcall import (
    fills_open_call,
    format_call,
    is_open_call,
    qwen_tool_call,
    tool_call_json,
)
from teachable.policy.candidates import expand_candidates, fits_open, has_open, is_open
from teachable.policy.parsing import parse_action, without_control_tokens


def say(text: str) -> str:
    return format_call("respond", {"content": text})


def test_free_text_respond_is_valid_and_reaches_the_user():
    env = RetailEnv("cancel")
    env.reset(0)
    assert SAY in env.valid_actions() and is_open(SAY) and has_open(env.valid_actions())
    before = env.state_hash()
    obs, reward, terminated, truncated, info = env.step(say("Please hold, I am checking."))
    assert info["valid"] and not terminated and env.said == ["Please hold, I am checking."]
    assert obs.startswith(f"User: {UNCLEAR}") and env.state_hash() != before
    rng = __import__("random").Random(0)
    assert all(env.random_action(rng) != SAY for _ in range(50))  # the template is never an action


def test_outputs_said_as_tau_bench_checks_them():
    # tau-bench's calculate_reward: output.lower() in content.lower().replace(",", "")
    assert outputs_said(("1093.34", "Glass"), ["The total is $1,093.34.", "It is made of GLASS"])
    assert not outputs_said(("1093.34",), ["The total is $1093.3"])
    # the content loses its commas, the output keeps them
    assert not outputs_said(("a,b",), ["a,b"])


def _with_outputs(env: RetailEnv, outputs: tuple[str, ...]) -> None:
    env.task = dataclasses.replace(env.task, outputs=outputs)


def play_expert(env: RetailEnv) -> float:
    reward, done = 0.0, False
    while not done:
        action = env.expert_action()
        assert env._match(action) == action, action
        _, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    return reward


def test_expert_says_required_outputs_in_free_text_and_scores_1():
    env = RetailEnv("cancel")
    env.reset(0)
    outputs = ("#W1234567 tracking 123456789012", "polyester")
    _with_outputs(env, outputs)
    assert play_expert(env) == 1.0
    assert say(answer_text(list(outputs))) in env.actions
    assert env.actions[-1] == say(ASK_MORE)  # then asks what else, and the user leaves


def test_a_free_text_message_saying_the_outputs_scores_1_and_silence_scores_0():
    for tell in (True, False):
        env = RetailEnv("cancel")
        env.reset(0)
        _with_outputs(env, ("42",))
        done, reward = False, 0.0
        while not done:
            action = env.expert_action()
            if action.startswith('respond(content="Here is'):
                action = say("There are 42 of them." if tell else "I cannot tell you that.")
                env._unsaid = lambda: []  # the expert moves on whatever was said
            _, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        assert reward == (1.0 if tell else 0.0)


def test_both_reply_forms_parse_to_the_same_free_text_action():
    env = RetailEnv("cancel")
    env.reset(0)
    valid = env.valid_actions()
    action = say('Your tracking id is "123", price $1,093.34.')
    openai, qwen = tool_call_json(action), qwen_tool_call(action)
    assert parse_action(openai, valid) == parse_action(qwen + "<|im_end|>", valid) == action
    bare = (
        '{"name": "respond", "arguments": {"content": '
        '"Your tracking id is \\"123\\", price $1,093.34."}}'
    )
    assert parse_action(bare, valid) == action  # tau-bench's chat-react form
    listed = say(ASK_MORE)  # a listed message is itself, in both forms
    assert (
        parse_action(tool_call_json(listed), valid)
        == parse_action(qwen_tool_call(listed), valid)
        == listed
    )
    for unfilled in (say("..."), say("  "), format_call("respond", {"content": "hi", "to": "x"})):
        assert parse_action(tool_call_json(unfilled), valid) is None
    # no action form: a parse failure
    assert parse_action("Sure, I can help with that.", valid) is None


def test_open_call_helpers_and_candidates():
    assert is_open_call(SAY) and not is_open_call(say("hi")) and not is_open_call("search[...]")
    assert fills_open_call(("respond", {"content": "hi"}), SAY) == say("hi")
    assert fills_open_call(("respond", {"content": "..."}), SAY) is None
    valid = [say(ASK_MORE), SAY, format_call("get_user_details", {"user_id": "u"})]
    assert fits_open(say("hello"), valid) and not fits_open(say("hello"), valid[:1])
    assert not fits_open(format_call("get_user_details", {"user_id": "v"}), valid)
    assert expand_candidates(
        valid, [say("hello"), None, say(ASK_MORE), say("hello"), "search[x]"]
    ) == [say(ASK_MORE), valid[2], say("hello")]


def test_openai_teacher_schema_accepts_free_messages():
    from pydantic import ValidationError

    from teachable.teacher.openai_teacher import reply_model

    model = reply_model([say(ASK_MORE), SAY])
    for ok in (say(ASK_MORE), say('Tracking "1", $1,093.34')):
        model(suggested_action=ok, diagnosis="", hint="", contrast="")
    for bad in (say(""), say(" "), "hello"):
        with pytest.raises(ValidationError):
            model(suggested_action=bad, diagnosis="", hint="", contrast="")


# -- retail.parse_failure --------------------------------------------------------------------------
def test_parse_failure_param_default_and_validation():
    assert (
        RetailParams.defaults().parse_failure
        == "count"
        == load_params("params.yaml").retail.parse_failure
    )
    assert Params.defaults().retail.parse_failure == "count"
    with pytest.raises(ValueError):
        RetailParams.defaults(parse_failure="ignore")
    with pytest.raises(ValueError):
        configure_retail(parse_failure="ignore")


@pytest.fixture
def respond_mode():
    configure_retail(parse_failure="respond")
    yield
    configure_retail(parse_failure="count")


def test_unparsed_action_count_and_respond(respond_mode):
    env = RetailEnv("cancel")
    env.reset(0)
    assert env.unparsed_action("Sure, I can help.") == say("Sure, I can help.")
    assert env.unparsed_action("   ") is None
    configure_retail(parse_failure="count")
    assert env.unparsed_action("Sure, I can help.") is None
    assert without_control_tokens("<think></think>Hello there.<|im_end|>") == "Hello there."


class _Talker:
    """A generate-mode policy double that always writes plain text (no tool call)."""

    def generate(self, messages, max_new_tokens, temperature, seed):
        return ["Let me check that for you.<|im_end|>"] * len(messages)


@pytest.mark.parametrize("mode", ["count", "respond"])
def test_engine_records_the_failure_and_respond_sends_the_text(mode):
    from teachable.rollout.engine import RolloutEngine, RolloutSpec

    configure_retail(parse_failure=mode)
    try:
        engine = RolloutEngine(
            _Talker(), env_name="retail", max_steps=3, temperature=0.0, action_mode="generate"
        )
        spec = RolloutSpec(episode_id="e0", level="cancel", seed=0)
        episode = engine.run([spec])[0]
    finally:
        configure_retail(parse_failure="count")
    steps = episode.steps
    assert len(steps) == 3 and all(not s.parse_ok for s in steps)
    assert all(s.reply == "Let me check that for you.<|im_end|>" for s in steps)
    expected = say("Let me check that for you.") if mode == "respond" else None
    assert all(s.action == expected for s in steps)
    if mode == "respond":
        assert all("Sorry, I don't follow." in s.obs for s in steps[1:])


class _Scorer(_Talker):
    """A score-mode double: its sampled message is a free-text respond; it scores every candidate
    equally but puts most mass on free text."""

    seen: list[list[str]] = []

    def generate(self, messages, max_new_tokens, temperature, seed):
        return [tool_call_json(say("One moment please."))] * len(messages)

    def score(self, messages, candidates):
        from teachable.policy.hf import Scores

        self.seen.extend(candidates)
        return [
            Scores(list(c), np.array([0.0 if a == say("One moment please.") else -5.0 for a in c]))
            for c in candidates
        ]


def test_score_mode_candidates_are_the_listed_calls_plus_sampled_messages():
    from teachable.rollout.engine import RolloutEngine, RolloutSpec

    policy = _Scorer()
    engine = RolloutEngine(
        policy, env_name="retail", max_steps=2, temperature=0.0, action_mode="score"
    )
    episode = engine.run([RolloutSpec(episode_id="e0", level="cancel", seed=0)])[0]
    first = policy.seen[0]
    env = RetailEnv("cancel")
    env.reset(0)
    listed = [a for a in env.valid_actions() if a != SAY]
    assert (
        SAY not in first and first[: len(listed)] == listed and say("One moment please.") in first
    )
    assert episode.steps[0].action == say("One moment please.") and episode.steps[0].parse_ok
    assert set(episode.steps[0].action_probs) == set(first)


class _Miscopier(_Talker):
    """A generate-mode double whose reply is a well-formed tool call with a miscopied email (names
    no valid action)."""

    def generate(self, messages, max_new_tokens, temperature, seed):
        return [
            tool_call_json(format_call("find_user_id_by_email", {"email": "nobody@example.com"}))
        ] * len(messages)


def test_respond_sends_only_malformed_replies_to_the_user():
    """As tau-bench: only a reply with no tool call goes to the user as a message; a well-formed
    call that names no valid action (its JSON) is a parse failure under either rule, never a message
    (it once was, under respond)."""
    from teachable.rollout.engine import RolloutEngine, RolloutSpec

    configure_retail(parse_failure="respond")
    try:
        engine = RolloutEngine(
            _Miscopier(), env_name="retail", max_steps=3, temperature=0.0, action_mode="generate"
        )
        episode = engine.run([RolloutSpec(episode_id="e0", level="cancel", seed=0)])[0]
    finally:
        configure_retail(parse_failure="count")
    assert all(not s.parse_ok and s.action is None for s in episode.steps)
    assert not any("Sorry, I don't follow." in s.obs for s in episode.steps)
