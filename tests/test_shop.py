"""The WebShop-style shop: catalogue, reward, pyserini BM25 search, pages, expert, restore,
open-action scoring."""

import json

import numpy as np
import pytest

from teachable.core.params import Params, ParamsError
from teachable.envs import configure_envs, make_env
from teachable.envs.search import Searcher, build_index
from teachable.envs.shop import SHOP_LEVELS, ShopEnv, ShopWorld, configure_shop
from teachable.envs.shop.catalog import Goal, Product, generate_catalog, load_webshop, make_goal
from teachable.envs.shop.env import BACK, BUY, NEXT, PREV, SEARCH
from teachable.envs.shop.reward import shop_reward
from teachable.policy.candidates import expand_candidates, fits_open, is_open
from teachable.policy.hf import Scores
from teachable.rollout.engine import RolloutEngine, RolloutSpec

N_TASKS = 100


@pytest.fixture(scope="module")
def world(built_shop):
    defaults = ShopEnv.world_dir, ShopEnv.n_open_samples
    configure_shop(world_dir=built_shop)
    yield ShopWorld.load(built_shop)
    configure_shop(*defaults)


def play_expert(env):
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(env.expert_action())
        done = terminated or truncated
    return info


# -- reward ----------------------------------------------------------------------------------------
SHIRT = Product(
    asin="b1",
    category="fashion",
    product_type="t-shirt",
    title="norvik cotton slim fit t-shirt",
    attributes=["cotton", "slim fit", "machine wash", "casual"],
    options={"size": ["small", "medium"], "color": ["navy", "black"]},
    price=20.0,
)
GOAL = Goal(
    instruction=(
        "i need a cotton slim fit t-shirt with size medium, navy, and "
        "price lower than 30.00 dollars"
    ),
    category="fashion",
    product_type="t-shirt",
    attributes=["cotton", "slim fit"],
    options={"size": "medium", "color": "navy"},
    price_upper=30.0,
    target="b1",
    query="cotton slim fit t-shirt",
)


def test_reward_full_match_is_one():
    assert shop_reward(GOAL, SHIRT, {"size": "medium", "color": "navy"})["reward"] == 1.0


def test_reward_missing_attribute():
    wool = SHIRT.model_copy(
        update={"attributes": ["wool", "slim fit", "machine wash"], "title": "norvik t-shirt"}
    )
    assert shop_reward(GOAL, wool, {"size": "medium", "color": "navy"})["reward"] == pytest.approx(
        4 / 5
    )


def test_reward_wrong_option():
    assert shop_reward(GOAL, SHIRT, {"size": "small", "color": "navy"})["reward"] == pytest.approx(
        4 / 5
    )
    assert shop_reward(GOAL, SHIRT, {})["reward"] == pytest.approx(3 / 5)


def test_reward_over_price():
    dear = SHIRT.model_copy(update={"price": 35.0})
    parts = shop_reward(GOAL, dear, {"size": "medium", "color": "navy"})
    assert parts["r_price"] == 0.0 and parts["reward"] == pytest.approx(4 / 5)


def test_reward_wrong_type_simple_rule():
    """The earlier exact-match rule (shop.reward: simple) by its own type/category table; WebShop's
    title-noun rule is tested in test_shop_reward.py."""
    hoodie = SHIRT.model_copy(update={"product_type": "hoodie"})
    mug = SHIRT.model_copy(update={"product_type": "mug", "category": "furniture"})
    options = {"size": "medium", "color": "navy"}
    assert shop_reward(GOAL, hoodie, options, rule="simple")["reward"] == pytest.approx(0.5)
    assert shop_reward(GOAL, mug, options, rule="simple")["reward"] == pytest.approx(0.1)


