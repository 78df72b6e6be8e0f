"""The `TextEnv` protocol (teachable/envs/base.py), checked over every registered environment.

Every name `env_names()` lists is a case here: an environment whose module does not import fails
(`test_every_registered_environment_imports`, and every other case of it errors at setup with the
same message), it is never skipped. Each environment plays a few of its levels over dozens of seeds,
as the pipeline does: walks that mix the expert's actions with random valid ones (so that states off
the expert's path occur too) and pure expert episodes. What one environment needs beyond the
protocol's own checks (its messages, its pages, its expert's quality bar) stays in its own test
file.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import pytest

from teachable.envs import RestoreError, TextEnv, env_names, known_levels, make_env, restore_env
from teachable.policy.candidates import fits_open, is_open

NAMES = env_names()

# A few levels per environment and a horizon: BabyAI the pipeline's `env.max_steps` (32), the shop
# its own (15). Any other environment (retail) plays its first two levels and "all" (else its third)
# at its own horizon.
LEVELS = {"babyai": ["GoToLocal", "PickupDist", "GoToObj"], "shop": ["all", "fashion", "food"]}
MAX_STEPS = {"babyai": 32, "shop": 15}
# Whether the expert at a restored state acts as the live environment's expert did there. BabyAI's
# does not always: minigrid's bot is kept in step from reset in a live episode but plans afresh at a
# restored state, from the cells seen so far (`plan_from_here`; tests/test_babyai_expert.py holds it
# to at least the in-step bot's success). Everywhere its action at a restored state is valid and the
# same on every restore of that state.
EXPERT_SAME_AFTER_RESTORE = {"babyai": False}
N_EXPERT_SEEDS = 30  # pure expert episodes per level
N_WALK_SEEDS = 12  # mixed expert / random walks per level
P_EXPERT = 0.6  # a mixed walk's chance of taking the expert's action
MAX_WALK = 1000  # a walk that has not ended by then means the horizon does not truncate
MIN_EXPERT_SUCCESS = 0.9
INVALID = [
    "fly",
    "",
    "   ",
    "click[no such thing 0xdeadbeef]",
    "search[...]",
    "no_such_tool(x=1)",
    "go forward!",
]


def levels_of(name: str) -> list[str]:
    if name in LEVELS:
        return LEVELS[name]
    known = known_levels(name)
    return known[:2] + (["all"] if "all" in known[2:] else known[2:3])


def new_env(name: str, level: str):
    return make_env(name, level, MAX_STEPS.get(name))


def is_valid(action: str, valid: list[str]) -> bool:
    """A concrete action the state accepts: one of its valid actions, or one that fills an open
    template (the shop's `search[...]`), as the pipeline's candidates allow."""
    return action in valid or fits_open(action, valid)


def random_action(env, valid: list[str], rng: random.Random) -> str:
    """A random valid action; an open template is filled by the environment's own `random_action` if
    it has one, else by the expert's action."""
    action = rng.choice(valid)
    if is_open(action):
        action = env.random_action(rng) if hasattr(env, "random_action") else env.expert_action()
    return action


def end_of(result) -> bool:
    return bool(result[2] or result[3])


# -- recorded play ---------------------------------------------------------------------------------
@dataclass
class Walk:
    level: str
    seed: int
    reset: tuple
    # every state visited, reset first, the last one final
    points: list[dict] = field(default_factory=list)
    steps: list[tuple] = field(default_factory=list)  # (action, what step returned)
    success: bool = False


def snapshot(env, final: bool) -> dict:
    return {
        "obs": env.observation,
        "mission": env.mission,
        "hash": env.state_hash(),
        "state": env.state(),
        "state_json": json.dumps(env.state()),
        "step_count": env.step_count,
        "history": [dict(h) for h in env.history],
        "valid": env.valid_actions(),
        "expert": None if final else env.expert_action(),
    }


def play(name: str, level: str, seed: int, p_expert: float, rng: random.Random) -> Walk:
    env = new_env(name, level)
    walk = Walk(level, seed, env.reset(seed))
    while len(walk.steps) < MAX_WALK:
        point = snapshot(env, final=False)
        walk.points.append(point)
        action = (
            point["expert"] if rng.random() < p_expert else random_action(env, point["valid"], rng)
        )
        result = env.step(action)
        walk.steps.append((action, result))
        info = result[4]
        walk.success = walk.success or bool(isinstance(info, dict) and info.get("success", False))
        if end_of(result):
            break
    walk.points.append(snapshot(env, final=True))
    return walk


@pytest.fixture(scope="module")
def shop_world(built_shop):
    """The session's generated shop, for this module's environments made by name."""
    from teachable.envs.shop import ShopEnv, configure_shop

    defaults = ShopEnv.world_dir, ShopEnv.n_open_samples
    configure_shop(world_dir=built_shop)
    yield built_shop
    configure_shop(*defaults)


def _import_or_fail(name: str) -> list[str]:
    try:
        return known_levels(name)
    except ImportError as err:
        pytest.fail(
            f"environment {name!r} is registered (env_names) but its "
            f"module does not import: {err!r}"
        )


@pytest.fixture(scope="module", params=NAMES)
def name(request) -> str:
    """An environment name, ready to make environments by name (the shop: built and configured)."""
    _import_or_fail(request.param)
    if request.param == "shop":
        request.getfixturevalue("shop_world")
    return request.param


@pytest.fixture(scope="module")
def walks(name) -> list[Walk]:
    rng = random.Random(f"walks-{name}")
    return [
        play(name, level, 1000 + i, P_EXPERT, rng)
        for level in levels_of(name)
        for i in range(N_WALK_SEEDS)
    ]


@pytest.fixture(scope="module")
def expert_walks(name) -> list[Walk]:
    rng = random.Random(f"expert-{name}")
    return [
        play(name, level, seed, 1.0, rng)
        for level in levels_of(name)
        for seed in range(N_EXPERT_SEEDS)
    ]


def all_walks(walks, expert_walks) -> list[Walk]:
    return walks + expert_walks


# -- registry --------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_name", NAMES)
def test_every_registered_environment_imports(env_name):
    levels = _import_or_fail(env_name)
    assert levels, f"{env_name} names no levels"
    assert len(set(levels)) == len(levels)


@pytest.mark.heavy
def test_the_chosen_levels_are_known(name):
    assert set(levels_of(name)) <= set(known_levels(name))
    assert len(levels_of(name)) >= 1


@pytest.mark.heavy
def test_environment_follows_the_protocol_class(name):
    env = new_env(name, levels_of(name)[0])
    env.reset(0)
    assert isinstance(env, TextEnv)
    assert env.env_name == name
    assert callable(getattr(type(env), "restore", None))


# -- reset and step --------------------------------------------------------------------------------
@pytest.mark.heavy
def test_reset_returns_observation_and_info(name, walks, expert_walks):
    for walk in all_walks(walks, expert_walks):
        obs, info = walk.reset
        assert isinstance(obs, str) and obs, (walk.level, walk.seed)
        assert isinstance(info, dict)
        first = walk.points[0]
        assert first["obs"] == obs and first["step_count"] == 0 and first["history"] == []
        assert isinstance(first["mission"], str) and first["mission"]


@pytest.mark.heavy
def test_step_returns_the_five_tuple(name, walks, expert_walks):
    for walk in all_walks(walks, expert_walks):
        for i, (action, result) in enumerate(walk.steps):
            assert isinstance(result, tuple) and len(result) == 5, (
                walk.level,
                walk.seed,
                i,
                action,
            )
            obs, reward, terminated, truncated, info = result
            assert isinstance(obs, str) and obs == walk.points[i + 1]["obs"]
            assert isinstance(reward, (int, float)) and not isinstance(reward, bool)
            assert isinstance(terminated, bool) and isinstance(truncated, bool)
            assert isinstance(info, dict)
            assert isinstance(info.get("success", False), bool)
            assert not (terminated and truncated)
            # only the last step ends the walk
            assert end_of(result) == (i == len(walk.steps) - 1), (walk.level, walk.seed, i)
        assert len(walk.steps) < MAX_WALK, (
            f"{walk.level} seed {walk.seed}: no end after {MAX_WALK} steps"
        )


@pytest.mark.heavy
def test_valid_actions_are_offered_until_the_end_without_duplicates(name, walks, expert_walks):
    for walk in all_walks(walks, expert_walks):
        for point in walk.points[:-1]:
            valid = point["valid"]
            assert isinstance(valid, list) and valid, (walk.level, walk.seed, point["step_count"])
            assert all(isinstance(a, str) and a for a in valid)
            assert len(set(valid)) == len(valid), f"duplicates in {valid}"
        assert len(set(walk.points[-1]["valid"])) == len(walk.points[-1]["valid"])


@pytest.mark.heavy
def test_expert_action_is_valid(name, walks, expert_walks):
    for walk in all_walks(walks, expert_walks):
        for point in walk.points[:-1]:
            expert = point["expert"]
            assert isinstance(expert, str) and not is_open(expert), (walk.level, walk.seed, expert)
            assert is_valid(expert, point["valid"]), (
                walk.level,
                walk.seed,
                point["step_count"],
                expert,
                point["valid"],
            )


@pytest.mark.heavy
def test_following_the_expert_succeeds_on_most_tasks(name, expert_walks):
    for level in levels_of(name):
        solved = [w.success for w in expert_walks if w.level == level]
        rate = sum(solved) / len(solved)
        assert rate >= MIN_EXPERT_SUCCESS, (
            f"{name} {level}: expert success {rate:.2f} over {len(solved)} tasks"
        )


@pytest.mark.heavy
def test_history_has_one_entry_per_step_and_step_count_counts_steps(name, walks, expert_walks):
    for walk in all_walks(walks, expert_walks):
        for i, point in enumerate(walk.points):
            assert point["step_count"] == i and len(point["history"]) == i, (
                walk.level,
                walk.seed,
                i,
            )
            expected = [
                {"obs": walk.points[j]["obs"], "action": walk.steps[j][0]} for j in range(i)
            ]
            assert point["history"] == expected, (walk.level, walk.seed, i)


@pytest.mark.heavy
def test_state_is_json_serialisable(name, walks, expert_walks):
    for walk in all_walks(walks, expert_walks):
        for point in walk.points:
            assert isinstance(point["state"], dict)
            assert json.loads(point["state_json"]) == point["state"]
            assert isinstance(point["hash"], str) and point["hash"]


# -- restore, fork, determinism --------------------------------------------------------------------
@pytest.mark.heavy
def test_restore_by_replay_reproduces_every_state(name, walks):
    """Every state of the mixed walks (reset, mid-episode and final), from its JSON form, as the
    pipeline stores it: the same hash, observation, history, step count and valid actions; an expert
    action that is valid, the same on another restore of the state, and (see
    EXPERT_SAME_AFTER_RESTORE) the live episode's."""
    restored_n = 0
    for walk in walks:
        for i, point in enumerate(walk.points):
            state = json.loads(point["state_json"])
            env = restore_env(name, state, point["hash"], max_steps=MAX_STEPS.get(name))
            where = (walk.level, walk.seed, point["step_count"])
            assert env.state_hash() == point["hash"], where
            assert env.observation == point["obs"] and env.mission == point["mission"], where
            assert env.history == point["history"] and env.step_count == point["step_count"], where
            assert env.valid_actions() == point["valid"], where
            assert env.state() == point["state"], where
            if point["expert"] is not None:
                expert = env.expert_action()
                assert is_valid(expert, point["valid"]), where
                if EXPERT_SAME_AFTER_RESTORE.get(name, True):
                    assert expert == point["expert"], where
                if i % 3 == 1:
                    twin = restore_env(name, state, point["hash"], max_steps=MAX_STEPS.get(name))
                    assert twin.expert_action() == expert, where
            restored_n += 1
    assert restored_n >= 100


@pytest.mark.heavy
def test_restore_with_a_wrong_hash_raises(name, walks):
    checked = 0
    for walk in walks:
        hashes = [p["hash"] for p in walk.points]
        for i, point in enumerate(walk.points):
            if i % 3 != 1:  # a third of the states: each is restored three times
                continue
            state = json.loads(point["state_json"])
            with pytest.raises(RestoreError):
                restore_env(name, state, "0" * len(point["hash"]), max_steps=MAX_STEPS.get(name))
            other = next((h for h in hashes if h != point["hash"]), None)
            if other is not None:
                with pytest.raises(RestoreError):
                    restore_env(name, state, other, max_steps=MAX_STEPS.get(name))
            # a state with its last action lost, checked against the hash
            if i and hashes[i - 1] != point["hash"]:
                previous = json.loads(walk.points[i - 1]["state_json"])
                with pytest.raises(RestoreError):
                    restore_env(name, previous, point["hash"], max_steps=MAX_STEPS.get(name))
            checked += 1
    assert checked >= 50


@pytest.mark.heavy
def test_fork_is_equal_at_fork_time_and_independent(name):
    rng = random.Random(f"fork-{name}")
    forks = 0
    for level in levels_of(name):
        for seed in range(2000, 2000 + N_WALK_SEEDS // 2):
            env = new_env(name, level)
            env.reset(seed)
            previous_fork = None
            while True:
                before = snapshot(env, final=False)
                twin = env.fork()
                assert twin is not env
                assert snapshot(twin, final=False) == before, (level, seed, env.step_count)
                # stepping the fork leaves the original as it was
                for _ in range(rng.randint(1, 3)):
                    if end_of(twin.step(random_action(twin, twin.valid_actions(), rng))):
                        break
                else:  # the fork's own expert keeps up with it
                    assert is_valid(twin.expert_action(), twin.valid_actions()), (
                        level,
                        seed,
                        twin.step_count,
                    )
                assert snapshot(env, final=False) == before, (level, seed, env.step_count)
                forks += 1
                # stepping the original leaves the last fork as it was
                fork_after = snapshot(twin, final=True)
                done = end_of(
                    env.step(
                        before["expert"]
                        if rng.random() < P_EXPERT
                        else random_action(env, before["valid"], rng)
                    )
                )
                assert snapshot(twin, final=True) == fork_after, (level, seed, env.step_count)
                if previous_fork is not None:
                    assert snapshot(previous_fork[0], final=True) == previous_fork[1]
                previous_fork = twin, fork_after
                if done or env.step_count >= MAX_WALK:
                    break
    assert forks >= 50


@pytest.mark.heavy
def test_same_level_seed_and_actions_give_the_same_episode(name, walks):
    """Two environments replaying a walk's actions (one of them reused across episodes, neither
    asking for the expert) see the same observations, rewards, ends, infos and hashes as each other
    and as the walk."""
    reused = {}
    for walk in walks:
        fresh = new_env(name, walk.level)
        again = reused.setdefault(walk.level, new_env(name, walk.level))
        assert fresh.reset(walk.seed) == again.reset(walk.seed) == walk.reset
        for i, (action, result) in enumerate(walk.steps):
            where = (walk.level, walk.seed, i)
            a, b = fresh.step(action), again.step(action)
            assert a == b == result, where
            assert fresh.state_hash() == again.state_hash() == walk.points[i + 1]["hash"], where
        assert fresh.state() == again.state() == walk.points[-1]["state"]


@pytest.mark.heavy
def test_an_invalid_action_changes_nothing_and_does_not_crash(name):
    """An action that is not valid (nonsense, an open template itself, a click on nothing) either is
    refused with a ValueError, leaving everything as it was, or is a step that changes no state: the
    same hash, valid actions and expert action; before the end, no end and (unless it truncates the
    episode) no reward. Either way the episode carries on and its state still restores."""
    rng = random.Random(f"invalid-{name}")
    tried = 0
    for level in levels_of(name):
        for seed in range(3000, 3000 + N_WALK_SEEDS // 2):
            env = new_env(name, level)
            env.reset(seed)
            done = False
            while True:
                before = snapshot(env, final=done)
                for action in rng.sample(INVALID, 2):
                    if is_valid(action, before["valid"]):
                        continue
                    where = (level, seed, env.step_count, action)
                    n_steps = env.step_count
                    try:
                        result = env.step(action)
                    except ValueError:
                        assert snapshot(env, final=done) == before, where
                    else:
                        assert len(result) == 5, where
                        # a step after the end is the caller's mistake: only "nothing changed" holds
                        if not done:
                            assert not result[2], where
                            # the step that truncates earns the episode's reward (retail's)
                            if not result[3]:
                                assert (
                                    result[1] == 0 and result[4].get("success", False) is False
                                ), where
                        assert env.state_hash() == before["hash"], where
                        assert env.valid_actions() == before["valid"], where
                        assert env.step_count == n_steps + 1 and env.history[-1] == {
                            "obs": before["obs"],
                            "action": action,
                        }, where
                        if not done:
                            assert env.expert_action() == before["expert"], where
                        done = done or end_of(result)
                        before = snapshot(env, final=done)
                    tried += 1
                if done or env.step_count >= MAX_WALK:
                    break
                action = (
                    before["expert"]
                    if rng.random() < P_EXPERT
                    else random_action(env, before["valid"], rng)
                )
                done = end_of(env.step(action))
            restored = restore_env(
                name,
                json.loads(json.dumps(env.state())),
                env.state_hash(),
                max_steps=MAX_STEPS.get(name),
            )
            assert restored.observation == env.observation and restored.history == env.history
    assert tried >= 50
