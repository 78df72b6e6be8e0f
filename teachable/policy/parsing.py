"""Free-text model replies -> one of the valid actions, or None (a parse failure, counted by the caller).

Accepted forms, tried in order:
- a tool call, as OpenAI `tool_calls` JSON or Qwen3's `<tool_call>{...}</tool_call>` (`teachable.envs.toolcall`):
  in a tool-calling environment (valid actions in call notation) the call itself is the action, matched by name
  and arguments; elsewhere a call to `act` with `{"action": "..."}` (or a tool named after the action) names it;
- WebShop-style `search[...]` / `click[...]`;
- plain text naming a valid action.
Model control tokens such as `<|im_end|>` are stripped first (Qwen3's `<tool_call>` tags are kept).

A reply that names no valid action is a parse failure; `is_malformed` splits off the ones with no action form at
all, which is all tau-bench counts.
"""

from __future__ import annotations

import json
import re

from teachable.envs.toolcall import calls_in_reply, parse_call

_CONTROL = re.compile(r"<\|[^|>]*\|>|</?think>")
_BRACKETED = re.compile(r"\b(search|click)\[[^\]]*\]", re.IGNORECASE)


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip().strip(".'\"`").split())


def _call_key(name: str, arguments: dict) -> str:
    return name + json.dumps(arguments, sort_keys=True, ensure_ascii=False)


def _from_calls(text: str, valid_actions: list[str], by_norm: dict[str, str]) -> tuple[bool, str | None]:
    """(whether the reply makes a tool call, the valid action it names or None)."""
    calls = calls_in_reply(text)
    if not calls:
        return False, None
    name, arguments = calls[0]
    by_call = {_call_key(*call): a for a in valid_actions if (call := parse_call(a)) is not None}
    if by_call:
        return True, by_call.get(_call_key(name, arguments))
    named = arguments.get("action") if isinstance(arguments.get("action"), str) else name
    return True, by_norm.get(_normalise(named))


def is_malformed(reply: str) -> bool:
    """Whether a reply has no action form at all: no tool call (OpenAI JSON or `<tool_call>` with JSON arguments), no
    call written in call notation on its first line, no `search[...]` / `click[...]`. tau-bench's parse failures are
    these; a well-formed reply that names no valid action (a miscopied id, a message not among the listed ones, a
    click on no button) is a parse failure here but not there. A plain-text action (BabyAI's) has no form to check,
    so a plain-text reply that names no valid action counts as malformed."""
    text = _CONTROL.sub(" ", reply or "").strip()
    first_line = text.splitlines()[0] if text else ""
    return not (calls_in_reply(text) or parse_call(first_line) is not None or _BRACKETED.search(text))


def parse_action(reply: str, valid_actions: list[str]) -> str | None:
    """The valid action the reply names, or None."""
    text = _CONTROL.sub(" ", reply).strip()
    by_norm = {_normalise(a): a for a in valid_actions}

    is_call, action = _from_calls(text, valid_actions, by_norm)
    if is_call:
        return action
    if parse_call(text.splitlines()[0] if text else "") is not None:  # the call notation itself, written out
        name, arguments = parse_call(text.splitlines()[0])
        return _from_calls(json.dumps({"name": name, "arguments": arguments}), valid_actions, by_norm)[1]

    bracketed = _BRACKETED.search(text)
    if bracketed:
        action = bracketed.group(0)
        if action.lower().startswith("search[") and any(a.lower().startswith("search[") for a in valid_actions):
            return action  # open action: any query is valid where searching is
        return by_norm.get(_normalise(action))

    first_line = _normalise(text.splitlines()[0]) if text else ""
    if first_line in by_norm:
        return by_norm[first_line]
    # The longest valid action named in the reply wins ("I will go forward." -> "go forward").
    named = [a for norm, a in by_norm.items() if re.search(rf"\b{re.escape(norm)}\b", _normalise(text))]
    return max(named, key=len) if named else None