# -- catalogue -------------------------------------------------------------------------------------
def test_catalogue_and_goals_are_deterministic():
    assert generate_catalog(200, 3) == generate_catalog(200, 3)
    assert generate_catalog(200, 3) != generate_catalog(200, 4)
    products = generate_catalog(200, 3)
    assert {p.category for p in products} == set(SHOP_LEVELS) - {"all"}
    assert len({p.asin for p in products}) == 200
    goal = make_goal(products, 17)
    assert goal == make_goal(products, 17)
    target = next(p for p in products if p.asin == goal.target)
    assert shop_reward(goal, target, goal.options)["reward"] == 1.0
    assert (
        f"{goal.price_upper:.2f} dollars" in goal.instruction
        and goal.product_type in goal.instruction
    )


def test_webshop_loader_reads_webshop_schema(tmp_path):
    items = [
        {
            "asin": "B0TEST0001",
            "category": "fashion",
            "name": "Men's Cotton Crew T-Shirt",
            "product_category": "Clothing › Men › Shirts › T-Shirts",
            "pricing": "$12.99 to $15.99",
            "customization_options": {
                "size": [{"value": "Small"}, {"value": "Large"}],
                "color": [{"value": "Navy"}],
            },
            "Attributes": ["cotton"],
        }
    ]
    ins = {
        "B0TEST0001": [
            {
                "instruction": "I need a cotton t-shirt, large, navy",
                "instruction_attributes": ["cotton"],
                "instruction_options": ["large", "navy"],
                "price_upper": 20.0,
            }
        ]
    }
    (tmp_path / "items.json").write_text(json.dumps(items))
    (tmp_path / "ins.json").write_text(json.dumps(ins))
    products, goals = load_webshop(tmp_path / "items.json", tmp_path / "ins.json")
    (product,) = products
    assert (
        product.asin == "b0test0001"
        and product.price == 12.99
        and product.product_type == "t-shirts"
    )
    assert product.options == {"size": ["small", "large"], "color": ["navy"]}
    (goal,) = goals
    assert goal.options == {"size": "large", "color": "navy"} and goal.price_upper == 20.0
    assert shop_reward(goal, product, goal.options)["reward"] == 1.0


# -- search ----------------------------------------------------------------------------------------
@pytest.mark.heavy
def test_index_is_rebuilt_only_when_the_catalogue_changes(tmp_path):
    docs = [p.document() for p in generate_catalog(60, 0)]
    assert build_index(docs, tmp_path / "index") is True
    stamp = (tmp_path / "index" / "fingerprint.json").stat().st_mtime_ns
    assert build_index(docs, tmp_path / "index") is False
    assert (tmp_path / "index" / "fingerprint.json").stat().st_mtime_ns == stamp
    changed = [p.document() for p in generate_catalog(60, 1)]
    assert build_index(changed, tmp_path / "index") is True
    hits = Searcher(tmp_path / "index").search(changed[0]["contents"], 5)
    assert hits[0] == changed[0]["id"]


@pytest.mark.heavy
def test_expert_queries_find_the_target_in_the_top_10(world):
    found = 0
    for seed in range(N_TASKS):
        goal = world.goal(SHOP_LEVELS[seed % len(SHOP_LEVELS)], seed)
        found += goal.target in world.search(goal.query)[:10]
    assert found / N_TASKS >= 0.9


def test_searcher_is_shared_and_memoised(world):
    assert Searcher.shared(world.searcher.index_dir) is world.searcher
    calls = world.searcher.n_lucene_calls
    first = world.search("cotton slim fit t-shirt")
    again = world.search("cotton slim fit t-shirt")
    assert first == again and world.searcher.n_lucene_calls <= calls + 1


# -- environment -----------------------------------------------------------------------------------
@pytest.mark.heavy
def test_expert_succeeds_on_at_least_95_percent(world):
    solved = 0
    for seed in range(N_TASKS):
        env = make_env("shop", SHOP_LEVELS[seed % len(SHOP_LEVELS)], 15)  # through the registry
        env.reset(seed)
        solved += play_expert(env)["success"]
    assert solved / N_TASKS >= 0.95


