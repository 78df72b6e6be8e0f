"""The action notation of tool-calling environments, and the two reply forms a model writes for it.

An action is one tool call written `name(key=<json value>, ...)`, e.g.
`cancel_pending_order(order_id="#W2001", reason="no longer needed")`: short in a prompt's list of
valid actions, and parsed back with Python's literal parser (`ast`, nothing is executed). The
student replies with the call as OpenAI-style `tool_calls` JSON (`tool_call_json`), and a prompt
lists the valid calls as that JSON's `function` objects (`function_json`), so a reply copies one
listed line; Qwen3's native `<tool_call>{...}</tool_call>` form is read too. Two calls are the same
action when their names and argument dicts are equal (argument order does not matter).

An open call (`is_open_call`) holds the placeholder "..." for an argument: it stands for that call
with any text there (retail's free-text `respond(content="...")`, as the shop's `search[...]` stands
for any query); a call `fills_open_call` when it has the template's name and arguments, the
placeholders filled with non-empty text.
"""

from __future__ import annotations

import ast
import json
import re

_NAME = re.compile(r"^[A-Za-z_]\w*\(")
_QWEN = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

Call = tuple[str, dict]


def format_call(name: str, arguments: dict) -> str:
    """`name(key=<json>, ...)` in the arguments' own order (the tool's signature order)."""
    args = ", ".join(
        f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in arguments.items()
    )
    return f"{name}({args})"


def parse_call(action: str) -> Call | None:
    """(name, arguments) of an action in call notation, or None when it is not one."""
    text = (action or "").strip()
    if not _NAME.match(text):
        return None
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
        return None
    try:
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except (ValueError, SyntaxError):
        return None
    return node.func.id, arguments


def is_call(action: str) -> bool:
    return parse_call(action) is not None


OPEN_VALUE = "..."  # an open call's placeholder argument


def is_open_call(action: str) -> bool:
    """Whether the action is a call template: some argument is the placeholder "..."."""
    call = parse_call(action)
    return call is not None and OPEN_VALUE in call[1].values()


def fills_open_call(call: Call, template: str) -> str | None:
    """The call (name, arguments) in call notation, in the template's argument order, when it fills
    the open call `template` (same name and argument names, each placeholder filled with text that
    is neither empty nor "...", the other arguments equal); else None."""
    name, arguments = call
    open_name, open_args = parse_call(template) or ("", {})
    if name != open_name or set(arguments) != set(open_args):
        return None
    for key, value in open_args.items():
        given = arguments[key]
        if value == OPEN_VALUE:
            if not isinstance(given, str) or given.strip() in ("", OPEN_VALUE):
                return None
        elif given != value:
            return None
    return format_call(name, {key: arguments[key] for key in open_args})


def function_json(action: str) -> str:
    """The call as an OpenAI `function` object, `{"name": ..., "arguments": "<json>"}`: how a prompt
    lists a valid tool call, so that a reply is the listed line copied verbatim inside the
    `tool_calls` wrapper."""
    name, arguments = parse_call(action)
    return json.dumps(
        {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}, ensure_ascii=False
    )


def tool_call_json(action: str) -> str:
    """The OpenAI-style reply for an action: `{"tool_calls": [{"function": {"name", "arguments":
    "<json>"}}]}`."""
    return f'{{"tool_calls": [{{"function": {function_json(action)}}}]}}'


def qwen_tool_call(action: str) -> str:
    """Qwen3's native form of the same call (its chat template's `<tool_call>` block)."""
    name, arguments = parse_call(action)
    return (
        f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n"
        "</tool_call>"
    )


def _as_call(obj) -> Call | None:
    """A {"name", "arguments"} object (arguments a dict or a JSON string) -> (name, arguments)."""
    if not isinstance(obj, dict):
        return None
    obj = obj.get("function", obj)
    name, arguments = obj.get("name"), obj.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return None
    return name, arguments


def calls_in_reply(text: str) -> list[Call]:
    """Every tool call a reply makes, in either form: Qwen3's `<tool_call>` blocks, else the first
    JSON object's `tool_calls` list (OpenAI's form) or the object itself when it is a bare {"name",
    "arguments"} call."""
    blocks = _QWEN.findall(text)
    if blocks:
        calls = []
        for block in blocks:
            try:
                call = _as_call(json.loads(block))
            except json.JSONDecodeError:
                call = None
            if call is not None:
                calls.append(call)
        return calls
    start = text.find("{")
    if start < 0:
        return []
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return []
    if isinstance(obj, dict) and isinstance(obj.get("tool_calls"), list):
        return [call for call in map(_as_call, obj["tool_calls"]) if call is not None]
    call = _as_call(obj) if isinstance(obj, dict) and "name" in obj else None
    return [call] if call else []
