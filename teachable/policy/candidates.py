"""Open actions: a valid action written `kind[...]` (the shop's `search[...]`) stands for any
argument, and so does a tool call holding the placeholder "..." (retail's free-text
`respond(content="...")`, `teachable.envs.toolcall`).

A policy cannot score "any query", so where a state offers an open action its candidates are the
concrete valid actions plus proposals for the open one: the student's own sampled replies (generate
mode, seeded, parsed) and the teacher's / expert's action. The student's distribution, and so U, is
over that set (DESIGN.md: "Open actions take the student's sampled candidates plus the teacher's").
Environments without open actions (BabyAI) are untouched: their candidates are their valid actions.
"""

from __future__ import annotations

import re

from teachable.envs.toolcall import fills_open_call, is_open_call, parse_call
from teachable.policy.parsing import parse_action

_OPEN = re.compile(r"^(\w+)\[\.\.\.\]$")
MAX_QUERY_TOKENS = 48


def is_open(action: str) -> bool:
    return bool(_OPEN.match(action)) or is_open_call(action)


def has_open(valid_actions: list[str]) -> bool:
    return any(is_open(a) for a in valid_actions)


def fits_open(action: str, valid_actions: list[str]) -> bool:
    """Whether `action` fills one of the open templates with a real argument."""
    call = parse_call(action or "")
    if call is not None:
        return any(is_open_call(a) and fills_open_call(call, a) == action for a in valid_actions)
    kinds = {_OPEN.match(a).group(1) for a in valid_actions if _OPEN.match(a)}
    match = re.match(r"^(\w+)\[(.*)\]$", action or "", re.DOTALL)
    return bool(match) and match.group(1) in kinds and match.group(2).strip() not in ("", "...")


def expand_candidates(valid_actions: list[str], proposals: list[str | None]) -> list[str]:
    """The concrete valid actions, then each distinct proposal that fills an open template (order
    kept)."""
    concrete = [a for a in valid_actions if not is_open(a)]
    opened = [p for p in dict.fromkeys(p for p in proposals if p) if fits_open(p, valid_actions)]
    return concrete + [p for p in opened if p not in concrete]


def sample_open_actions(
    policy, messages: list[dict], valid_actions: list[str], n: int, temperature: float, seed: int
) -> list[str]:
    """Up to `n` of the policy's own replies that fill an open template (one greedy reply at
    temperature 0)."""
    if n <= 0:
        return []
    count = n if temperature > 0 else 1
    replies = policy.generate(
        [messages] * count, max_new_tokens=MAX_QUERY_TOKENS, temperature=temperature, seed=seed
    )
    parsed = (parse_action(reply, valid_actions) for reply in replies)
    return [a for a in parsed if a is not None and fits_open(a, valid_actions)]
