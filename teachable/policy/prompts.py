"""State -> chat messages: exactly what the student sees at a state (shared by rollouts, labeling and training)."""

from __future__ import annotations

SYSTEM = "You are an agent in a grid world. Reply with one valid action."
WEB_SYSTEM = "You are a shopping agent in a web shop. Reply with one valid action: search[query] or click[label]."


def system_prompt(valid_actions: list[str]) -> str:
    """The system line for the action space the state offers: WebShop-style actions get the shop's."""
    return WEB_SYSTEM if any(a.startswith(("search[", "click[")) for a in valid_actions) else SYSTEM


def build_messages(
    mission: str,
    obs: str,
    valid_actions: list[str],
    history: list[dict] | None = None,
    patch: str | None = None,
) -> list[dict]:
    """`history` holds the previous {"obs", "action"} steps the prompt shows (oldest first); their actions are
    shown, not their observations, which would double the prompt for little gain."""
    lines = [f"Mission: {mission}"]
    if history:
        lines.append(f"Your last actions: {', '.join(past['action'] for past in history)}.")
    lines.append(f"Now: {obs}")
    lines.append(f"Valid actions: {', '.join(valid_actions)}")
    if patch:
        lines.append(patch)
    return [{"role": "system", "content": system_prompt(valid_actions)}, {"role": "user", "content": "\n".join(lines)}]


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The chat template applied up to the assistant's turn (thinking off for models that have it)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)


def completion_text(tokenizer, action: str) -> str:
    """What the assistant writes for an action: the action then end-of-turn."""
    return action + tokenizer.eos_token
