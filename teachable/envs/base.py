"""The protocol every text environment implements (BabyAI now, the shop later).

Gymnasium-style `reset(seed)` / `step(action)` over text, plus what the pipeline needs on top: the valid actions,
the expert's action, and a JSON-serialisable state that restores by deterministic replay and is checked against a
state hash. `fork()` copies a live environment in-process (many rollouts from one state).
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
