import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from teachable.envs import make_env
from teachable.envs.babyai import ACTIONS, BabyAITextEnv, render_view


def empty_view():
    image = np.zeros((7, 7, 3), dtype=np.uint8)
    image[:, :, 0] = OBJECT_TO_IDX["empty"]
    return image


def put(image, i, j, kind, color="red", state=0):
    image[i, j] = (OBJECT_TO_IDX[kind], COLOR_TO_IDX[color], state)


def test_render_names_objects_with_positions_sorted_by_distance():
    image = empty_view()
    put(image, 1, 4, "ball", "purple")  # 2 forward, 2 left
    put(image, 3, 5, "key", "yellow")  # 1 forward
    put(image, 5, 6, "box", "grey")  # 2 right
    text = render_view(image, None)
    assert text.startswith(
        "You see: yellow key 1 forward, grey box 2 right, purple ball 2 forward 2 left."
    )
    assert text.endswith("You carry nothing.")


def test_render_doors_walls_and_carrying():
    image = empty_view()
    put(image, 3, 3, "wall", "grey")  # 3 forward
    put(image, 2, 6, "wall", "grey")  # immediately left
    put(image, 4, 2, "door", "blue", state=2)
    put(image, 0, 5, "door", "green", state=0)
    text = render_view(image, "a red key")
    assert "locked blue door 4 forward 1 right" in text
    assert "open green door 1 forward 3 left" in text
    assert "Walls: 3 forward, left." in text
    assert "You carry a red key." in text


def test_render_matches_the_live_environment():
    """The text is minigrid's own egocentric view rendered, and names the mission's target exactly
    when that object is in view (over many seeds, so both cases occur)."""
    seen = set()
    for seed in range(30):
        env = make_env("babyai", "GoToObj")
        env.reset(seed)
        image = env._env.gen_obs()["image"]
        assert env.observation == render_view(image, None)
        color, kind = env.mission.removeprefix("go to the ").removeprefix("go to a ").split()
        visible = bool(
            ((image[..., 0] == OBJECT_TO_IDX[kind]) & (image[..., 1] == COLOR_TO_IDX[color])).any()
        )
        assert (f"{color} {kind}" in env.observation) == visible, (seed, env.observation)
        seen.add(visible)
        assert env.valid_actions() == ACTIONS
    assert seen == {True, False}


@pytest.mark.parametrize("level", ["GoToObj", "GoToLocal", "PickupDist", "OpenDoor"])
def test_expert_solves_at_least_95_percent(level):
    solved = 0
    for seed in range(40):
        env = make_env("babyai", level)
        env.reset(seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(env.expert_action())
            done = terminated or truncated
        solved += info["success"]
    assert solved / 40 >= 0.95


def test_bad_level_and_bad_action_fail_clearly():
    with pytest.raises(ValueError, match="unknown BabyAI level 'NoSuchLevel'"):
        BabyAITextEnv("NoSuchLevel")
    env = make_env("babyai", "GoToObj")
    env.reset(0)
    with pytest.raises(ValueError, match="invalid action 'fly'"):
        env.step("fly")


def test_target_hint_locates_the_mission_object_without_naming_an_action():
    env = make_env("babyai", "GoToObj")
    env.reset(0)
    hint = env.target_hint()
    assert env.mission.removeprefix("go to the ") in hint
    assert not any(action in hint for action in ACTIONS)
