"""State -> chat messages: exactly what the student sees at a state (shared by rollouts, labeling and training)."""

from __future__ import annotations

from teachable.envs.toolcall import is_call, tool_call_json

SYSTEM = "You are an agent in a grid world. Reply with one valid action."
WEB_SYSTEM = "You are a shopping agent in a web shop. Reply with one valid action: search[query] or click[label]."
TOOL_SYSTEM = ("You are a customer service agent of an online retail store. Reply with exactly one tool call as JSON: "
               '{"tool_calls": [{"function": {"name": ..., "arguments": "..."}}]}, one of the valid actions.')


def system_prompt(valid_actions: list[str]) -> str:
    """The system line for the action space the state offers: WebShop-style actions get the shop's, tool calls
    the customer-service agent's with the domain's policy."""
    if any(a.startswith(("search[", "click[")) for a in valid_actions):
        return WEB_SYSTEM
    if valid_actions and is_call(valid_actions[0]):
        from teachable.envs.retail import POLICY

        return f"{TOOL_SYSTEM}\nPolicy: {POLICY}"
    return SYSTEM


def build_messages(
    mission: str,
    obs: str,
    valid_actions: list[str],
    history: list[dict] | None = None,
    patch: str | None = None,
) -> list[dict]:
    """`history` holds the previous {"obs", "action"} steps the prompt shows (oldest first); their actions are
    shown, not their observations, which would double the prompt for little gain. Tool calls are listed one a
    line (their arguments hold commas)."""
    calls = bool(valid_actions) and is_call(valid_actions[0])
    sep = "\n" if calls else ", "
    lines = [f"Mission: {mission}"]
    if history:
        lines.append(f"Your last actions:{sep if calls else ' '}{sep.join(past['action'] for past in history)}.")
    lines.append(f"Now: {obs}")
    lines.append(f"Valid actions:{sep if calls else ' '}{sep.join(valid_actions)}")
    if patch:
        lines.append(patch)
    return [{"role": "system", "content": system_prompt(valid_actions)}, {"role": "user", "content": "\n".join(lines)}]


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The chat template applied up to the assistant's turn (thinking off for models that have it)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)


def reply_text(action: str) -> str:
    """What the assistant writes for an action: a tool call as OpenAI-style `tool_calls` JSON, anything else as
    the action's own text."""
    return tool_call_json(action) if is_call(action) else action


def completion_text(tokenizer, action: str) -> str:
    """The assistant's reply for an action, then end-of-turn."""
    return reply_text(action) + tokenizer.eos_token