@pytest.mark.heavy
def test_expert_goes_for_the_first_listed_product_that_meets_the_goal(world):
    first = 0
    for seed in range(N_TASKS):
        env = ShopEnv("all", world=world)
        env.reset(seed)
        env.step(env.expert_action())
        meeting = [a for a in env.results if env.meets_goal(a)]
        assert meeting and env.wanted() == meeting[0]
        click = env.expert_action()
        if click.startswith("click[b"):
            assert click == f"click[{meeting[0]}]"
            # the top result on the page (after back and next)
            first += click == env.valid_actions()[2]
    assert first / N_TASKS >= 0.7  # ranking order makes the choice mostly "the first match listed"


def test_the_students_tokenizer_keeps_product_ids_whole(world):
    from teachable.envs import tokenizer_words
    from teachable.training.student.build import train_tokenizer

    words = tokenizer_words("shop")
    assert words == list(world.products) and tokenizer_words("babyai") == []
    tok = train_tokenizer(["[b00012] norvik cotton t-shirt $9.99", "click[next >]"] * 5, 300, words)
    ids = tok("click[b00012]<|end|>", add_special_tokens=False).input_ids
    assert "b00012" in tok.convert_ids_to_tokens(ids) and tok.decode(ids) == "click[b00012]<|end|>"


def test_a_word_after_a_bracket_is_the_same_token_as_in_the_mission():
    from teachable.training.student.build import train_tokenizer

    tok = train_tokenizer(
        ["i need a walnut chair, size large", "click[walnut]", "search[walnut chair]"] * 20, 300
    )
    mission = tok.tokenize("i need a walnut chair")
    for action in ("click[walnut]", "search[walnut chair]"):
        # [..., "[", "Ġwalnut", ...]: the mission's own token
        assert tok.tokenize(action)[2] == mission[3]
        assert tok.decode(tok(action, add_special_tokens=False).input_ids) == action
    assert tok.decode(tok("a [ b]", add_special_tokens=False).input_ids) == "a [ b]"


def test_pages_and_navigation(world):
    env = ShopEnv("all", world=world)
    env.reset(3)
    assert env.valid_actions() == [SEARCH]
    env.step(f"search[{env.goal.product_type}]")
    assert env.observation.startswith("Results for") and env.observation.count("\n[b") == 10
    assert env.valid_actions()[:2] == [BACK, NEXT] and len(env.valid_actions()) == 12
    first_page = env.valid_actions()[2:]
    env.step(NEXT)
    assert PREV in env.valid_actions() and env.valid_actions()[3:] != first_page
    env.step(PREV)
    assert env.valid_actions()[2:] == first_page
    env.step(first_page[0])
    assert env.observation.startswith("Item [") and env.valid_actions()[-1] == BUY
    env.step(PREV)
    assert env.valid_actions()[2:] == first_page
    env.step(BACK)
    assert env.valid_actions() == [SEARCH]


def test_buying_ends_the_episode_with_the_reward(world):
    env = ShopEnv("fashion", world=world)
    env.reset(5)
    while env.expert_action() != BUY:
        env.step(env.expert_action())
    _, reward, terminated, _, info = env.step(BUY)
    assert terminated and reward == 1.0 and info["success"] and env.valid_actions() == []


@pytest.mark.parametrize(
    "action", ["click[b99999]", "search[...]", "click[buy now]", "fly", "search[]"]
)
def test_an_invalid_action_changes_nothing_and_says_so(world, action):
    env = ShopEnv("all", world=world)
    env.reset(8)
    if action != "search[...]":
        env.step(env.expert_action())  # on a results page: neither search nor buy is possible there
    before, page = env.state_hash(), env.valid_actions()
    obs, reward, terminated, _, info = env.step(action)
    assert obs.startswith(f"Invalid action '{action}': nothing changed.")
    assert env.state_hash() == before and env.valid_actions() == page
    assert reward == 0 and not terminated and info["valid"] is False


