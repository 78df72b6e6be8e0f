"""Text environments: the `TextEnv` protocol and a factory by name."""

from teachable.envs.base import RestoreError, TextEnv


def make_env(name: str, level: str, max_steps: int | None = None) -> TextEnv:
    if name == "babyai":
        from teachable.envs.babyai import BabyAITextEnv

        return BabyAITextEnv(level, max_steps=max_steps)
    raise ValueError(f"unknown environment {name!r}; known: ['babyai']")


def restore_env(name: str, state: dict, expected_hash: str | None = None, max_steps: int | None = None) -> TextEnv:
    """Rebuild a stored state by deterministic replay, verified against its hash."""
    if name == "babyai":
        from teachable.envs.babyai import BabyAITextEnv

        return BabyAITextEnv.restore(state, expected_hash, max_steps=max_steps)
    raise ValueError(f"unknown environment {name!r}; known: ['babyai']")


__all__ = ["RestoreError", "TextEnv", "make_env", "restore_env"]
