"""The tool-call action notation and the two reply forms the parser accepts (OpenAI JSON, Qwen3
<tool_call>)."""

import json
import random

from teachable.envs.toolcall import (
    calls_in_reply,
    format_call,
    parse_call,
    qwen_tool_call,
    tool_call_json,
)
from teachable.core.records import Step
from teachable.policy.parsing import count_failures, is_malformed, parse_action
from teachable.policy.prompts import reply_text

CANCEL = format_call("cancel_pending_order", {"order_id": "#W2001", "reason": "no longer needed"})
RETURN = format_call(
    "return_delivered_order_items",
    {"order_id": "#W2002", "item_ids": ["111", "222"], "payment_method_id": "gift_card_1"},
)
ASK = format_call("respond", {"content": "Which order, please?"})
VALID = [CANCEL, RETURN, ASK]


def test_notation_round_trips_and_executes_nothing():
    for action in VALID:
        name, args = parse_call(action)
        assert format_call(name, args) == action
    assert parse_call('f(x=__import__("os"))') is None  # a call as a value is not a literal
    assert parse_call("go forward") is None
    assert parse_call('f("positional")') is None


def test_both_reply_forms_name_the_same_action():
    for action in VALID:
        assert parse_action(tool_call_json(action), VALID) == action
        assert parse_action("Sure.\n" + qwen_tool_call(action) + "<|im_end|>", VALID) == action
        # what the student is trained to write
        assert parse_action(reply_text(action), VALID) == action


def test_argument_order_and_the_bare_call_form_do_not_matter():
    args = {"reason": "no longer needed", "order_id": "#W2001"}
    reply = json.dumps(
        {
            "tool_calls": [
                {"function": {"name": "cancel_pending_order", "arguments": json.dumps(args)}}
            ]
        }
    )
    assert parse_action(reply, VALID) == CANCEL
    assert (
        parse_action(json.dumps({"name": "cancel_pending_order", "arguments": args}), VALID)
        == CANCEL
    )
    assert (
        parse_action('cancel_pending_order(reason="no longer needed", order_id="#W2001")', VALID)
        == CANCEL
    )


def test_calls_that_are_not_valid_actions_are_parse_failures():
    other_order = tool_call_json(
        format_call("cancel_pending_order", {"order_id": "#W9", "reason": "no longer needed"})
    )
    assert parse_action(other_order, VALID) is None
    assert (
        parse_action(
            '{"tool_calls": [{"function": {"name": "cancel_pending_order", "arguments": "{bad"}}]}',
            VALID,
        )
        is None
    )
    assert parse_action("<tool_call>not json</tool_call>", VALID) is None
    assert parse_action("I would cancel the order.", VALID) is None
    assert calls_in_reply("no call here") == []


def test_malformed_means_no_action_form_at_all_as_tau_bench_counts():
    """The split of parse failures: a well-formed call naming no valid action is a failure but not
    malformed."""
    other_order = tool_call_json(
        format_call("cancel_pending_order", {"order_id": "#W9", "reason": "no longer needed"})
    )
    well_formed = [
        other_order,
        qwen_tool_call(format_call("respond", {"content": "Refund: $1."})),
        'cancel_pending_order(order_id="#W9", reason="x")',
        "click[no such button]",
        "search[red shoes]",
        "<think></think>" + tool_call_json(CANCEL) + "<|im_end|>",
    ]
    malformed = [
        '{"tool_calls": [{"function": {"name": "cancel_pending_order", "arguments": "{bad"}}]}',
        '{"tool_calls": [{"function": {"name": "return_delivered_order_items", '
        '"arguments": "{\\"a\\": ',
        "<tool_call>not json</tool_call>",
        "I would cancel the order.",
        "hmm, not sure",
        "",
        "<|im_end|>",
    ]
    assert [is_malformed(r) for r in well_formed] == [False] * len(well_formed)
    assert [is_malformed(r) for r in malformed] == [True] * len(malformed)
    assert all(parse_action(r, VALID) is None for r in [*well_formed[:5], *malformed])


def test_failures_and_malformed_replies_are_counted_over_many_steps():
    """The one count phase 0 and phase 3 share: parsed steps never count, failed ones by whether
    their reply has a form; a failed step from before replies were kept counts as malformed (no form
    to check)."""
    other_order = tool_call_json(
        format_call("cancel_pending_order", {"order_id": "#W9", "reason": "no longer needed"})
    )
    parsed = [Step(obs="o", valid_actions=VALID, action=CANCEL) for _ in range(50)]
    well_formed = [
        Step(obs="o", valid_actions=VALID, action=None, parse_ok=False, reply=other_order)
        for _ in range(7)
    ]
    malformed = [
        Step(obs="o", valid_actions=VALID, action=None, parse_ok=False, reply="hmm")
        for _ in range(4)
    ]
    no_reply = [Step(obs="o", valid_actions=VALID, action=None, parse_ok=False)]
    steps = [*parsed, *([*well_formed, *malformed, *no_reply] * 5)]
    random.Random(0).shuffle(steps)
    assert count_failures(steps) == (5 * 12, 5 * (4 + 1))
    assert count_failures(parsed) == (0, 0)


def test_the_act_tool_still_names_a_plain_action():
    reply = json.dumps(
        {
            "tool_calls": [
                {"function": {"name": "act", "arguments": json.dumps({"action": "pick up"})}}
            ]
        }
    )
    assert parse_action(reply, ["pick up", "go forward"]) == "pick up"
    assert parse_action(reply_text("go forward"), ["pick up", "go forward"]) == "go forward"


def test_the_prompt_lists_each_call_as_the_line_its_reply_copies():
    """The reply is OpenAI's JSON; the prompt lists each valid call as that JSON's `function`
    object, so the reply is a listed line copied inside the wrapper (also token for token in the
    retail student's tokenizer, where the JSON's joints are whole tokens): what lets a small model
    learn to write ids it has seen once."""
    from teachable.envs.retail.env import JSON_WORDS
    from teachable.envs.toolcall import function_json
    from teachable.policy.prompts import build_messages
    from teachable.training.student.build import train_tokenizer

    listed = build_messages("Cancel my order.", "User: hi", VALID)[1]["content"].split("\n")
    for action in VALID:
        reply = tool_call_json(action)
        assert json.loads(reply)["tool_calls"][0]["function"] == json.loads(function_json(action))
        assert function_json(action) in listed and function_json(action) in reply
    assert sum(line in map(function_json, VALID) for line in listed) == len(VALID)

    tokenizer = train_tokenizer(
        listed * 20, 300, [*JSON_WORDS, "cancel_pending_order", "order_id", "#W2001", "#W2002"]
    )
    for action in VALID:
        # after `{"name": "`, which the reply's first token ends
        line = tokenizer(function_json(action)).input_ids[1:]
        reply = tokenizer(tool_call_json(action)).input_ids
        assert len(line) > 4 and reply[1 : 1 + len(line)] == line, action
    cancel = [tokenizer.decode([t]) for t in tokenizer(tool_call_json(CANCEL)).input_ids]
    assert (
        cancel[:5]
        == [
            '{"tool_calls": [{"function": {"name": "',
            "cancel_pending_order",
            '", "arguments": "{\\"',
            "order_id",
            '\\": \\"',
        ]
        and cancel[5] == "#W2001"
    )
