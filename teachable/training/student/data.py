"""Behaviour-cloning data for the offline student: expert demonstrations with off-expert detours and
patches.

The expert (BabyAIBot) labels every state; with probability `noise` a random action is taken instead
and the bot replans from there, so the student also sees states off the expert's path and how to
recover (DAgger-style). A share of the examples carries an in-context patch, so the student learns
to use one like an instruct model; placebo lines are included too, or an unseen neutral line would
throw the student off and void every CPT.
"""

from __future__ import annotations

import random

from teachable.core.params import PatchRates
from teachable.envs import make_env
from teachable.policy.patches import contrast_patch, demo_patch, hint_patch, placebo_patch
from teachable.policy.candidates import is_open
from teachable.policy.prompts import build_messages
from teachable.core.tasks import Task


def choose_patch(env, expert: str, rates: PatchRates, rng: random.Random) -> str | None:
    roll = rng.random()
    for kind in ("demo", "hint", "contrast", "placebo"):
        rate = getattr(rates, kind)
        if roll < rate:
            if kind == "demo":
                return demo_patch(expert, env.target_hint())
            if kind == "hint":
                return hint_patch(env.target_hint())
            if kind == "contrast":
                others = [a for a in env.valid_actions() if a != expert and not is_open(a)]
                return contrast_patch(rng.choice(others), expert) if others else None
            return placebo_patch(rng.randint(40, 110), rng)
        roll -= rate
    return None


def off_expert_action(env, rng: random.Random) -> str:
    """A random detour: the environment's own (the shop types a few instruction words), else any
    valid action."""
    if hasattr(env, "random_action"):
        return env.random_action(rng)
    return rng.choice(env.valid_actions())


def demonstrations(
    env_name: str,
    tasks: list[Task],
    max_steps: int,
    history_len: int,
    noise: float,
    rates: PatchRates,
    seed: int,
) -> list[dict]:
    """One {"messages", "action"} example per visited state, labelled with the expert's action."""
    rng = random.Random(seed)
    examples = []
    for task in tasks:
        env = make_env(env_name, task.level, max_steps)
        env.reset(task.seed)
        done = False
        while not done:
            expert = env.expert_action()
            patch = choose_patch(env, expert, rates, rng)
            history = env.history[-history_len:] if history_len else []
            messages = build_messages(
                env.mission, env.observation, env.valid_actions(), history, patch
            )
            examples.append({"messages": messages, "action": expert})
            taken = off_expert_action(env, rng) if rng.random() < noise else expert
            _, _, terminated, truncated, _ = env.step(taken)
            done = terminated or truncated
    return examples
