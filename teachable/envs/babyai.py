"""BabyAI levels (minigrid) as a text environment, with minigrid's BabyAIBot as the expert.

The observation is the agent's 7x7 egocentric view rendered as words: every visible object with its colour, type
and position in steps forward/left/right, doors with their state, the nearest walls, and what the agent carries.
"""

from __future__ import annotations

import contextlib
import copy
import io

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI environments)
import numpy as np
from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT
from minigrid.utils.baby_ai_bot import BabyAIBot, DisappearedBoxError

from teachable.envs.base import RestoreError

ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
ACTION_INDEX = {name: idx for idx, name in enumerate(ACTIONS)}  # minigrid's Actions enum order
DONE = 6  # minigrid's `done`; not offered to the agent

BABYAI_LEVELS: dict[str, str] = {
    spec_id.removeprefix("BabyAI-").rsplit("-v", 1)[0]: spec_id
    for spec_id in sorted(gym.registry)
    if spec_id.startswith("BabyAI-")
}

DOOR_STATES = {0: "open", 1: "closed", 2: "locked"}
AGENT_COL, AGENT_ROW = 3, 6  # the agent's cell in the egocentric view; row 6 - j is the distance forward
OBJECT_TYPES = {"key", "ball", "box", "door", "goal", "lava"}


def _offset(forward: int, right: int) -> str:
    parts = []
    if forward:
        parts.append(f"{abs(forward)} {'forward' if forward > 0 else 'back'}")
    if right:
        parts.append(f"{abs(right)} {'right' if right > 0 else 'left'}")
    return " ".join(parts) or "here"


def render_view(image: np.ndarray, carrying: str | None) -> str:
    """Words for one egocentric view. `image[i, j]` = (type, colour, state); i is the column, j the row."""
    seen = []
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            if (i, j) == (AGENT_COL, AGENT_ROW):
                continue
            kind = IDX_TO_OBJECT[int(image[i, j, 0])]
            if kind not in OBJECT_TYPES:
                continue
            color = IDX_TO_COLOR[int(image[i, j, 1])]
            name = f"{DOOR_STATES[int(image[i, j, 2])]} {color} door" if kind == "door" else f"{color} {kind}"
            forward, right = AGENT_ROW - j, i - AGENT_COL
            seen.append((forward + abs(right), forward, right, f"{name} {_offset(forward, right)}"))
    seen.sort()
    objects = ", ".join(item[-1] for item in seen) or "nothing"

    walls = []
    for j in range(AGENT_ROW - 1, -1, -1):
        kind = IDX_TO_OBJECT[int(image[AGENT_COL, j, 0])]
        if kind == "wall":
            walls.append(f"{AGENT_ROW - j} forward")
        if kind != "empty":
            break
    for col, side in ((AGENT_COL - 1, "left"), (AGENT_COL + 1, "right")):
        if IDX_TO_OBJECT[int(image[col, AGENT_ROW, 0])] == "wall":
            walls.append(side)
    text = f"You see: {objects}."
    if walls:
        text += f" Walls: {', '.join(walls)}."
    return text + f" You carry {carrying or 'nothing'}."


