"""State -> chat messages: exactly what the student sees at a state (shared by rollouts, labeling
and training)."""

from __future__ import annotations

import weakref

from teachable.envs.toolcall import function_json, is_call, tool_call_json

SYSTEM = "You are an agent in a grid world. Reply with one valid action."
WEB_SYSTEM = (
    "You are a shopping agent in a web shop. Reply with one valid action: "
    "search[query] or click[label]."
)
TOOL_SYSTEM = (
    "You are a customer service agent of an online retail store. "
    "Reply with exactly one tool call as JSON: "
    '{"tool_calls": [{"function": {"name": ..., "arguments": "..."}}]}, one of the valid actions.'
)


def system_prompt(valid_actions: list[str]) -> str:
    """The system line for the action space the state offers: WebShop-style actions get the shop's,
    tool calls the customer-service agent's with the domain's policy."""
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
    """`history` holds the previous {"obs", "action"} steps the prompt shows (oldest first); their
    actions are shown, not their observations, which would double the prompt for little gain. Valid
    tool calls are listed one a line as the `function` objects of the reply's JSON
    (`function_json`): the reply is then one listed line copied, which a small model learns far
    sooner than re-spelling ids from another notation."""
    calls = bool(valid_actions) and is_call(valid_actions[0])
    sep = "\n" if calls else ", "
    lines = [f"Mission: {mission}"]
    if history:
        lines.append(
            "Your last actions:"
            f"{sep if calls else ' '}{sep.join(past['action'] for past in history)}."
        )
    lines.append(f"Now: {obs}")
    listed = [function_json(a) for a in valid_actions] if calls else valid_actions
    lines.append(f"Valid actions:{sep if calls else ' '}{sep.join(listed)}")
    if patch:
        lines.append(patch)
    return [
        {"role": "system", "content": system_prompt(valid_actions)},
        {"role": "user", "content": "\n".join(lines)},
    ]


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The chat template applied up to the assistant's turn, thinking off for models that have it:
    Qwen3's template then ends the prompt with an empty `<think>\n\n</think>\n\n`, so a reply is
    scored (and trained) after it, as the template renders a finished assistant turn."""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


def reply_text(action: str) -> str:
    """What the assistant writes for an action: a tool call as OpenAI-style `tool_calls` JSON,
    anything else as the action's own text."""
    return tool_call_json(action) if is_call(action) else action


_REPLY_MARK = "MARK"
# tokenizer -> ((template, eos), text)
_end_of_turn: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def end_of_turn(tokenizer) -> str:
    """What the chat template writes after an assistant's reply: the text after the reply in a
    rendered [user, assistant] exchange (thinking off), less a trailing newline. Qwen3:
    `<|im_end|>`, which is not the eos token of every checkpoint (a base model's is
    `<|endoftext|>`); the offline student: `<|end|>`, its eos. The eos token where the template
    cannot tell (none, an error, nothing after the reply). Cached per tokenizer, until its template
    or eos token changes."""
    key = (getattr(tokenizer, "chat_template", None), tokenizer.eos_token)
    cached = _end_of_turn.get(tokenizer)
    if cached is not None and cached[0] == key:
        return cached[1]
    text = tokenizer.eos_token
    if key[0]:
        try:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": _REPLY_MARK}],
                tokenize=False,
                enable_thinking=False,
            )
        # a template that refuses this exchange (e.g. asks for a system turn): the eos token
        except Exception:
            rendered = ""
        at = rendered.rfind(_REPLY_MARK) if isinstance(rendered, str) else -1
        after = rendered[at + len(_REPLY_MARK) :].rstrip("\n") if at >= 0 else ""
        text = after if after.strip() else text
    _end_of_turn[tokenizer] = (key, text)
    return text


def stop_token_ids(tokenizer) -> list[int]:
    """Where a generated reply ends: the template's end-of-turn token (Qwen3's `<|im_end|>`, which a
    base checkpoint's eos `<|endoftext|>` is not) where it is one token, and eos. Every backend
    stops there: HFPolicy's generate, and the server engines, which by themselves stop only at their
    model's eos."""
    ids = tokenizer(end_of_turn(tokenizer), add_special_tokens=False).input_ids
    return list(dict.fromkeys(([ids[0]] if len(ids) == 1 else []) + [tokenizer.eos_token_id]))


def completion_text(tokenizer, action: str) -> str:
    """The assistant's reply for an action, then the chat template's end-of-turn (`end_of_turn`)."""
    return reply_text(action) + end_of_turn(tokenizer)


# tokenizer -> (end of turn, {action: ids})
_completion_ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def completion_ids(tokenizer, action: str) -> list[int]:
    """The tokens of `completion_text`: what every backend scores after a state's prompt. Each
    action is tokenised once per tokenizer (a rollout scores the same few candidates at thousands of
    states)."""
    eot = end_of_turn(tokenizer)
    cached = _completion_ids.get(tokenizer)
    if cached is None or cached[0] != eot:
        cached = _completion_ids[tokenizer] = (eot, {})
    ids = cached[1].get(action)
    if ids is None:
        ids = cached[1][action] = tokenizer(
            completion_text(tokenizer, action), add_special_tokens=False
        ).input_ids
    return ids


# BabyAI's and the shop's replies fit; a shop query is sampled with its own budget
MIN_REPLY_TOKENS = 32
# room for another form of the same action (Qwen3's `<tool_call>` wrapper, spaces)
REPLY_MARGIN = 16


def reply_budget(tokenizer, valid_actions: list[list[str]]) -> int:
    """New tokens a generated reply may take at these states: the longest valid action's reply
    (`completion_ids`) and a margin, at least MIN_REPLY_TOKENS. A fixed budget of 32 cut the offline
    retail student's confirmations (up to 42 tokens) and address changes (54) short, and the cut
    replies counted as parse failures."""
    longest = max(
        (len(completion_ids(tokenizer, a)) for actions in valid_actions for a in actions), default=0
    )
    return max(MIN_REPLY_TOKENS, longest + REPLY_MARGIN)