def test_fork_is_independent_and_shares_the_world(world):
    env = ShopEnv("food", world=world)
    env.reset(2)
    env.step(env.expert_action())
    twin = env.fork()
    twin.step(twin.expert_action())
    assert twin.world is env.world and twin.world.searcher is env.world.searcher
    assert env.step_count == 1 and twin.step_count == 2 and env.state_hash() != twin.state_hash()


def test_hints_name_no_action(world):
    env = ShopEnv("beauty", world=world)
    env.reset(4)
    for _ in range(5):
        hint = env.target_hint()
        assert "click[" not in hint and "search[" not in hint
        env.step(env.expert_action())


def test_shop_levels_are_validated_with_the_env_name():
    from teachable.envs import known_levels

    assert set(known_levels("shop")) >= {"all", "food"}
    with pytest.raises(ParamsError, match=r"env\.levels: unknown shop level.*GoToLocal"):
        configure_envs(Params.defaults(env={"name": "shop", "levels": ["GoToLocal"]}))
    with pytest.raises(ParamsError, match=r"webshop_items"):
        Params.defaults(shop={"source": "webshop"})


def test_webshop_rules_param_picks_how_a_purchase_is_scored(world):
    """shop.webshop_rules reaches the environment: the expert's product bought with a size one fuzzy
    step off the goal's ("x-small" for "small") is a success under WebShop master's rules, not under
    v2's (exact sizes)."""
    near = {"small": "x-small", "x-small": "small", "large": "x-large", "x-large": "large"}
    defaults = ShopEnv.reward_rule, ShopEnv.webshop_rules, ShopEnv.n_open_samples
    outcomes = {}
    try:
        for rules in ("master", "v2"):
            configure_envs(
                Params.defaults(
                    env={"name": "shop", "levels": ["fashion"]}, shop={"webshop_rules": rules}
                )
            )
            assert ShopEnv.webshop_rules == rules
            for seed in range(100):
                env = ShopEnv("fashion", world=world)
                env.reset(seed)
                while env.expert_action() != BUY:
                    env.step(env.expert_action())
                wrong = near.get(env.goal.options["size"])
                if wrong in world.products[env.item].options["size"]:
                    env.step(f"click[{wrong}]")
                    _, reward, _, _, info = env.step(BUY)
                    outcomes[rules] = (seed, reward, info["success"])
                    break
    finally:
        ShopEnv.reward_rule, ShopEnv.webshop_rules, ShopEnv.n_open_samples = defaults
    assert outcomes["master"][0] == outcomes["v2"][0]  # the same episode
    assert (
        outcomes["master"][1:] == (1.0, True)
        and outcomes["v2"][2] is False
        and outcomes["v2"][1] < 1.0
    )


# -- open actions: the student's sampled queries plus the expert's ---------------------------------
def test_open_action_candidates():
    assert is_open(SEARCH) and not is_open("click[next >]")
    assert fits_open("search[red shirt]", [SEARCH]) and not fits_open("search[...]", [SEARCH])
    assert not fits_open("click[x]", [SEARCH])
    assert expand_candidates(
        [SEARCH], ["search[a]", None, "search[a]", "click[x]", "search[b]"]
    ) == ["search[a]", "search[b]"]
    assert expand_candidates(["turn left", "go forward"], ["search[a]"]) == [
        "turn left",
        "go forward",
    ]


class QueryPolicy:
    """A test double: generates fixed replies; scores prefer the first candidate that is a
    search."""

    name = "query-double"

    def __init__(self, replies):
        self.replies, self.scored, self.seeds = replies, [], []

    def generate(self, messages, max_new_tokens=32, temperature=0.0, seed=0):
        self.seeds.append(seed)
        return [self.replies[i % len(self.replies)] for i in range(len(messages))]

    def score(self, messages, candidates):
        self.scored += [list(c) for c in candidates]
        return [
            Scores(list(c), np.array([0.0 if i == 0 else -2.0 for i in range(len(c))]))
            for c in candidates
        ]


