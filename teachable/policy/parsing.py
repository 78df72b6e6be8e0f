"""Free-text model replies -> one of the valid actions, or None (a parse failure, counted by the caller).

Accepted forms, tried in order: OpenAI `tool_calls` JSON (`{"tool_calls": [{"function": {"name": "act",
"arguments": "{\"action\": \"...\"}"}}]}`), WebShop-style `search[...]` / `click[...]`, then plain text naming a
valid action. Model control tokens such as `<|im_end|>` are stripped first.
"""

from __future__ import annotations

import json
import re

_CONTROL = re.compile(r"<\|[^|>]*\|>|</?think>")
_BRACKETED = re.compile(r"\b(search|click)\[[^\]]*\]", re.IGNORECASE)


def _from_tool_calls(text: str) -> str | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    calls = obj.get("tool_calls") if isinstance(obj, dict) else None
    if not calls:
        return obj.get("action") if isinstance(obj, dict) and isinstance(obj.get("action"), str) else None
    fn = calls[0].get("function", {}) if isinstance(calls[0], dict) else {}
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if isinstance(args, dict) and isinstance(args.get("action"), str):
        return args["action"]
    return fn.get("name") if isinstance(fn.get("name"), str) else None


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip().strip(".'\"`").split())


def parse_action(reply: str, valid_actions: list[str]) -> str | None:
    """The valid action the reply names, or None."""
    text = _CONTROL.sub(" ", reply).strip()
    by_norm = {_normalise(a): a for a in valid_actions}

    candidate = _from_tool_calls(text)
    if candidate is not None:
        return by_norm.get(_normalise(candidate))

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
