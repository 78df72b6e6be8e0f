"""BabyAI levels (minigrid) as a text environment, with minigrid's BabyAIBot as the expert.

The observation is the agent's 7x7 egocentric view rendered as words: every visible object with its
colour, type and position in steps forward/left/right, doors with their state, the nearest walls,
and what the agent carries.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections import deque

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI environments)
import numpy as np
from minigrid.core.constants import DIR_TO_VEC, IDX_TO_COLOR, IDX_TO_OBJECT
from minigrid.envs.babyai.core.verifier import ObjDesc
from minigrid.utils.baby_ai_bot import (
    BabyAIBot,
    DisappearedBoxError,
    DropSubgoal,
    GoNextToSubgoal,
    PickupSubgoal,
)

from teachable.envs.base import replay

ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
ACTION_INDEX = {name: idx for idx, name in enumerate(ACTIONS)}  # minigrid's Actions enum order
DONE = 6  # minigrid's `done`; not offered to the agent

BABYAI_LEVELS: dict[str, str] = {
    spec_id.removeprefix("BabyAI-").rsplit("-v", 1)[0]: spec_id
    for spec_id in sorted(gym.registry)
    if spec_id.startswith("BabyAI-")
}

DOOR_STATES = {0: "open", 1: "closed", 2: "locked"}
# the agent's cell in the egocentric view; row 6 - j is the distance forward
AGENT_COL, AGENT_ROW = 3, 6
OBJECT_TYPES = {"key", "ball", "box", "door", "goal", "lava"}


def _offset(forward: int, right: int) -> str:
    parts = []
    if forward:
        parts.append(f"{abs(forward)} {'forward' if forward > 0 else 'back'}")
    if right:
        parts.append(f"{abs(right)} {'right' if right > 0 else 'left'}")
    return " ".join(parts) or "here"


def render_view(image: np.ndarray, carrying: str | None) -> str:
    """Words for one egocentric view. `image[i, j]` = (type, colour, state); i is the column, j the
    row."""
    seen = []
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            if (i, j) == (AGENT_COL, AGENT_ROW):
                continue
            kind = IDX_TO_OBJECT[int(image[i, j, 0])]
            if kind not in OBJECT_TYPES:
                continue
            color = IDX_TO_COLOR[int(image[i, j, 1])]
            name = (
                f"{DOOR_STATES[int(image[i, j, 2])]} {color} door"
                if kind == "door"
                else f"{color} {kind}"
            )
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
    """One BabyAI level as a `TextEnv`. The expert bot is created on first use (planning from the
    state at hand, see `plan_from_here`) and then kept in step."""

    LEVELS = tuple(BABYAI_LEVELS)

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

    # -- gymnasium-style API -----------------------------------------------------------------------
    def reset(self, seed: int) -> tuple[str, dict]:
        # GoToLocal prints "Sampling rejected..." while placing
        with contextlib.redirect_stdout(io.StringIO()):
            obs, _ = self._env.reset(seed=int(seed))
        self.seed = int(seed)
        # An explicit horizon wins over the level's own (a rollout from a late snapshot gets its
        # full `label.horizon`); minigrid's own limit is raised to match so it does not truncate
        # first.
        self.max_steps = self._max_steps or self._env.max_steps
        self._env.max_steps = max(self._env.max_steps, self.max_steps)
        self.actions = []
        self.history: list[dict] = []  # {"obs", "action"} for every step taken, oldest first
        self._bot: BabyAIBot | None = None
        self._suggestion: int | None = None
        self._last_action: int | None = None
        # cells seen, up to `_views`
        self._seen = np.zeros((self._env.width, self._env.height), dtype=bool)
        # views not yet in `_seen`
        self._views = [(self._env.agent_pos, self._env.agent_dir, obs["image"])]
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
        # folded in when needed
        self._views.append((self._env.agent_pos, self._env.agent_dir, obs["image"]))
        self.observation = render_view(obs["image"], self._carrying())
        success = bool(terminated and reward > 0)
        return self.observation, float(reward), bool(terminated), truncated, {"success": success}

    # -- what the pipeline needs on top ------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return len(self.actions)

    def valid_actions(self) -> list[str]:
        return list(ACTIONS)

    def _seen_cells(self) -> np.ndarray:
        """Every cell seen so far in the episode (world coordinates), as a bot kept in step from
        reset would have marked them in its `vis_mask` (`BabyAIBot._process_obs`). Views are folded
        in only when asked for, so steps taken without the expert cost nothing more."""
        for agent_pos, agent_dir, image in self._views:
            # cells out of view are encoded as `unseen`, index 0
            vis_i, vis_j = np.nonzero(image[:, :, 0])
            view = image.shape[0]
            fwd = DIR_TO_VEC[agent_dir]
            right = np.array((-fwd[1], fwd[0]))
            top_left = np.asarray(agent_pos) + fwd * (view - 1) - right * (view // 2)
            cells = top_left - np.outer(vis_j, fwd) + np.outer(vis_i, right)
            inside = (cells >= 0).all(axis=1) & (cells < self._seen.shape).all(axis=1)
            self._seen[cells[inside, 0], cells[inside, 1]] = True
        self._views = []
        return self._seen

    def expert_action(self) -> str:
        if self._bot is None:
            self._bot = plan_from_here(self._env, self._seen_cells())
            self._last_action = None
        if self._suggestion is None:
            try:
                self._suggestion = int(self._bot.replan(self._last_action))
            except (DisappearedBoxError, AssertionError):
                # Off-plan actions (a box toggled open, an object dropped or picked up) can break
                # the bot's plan: plan afresh from the current state.
                self._bot = plan_from_here(self._env, self._seen_cells())
                try:
                    self._suggestion = int(self._bot.replan(None))
                except AssertionError:
                    # Last resort (the fresh plan fails too, e.g. no known free cell to put a
                    # carried object on): put it down ahead if that cell is free, else turn, then
                    # plan afresh at the next state.
                    self._bot = None
                    front_free = self._env.grid.get(*self._env.front_pos) is None
                    return "drop" if front_free and self._env.carrying is not None else "turn left"
        # The bot says `done` only once the mission is complete; in the levels used here the episode
        # has ended.
        return ACTIONS[self._suggestion] if self._suggestion != DONE else "go forward"

    def state(self) -> dict:
        return {"level": self.level, "seed": self.seed, "actions": list(self.actions)}

    def state_hash(self) -> str:
        return self._env.hash()

    def fork(self) -> BabyAITextEnv:
        # env and bot together, so the copy's bot plans on the copy's grid
        return copy.deepcopy(self)

    @classmethod
    def restore(
        cls, state: dict, expected_hash: str | None = None, max_steps: int | None = None
    ) -> BabyAITextEnv:
        """Rebuild a state by replaying (level, seed, actions); verify it against the stored
        hash."""
        return replay(cls(state["level"], max_steps=max_steps), state, expected_hash)

    # -- facts for the oracle teacher --------------------------------------------------------------
    def _carrying(self) -> str | None:
        item = self._env.carrying
        return f"a {item.color} {item.type}" if item is not None else None

    def target_hint(self) -> str:
        """Where the mission's object is, relative to the agent (the oracle's hint: no action
        named)."""
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


class _BoundedStack(list):
    """The bot's subgoal stack, refusing more than `limit` pushes within one `replan` (see
    `_Bot`)."""

    limit = 200

    def __init__(self, goals=()):
        super().__init__(goals)
        self.pushes = 0

    def append(self, goal) -> None:
        self.pushes += 1
        if self.pushes > self.limit:
            raise AssertionError(f"the plan did not converge in {self.limit} subgoals")
        super().append(goal)


class _Bot(BabyAIBot):
    """minigrid's BabyAIBot whose `replan` gives up (AssertionError) instead of looping forever.

    Some states make the bot's subgoals push each other without end: carrying an object, with the
    only known way forward through another object, `GoNextToSubgoal` plans to put the load down at a
    cell that is itself reached only through that object, and so on. The expert then plans afresh or
    falls back (see `expert_action`).
    """

    def __init__(self, env):
        super().__init__(env)
        self.stack = _BoundedStack(self.stack)

    def replan(self, action_taken=None):
        self.stack.pushes = 0
        return super().replan(action_taken)


def plan_from_here(env, seen: np.ndarray) -> BabyAIBot:
    """A BabyAIBot that plans from the current state, whatever the agent already carries, knowing
    the cells `seen` so far in the episode (as much as a bot kept in step from reset would know).

    The bot's plan is made from the instruction alone and assumes empty hands: a `PickupSubgoal`
    asserts that nothing is carried. A bot kept in step from reset never meets that case (it answers
    every pickup it sees with a plan to drop the object again), but one created at a restored state
    where the agent already holds an object walks to face the target, fails, and every fresh plan
    does the same again. So when the plan will need empty hands, put the carried object down first,
    somewhere harmless (`harmless_drop_cell`: a free cell ahead, else beside or behind the agent;
    else the bot's own `_find_drop_pos`; else any free cell around), then follow the plan; when the
    plan needs the very object held (put X next to Y), skip fetching it. A pure function of the
    current state and the cells seen.
    """
    bot = _Bot(env)
    bot.vis_mask |= seen
    carried = env.carrying
    if carried is None or not any(isinstance(goal, PickupSubgoal) for goal in bot.stack):
        return bot
    stack = bot.stack
    if (
        len(stack) >= 3
        and isinstance(stack[-1], GoNextToSubgoal)
        and isinstance(stack[-2], PickupSubgoal)
        and isinstance(stack[-3], GoNextToSubgoal)
        and stack[-3].reason == "PutNext"
        and any(obj is carried for obj in getattr(stack[-1].datum, "obj_set", ()))
    ):
        del stack[-2:]  # already holding the object to move
        return bot
    destinations = [goal.datum for goal in stack if isinstance(goal, GoNextToSubgoal)]
    needed = (
        {tuple(int(v) for v in p) for p in destinations[0].obj_poss}
        if len(destinations) == 1 and isinstance(destinations[0], ObjDesc)
        else set()
    )
    drop_pos = harmless_drop_cell(env, bot.vis_mask, needed)
    # farther away: the bot's own choice, if the agent can walk there without moving objects
    if drop_pos is None:
        drop_pos = bot._find_drop_pos()
        if (
            drop_pos is not None
            and tuple(int(v) for v in drop_pos) not in _region(env, bot.vis_mask)[0]
        ):
            drop_pos = None
    # better a drop in the way than none: the bot can move it later, with empty hands
    if drop_pos is None:
        drop_pos = next(
            (pos for pos in _cells_around(env) if bot.vis_mask[pos] and env.grid.get(*pos) is None),
            None,
        )
    if drop_pos is not None:
        stack.append(DropSubgoal(bot))
        stack.append(GoNextToSubgoal(bot, drop_pos))
    return bot


def _region(env, seen: np.ndarray, blocked: tuple[int, int] | None = None) -> tuple[dict, dict]:
    """The free cells (empty or an open door) the agent can reach over cells seen, avoiding
    `blocked`, and the other non-wall cells next to them (objects, closed doors, cells not seen),
    each with its distance from the agent."""
    grid, (width, height) = env.grid, seen.shape
    start = tuple(int(v) for v in env.agent_pos)
    free, touched, queue = {start: 0}, {}, deque([start])
    while queue:
        i, j = queue.popleft()
        for nb in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if nb in free or nb in touched or not (0 <= nb[0] < width and 0 <= nb[1] < height):
                continue
            cell = grid.get(*nb)
            if nb == blocked or not seen[nb]:
                touched[nb] = free[i, j] + 1
            elif cell is None or (cell.type == "door" and cell.is_open):
                free[nb] = free[i, j] + 1
                queue.append(nb)
            elif cell.type != "wall":
                touched[nb] = free[i, j] + 1
    return free, touched


def _cells_around(env) -> list[tuple[int, int]]:
    """The agent's four neighbours: ahead, right, left, behind (fewest turns first)."""
    start, dir_vec, right_vec = (
        np.asarray(env.agent_pos),
        np.asarray(env.dir_vec),
        np.asarray(env.right_vec),
    )
    return [
        tuple(int(v) for v in start + vec) for vec in (dir_vec, right_vec, -right_vec, -dir_vec)
    ]


def harmless_drop_cell(env, seen: np.ndarray, needed: set = frozenset()) -> tuple[int, int] | None:
    """The cell next to the agent where the carried object is best put down, or None if there is no
    good one.

    A cell will do if dropping there cuts nothing off: every free cell the agent can reach now (over
    cells seen) stays reachable, and so does every object, door or unseen cell next to that region.
    One that cuts some of that off still does when the plan has one destination, `needed` (the
    positions of the objects it may go to), and the nearest needed object within reach stays within
    reach, no farther than before (the agent walls itself in next to its target, which it is about
    to pick up). Of the cells that will do, the one that costs fewest steps: the turns to face it,
    plus, when a needed object is within reach, the way to it once the cell is taken; ties go ahead,
    right, left, behind.
    """
    free, touched = _region(env, seen)
    in_reach = {pos: dist for pos, dist in touched.items() if pos in needed}
    nearest = [pos for pos, dist in in_reach.items() if dist == min(in_reach.values())]
    best, best_cost = None, np.inf
    for turns, pos in zip((0, 1, 1, 2), _cells_around(env)):
        if not seen[pos] or env.grid.get(*pos) is not None:
            continue
        free_after, touched_after = _region(env, seen, blocked=pos)
        cuts_nothing = (
            free_after.keys() == free.keys() - {pos} and touched.keys() <= touched_after.keys()
        )
        if not cuts_nothing and not any(
            touched_after.get(t, np.inf) <= in_reach[t] for t in nearest
        ):
            continue
        way = min((touched_after.get(t, np.inf) for t in in_reach), default=0)
        if turns + way < best_cost:
            best, best_cost = pos, turns + way
    return best


def _mission_object(instr):
    """The object description of the first part of a (possibly composite) BabyAI instruction."""
    for attr in ("desc", "desc_move"):
        if hasattr(instr, attr):
            return getattr(instr, attr)
    if hasattr(instr, "instr_a"):
        return _mission_object(instr.instr_a)
    return None
