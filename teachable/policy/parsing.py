"""Free-text model replies -> one of the valid actions, or None (a parse failure, counted by the
caller).

Accepted forms, tried in order:
- a tool call, as OpenAI `tool_calls` JSON or Qwen3's `<tool_call>{...}</tool_call>`
  (`teachable.envs.toolcall`): in a tool-calling environment (valid actions in call notation) the
  call itself is the action, matched by name and arguments, or any call filling an open one
  (`respond(content="...")`: any message); elsewhere a call to `act` with `{"action": "..."}` (or a
  tool named after the action) names it;
- WebShop-style `search[...]` / `click[...]`;
- plain text naming a valid action.
Model control tokens such as `<|im_end|>` are stripped first (Qwen3's `<tool_call>` tags are kept).

A reply that names no valid action is a parse failure; `is_malformed` splits off the ones with no
action form at all, which is all tau-bench counts.
"""

from __future__ import annotations

import json
import re

from teachable.envs.toolcall import calls_in_reply, fills_open_call, is_open_call, parse_call

_CONTROL = re.compile(r"<\|[^|>]*\|>|</?think>")
_BRACKETED = re.compile(r"\b(search|click)\[[^\]]*\]", re.IGNORECASE)


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip().strip(".'\"`").split())


def _call_key(name: str, arguments: dict) -> str:
    return name + json.dumps(arguments, sort_keys=True, ensure_ascii=False)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _action_form(text: str) -> tuple[str, object] | None:
    """The action form a control-stripped reply takes and what it holds: ("call", (name, arguments))
    for a tool call (OpenAI JSON or `<tool_call>` with JSON arguments) or a call written in call
    notation on the first line, ("bracketed", "search[...]" / "click[...]"), or None (plain text, or
    no form at all)."""
    calls = calls_in_reply(text)
    if calls:
        return "call", calls[0]
    notation = parse_call(_first_line(text))
    if notation is not None:
        return "call", notation
    bracketed = _BRACKETED.search(text)
    if bracketed:
        return "bracketed", bracketed.group(0)
    return None


def _named_by_call(
    name: str, arguments: dict, valid_actions: list[str], by_norm: dict[str, str]
) -> str | None:
    """In a tool-calling environment the call itself, matched by name and arguments; elsewhere the
    action a call to `act` names in `{"action": ...}`, or the tool's own name."""
    by_call = {_call_key(*call): a for a in valid_actions if (call := parse_call(a)) is not None}
    if by_call:
        key = _call_key(name, arguments)
        if key in by_call and not is_open_call(by_call[key]):
            return by_call[key]
        filled = (fills_open_call((name, arguments), a) for a in valid_actions if is_open_call(a))
        return next((f for f in filled if f is not None), None)
    named = arguments.get("action") if isinstance(arguments.get("action"), str) else name
    return by_norm.get(_normalise(named))


def is_malformed(reply: str) -> bool:
    """Whether a reply has no action form at all (`_action_form`): no tool call, no call notation on
    its first line, no `search[...]` / `click[...]`. tau-bench's parse failures are these; a
    well-formed reply that names no valid action (a miscopied id, a message not among the listed
    ones, a click on no button) is a parse failure here but not there. A plain-text action
    (BabyAI's) has no form to check, so a plain-text reply that names no valid action counts as
    malformed."""
    return _action_form(without_control_tokens(reply)) is None


def count_failures(steps: list) -> tuple[int, int]:
    """(parse failures, malformed replies among them) over recorded steps: a failure is a step with
    `parse_ok` false; it is malformed when its kept `reply` has no action form (`is_malformed`)."""
    failed = [step for step in steps if not step.parse_ok]
    return len(failed), sum(is_malformed(getattr(step, "reply", "")) for step in failed)


def without_control_tokens(reply: str) -> str:
    """The reply with model control tokens stripped: what tau-bench hands the user when no tool call
    parses."""
    return _CONTROL.sub(" ", reply or "").strip()


def parse_action(reply: str, valid_actions: list[str]) -> str | None:
    """The valid action the reply names, or None."""
    text = without_control_tokens(reply)
    by_norm = {_normalise(a): a for a in valid_actions}

    form = _action_form(text)
    if form is not None:
        kind, held = form
        if kind == "call":
            return _named_by_call(*held, valid_actions, by_norm)
        if held.lower().startswith("search[") and any(
            a.lower().startswith("search[") for a in valid_actions
        ):
            return held  # open action: any query is valid where searching is
        return by_norm.get(_normalise(held))

    first_line = _normalise(_first_line(text))
    if first_line in by_norm:
        return by_norm[first_line]
    # The longest valid action named in the reply wins ("I will go forward." -> "go forward").
    named = [
        a for norm, a in by_norm.items() if re.search(rf"\b{re.escape(norm)}\b", _normalise(text))
    ]
    return max(named, key=len) if named else None