class BabyAITextEnv:
    """One BabyAI level as a `TextEnv`. The expert bot is created on first use and then kept in step."""

    env_name = "babyai"

    def __init__(self, level: str, max_steps: int | None = None):
        if level not in BABYAI_LEVELS:
            raise ValueError(f"unknown BabyAI level {level!r}; known: {sorted(BABYAI_LEVELS)}")
        self.level = level
        self._env = gym.make(BABYAI_LEVELS[level]).unwrapped
        self._max_steps = max_steps
        self.max_steps = 0  # known once a mission is generated, in reset()
        self.seed: int | None = None
        self.actions: list[str] = []
        self.mission = ""
        self.observation = ""

    # -- gymnasium-style API -------------------------------------------------------------------------------------
    def reset(self, seed: int) -> tuple[str, dict]:
        with contextlib.redirect_stdout(io.StringIO()):  # GoToLocal prints "Sampling rejected..." while placing
            obs, _ = self._env.reset(seed=int(seed))
        self.seed = int(seed)
        self.max_steps = min(self._max_steps or self._env.max_steps, self._env.max_steps)
        self.actions = []
        self.history: list[dict] = []  # {"obs", "action"} for every step taken, oldest first
        self._bot: BabyAIBot | None = None
        self._suggestion: int | None = None
        self._last_action: int | None = None
        self.mission = obs["mission"]
        self.observation = render_view(obs["image"], self._carrying())
        return self.observation, {"mission": self.mission}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if action not in ACTION_INDEX:
            raise ValueError(f"invalid action {action!r}; valid: {ACTIONS}")
        if self._bot is not None and self._suggestion is None:
            self.expert_action()  # keep the expert's plan in step with every action taken
        idx = ACTION_INDEX[action]
        obs, reward, terminated, truncated, _ = self._env.step(idx)
        self.actions.append(action)
        self.history.append({"obs": self.observation, "action": action})
        self._last_action, self._suggestion = idx, None
        truncated = bool(truncated or self.step_count >= self.max_steps) and not terminated
        self.observation = render_view(obs["image"], self._carrying())
        success = bool(terminated and reward > 0)
        return self.observation, float(reward), bool(terminated), truncated, {"success": success}

    # -- what the pipeline needs on top --------------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return len(self.actions)

    def valid_actions(self) -> list[str]:
        return list(ACTIONS)

    def expert_action(self) -> str:
        if self._bot is None:
            self._bot = BabyAIBot(self._env)
            self._last_action = None
        if self._suggestion is None:
            try:
                self._suggestion = int(self._bot.replan(self._last_action))
            except (DisappearedBoxError, AssertionError):
                # Off-plan actions (a box toggled open, an object dropped) can break the bot's plan: plan afresh.
                self._bot = BabyAIBot(self._env)
                try:
                    self._suggestion = int(self._bot.replan(None))
                except AssertionError:
                    # The bot cannot plan while holding an object the mission does not need: put it down first
                    # (turning until the cell ahead is free), then plan afresh at the next state.
                    self._bot = None
                    front_free = self._env.grid.get(*self._env.front_pos) is None
                    return "drop" if front_free else "turn left"
        # The bot says `done` only once the mission is complete; in the levels used here the episode has ended.
        return ACTIONS[self._suggestion] if self._suggestion != DONE else "go forward"

    def state(self) -> dict:
        return {"level": self.level, "seed": self.seed, "actions": list(self.actions)}

    def state_hash(self) -> str:
        return self._env.hash()

    def fork(self) -> BabyAITextEnv:
        return copy.deepcopy(self)  # env and bot together, so the copy's bot plans on the copy's grid

    @classmethod
    def restore(cls, state: dict, expected_hash: str | None = None, max_steps: int | None = None) -> BabyAITextEnv:
        """Rebuild a state by replaying (level, seed, actions); verify it against the stored hash."""
        env = cls(state["level"], max_steps=max_steps)
        env.reset(state["seed"])
        for action in state["actions"]:
            env.step(action)
        if expected_hash is not None and env.state_hash() != expected_hash:
            raise RestoreError(
                f"replay of {state['level']} seed {state['seed']} ({len(state['actions'])} actions) gave hash "
                f"{env.state_hash()}, expected {expected_hash}"
            )
        return env

    # -- facts for the oracle teacher ----------------------------------------------------------------------------
    def _carrying(self) -> str | None:
        item = self._env.carrying
        return f"a {item.color} {item.type}" if item is not None else None

    def target_hint(self) -> str:
        """Where the mission's object is, relative to the agent (the oracle's hint: no action named)."""
        desc = _mission_object(self._env.instrs)
        if desc is None or not desc.obj_poss:
            return "Look around: the object of the mission is not located yet."
        agent = np.array(self._env.agent_pos)
        target = min(desc.obj_poss, key=lambda p: abs(p[0] - agent[0]) + abs(p[1] - agent[1]))
        delta = np.array(target) - agent
        forward = int(delta @ self._env.dir_vec)
        right = int(delta @ self._env.right_vec)
        name = " ".join(part for part in (desc.color, desc.type) if part)
        return f"The {name} you need is {_offset(forward, right)} from you."


def _mission_object(instr):
    """The object description of the first part of a (possibly composite) BabyAI instruction."""
    for attr in ("desc", "desc_move"):
        if hasattr(instr, attr):
            return getattr(instr, attr)
    if hasattr(instr, "instr_a"):
        return _mission_object(instr.instr_a)
    return None