def test_rollouts_score_sampled_queries_plus_the_experts(world):
    configure_shop(n_open_samples=3)
    policy = QueryPolicy(["search[red shirt]", "I would search[red shirt]", "nonsense"])
    engine = RolloutEngine(policy, "shop", max_steps=2, temperature=1.0)
    (ep,) = engine.run([RolloutSpec("e0", "fashion", 7, sample_seed=1)])
    expert = ShopEnv("fashion", world=world)
    expert.reset(7)
    assert policy.scored[0] == ["search[red shirt]", expert.expert_action()]
    assert set(ep.steps[0].action_probs) == {"search[red shirt]", expert.expert_action()}
    assert ep.steps[0].valid_actions == [SEARCH] and ep.steps[1].obs.startswith("Results for")
    again = QueryPolicy(policy.replies)
    engine.policy = again
    engine.run([RolloutSpec("e0", "fashion", 7, sample_seed=1)])
    assert again.seeds == policy.seeds  # sampling seeded by the episode, not by its batch


def test_openai_teacher_schema_takes_a_query_where_search_is_open():
    from pydantic import ValidationError

    from teachable.teacher.openai_teacher import reply_model

    fields = {"diagnosis": "d", "hint": "h", "contrast": "c"}
    schema = reply_model([SEARCH])
    assert (
        schema(suggested_action="search[cotton t-shirt]", **fields).suggested_action
        == "search[cotton t-shirt]"
    )
    for bad in ("search[...]x", "click[b1]", "search[]"):
        with pytest.raises(ValidationError):
            schema(suggested_action=bad, **fields)
    clicks = reply_model([BACK, BUY])
    assert clicks(suggested_action=BUY, **fields).suggested_action == BUY
    with pytest.raises(ValidationError):
        clicks(suggested_action="search[x]", **fields)
    assert "pattern" in json.dumps(schema.model_json_schema())


def test_labeling_scores_sampled_queries_plus_the_teachers(world):
    from teachable.core.params import LabelParams
    from teachable.labeling.label import label_chunk
    from teachable.core.records import Snapshot
    from teachable.teacher import OracleTeacher

    configure_shop(n_open_samples=2)
    env = ShopEnv("food", world=world)
    env.reset(9)
    snap = Snapshot(
        snapshot_id="s0",
        env="shop",
        task_id="food-9",
        seed=9,
        step_idx=0,
        source="student_failure",
        mission=env.mission,
        history=[],
        obs=env.observation,
        valid_actions=env.valid_actions(),
        student_action="search[tea]",
        state=env.state(),
        state_hash=env.state_hash(),
    )
    policy = QueryPolicy(["search[honey granola]"])
    engine = RolloutEngine(policy, "shop", max_steps=8, temperature=1.0)
    p = LabelParams.defaults(round_size=2, max_rollouts=2, cpt_rollouts=2)
    (record,) = label_chunk([snap], policy, OracleTeacher(), engine, p, 0, 0.1)
    assert record["teacher"]["suggested_action"] == env.expert_action()
    assert set(record["student_probs"]) == {
        "search[honey granola]",
        "search[tea]",
        env.expert_action(),
    }
    assert record["contrast_action"] == "search[tea]" and record["leverage"]["p_expert"] == 1.0
    assert 0 < record["U"] <= np.log(3) + 1e-9


def test_shop_prompts_say_web_shop_and_babyai_prompts_are_unchanged():
    from teachable.envs.babyai import ACTIONS
    from teachable.policy.prompts import SYSTEM, WEB_SYSTEM, build_messages

    assert build_messages("m", "o", [SEARCH])[0]["content"] == WEB_SYSTEM
    assert build_messages("m", "o", [BACK, BUY])[0]["content"] == WEB_SYSTEM
    assert (
        build_messages("m", "o", ACTIONS)[0]["content"]
        == SYSTEM
        == ("You are an agent in a grid world. Reply with one valid action.")
    )
