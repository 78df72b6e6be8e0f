"""The protocol every text environment implements (BabyAI, the shop, retail).

Gymnasium-style `reset(seed)` / `step(action)` over text, plus what the pipeline needs on top: the
valid actions, the expert's action, and a JSON-serialisable state that restores by deterministic
replay and is checked against a state hash. `fork()` copies a live environment in-process (many
rollouts from one state).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class RestoreError(RuntimeError):
    """Replaying a stored state did not reproduce its stored hash."""


@runtime_checkable
class TextEnv(Protocol):
    env_name: str
    mission: str
    observation: str
    history: list[dict]  # {"obs", "action"} for every step taken, oldest first
    step_count: int

    def reset(self, seed: int) -> tuple[str, dict]: ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]: ...

    def valid_actions(self) -> list[str]: ...

    def expert_action(self) -> str: ...

    def state(self) -> dict: ...

    def state_hash(self) -> str: ...

    def fork(self) -> TextEnv: ...


def replay(env: TextEnv, state: dict, expected_hash: str | None) -> TextEnv:
    """Bring a fresh `env` to a stored state by replaying (seed, actions), then check the state
    hash: the one way every environment restores, so a replay that drifts (a changed environment,
    another library version) fails loudly instead of labelling a different state."""
    env.reset(state["seed"])
    for action in state["actions"]:
        env.step(action)
    if expected_hash is not None and env.state_hash() != expected_hash:
        raise RestoreError(
            f"replay of {env.env_name} {state['level']} seed {state['seed']} "
            f"({len(state['actions'])} actions) gave hash {env.state_hash()}, "
            f"expected {expected_hash}"
        )
    return env
