"""The shop's reward rules on hand-made goal/product pairs: WebShop's (type from query, category
levels and title nouns; fuzzy attributes and options with colour normalisation, options by its
master or v2 branch's rules; price) and the earlier simple rule."""

import pytest

from teachable.envs.shop.catalog import CATEGORIES, Goal, Product, generate_catalog
from teachable.envs.shop.reward import (
    DEFAULT_WEBSHOP_RULES,
    WEBSHOP_RULES,
    fuzzy_match,
    is_success,
    normalize_color,
    nouns,
    shop_reward,
    type_reward,
)

SHIRT = Product(
    asin="b1",
    category="fashion",
    product_type="t-shirt",
    title="norvik cotton slim fit t-shirt",
    attributes=["cotton", "slim fit", "machine wash", "casual"],
    options={"size": ["x-small", "small", "medium"], "color": ["navy", "black"]},
    price=20.0,
)
GOAL = Goal(
    instruction=(
        "i need a cotton slim fit t-shirt with size small, navy, and price lower than 30.00 dollars"
    ),
    category="fashion",
    product_type="t-shirt",
    attributes=["cotton", "slim fit"],
    options={"size": "small", "color": "navy"},
    price_upper=30.0,
    target="b1",
    query="cotton slim fit t-shirt",
)
ASKED = {"size": "small", "color": "navy"}


def product(**update) -> Product:
    return SHIRT.model_copy(update=update)


def goal(**update) -> Goal:
    return GOAL.model_copy(update=update)


def test_full_match_is_one_and_the_parts_are_kept():
    parts = shop_reward(GOAL, SHIRT, ASKED)
    assert parts == {"reward": 1.0, "r_type": 1.0, "r_att": 1.0, "r_option": 1.0, "r_price": 1.0}
    assert is_success(parts["reward"]) and shop_reward(GOAL, SHIRT, ASKED, rule="webshop") == parts


# -- r_type ----------------------------------------------------------------------------------------
def test_type_same_query_carries_a_low_title_score():
    # five goal nouns, one in the title: title score 0.2 (not above 0.2), so only the query match
    # gives 1.0
    wanted = goal(product_type="shirt crew tunic blouse jersey")
    same = product(
        product_type="shirt crew tunic blouse jersey", title="norvik cotton slim fit shirt"
    )
    other = product(product_type="tank top", title="norvik cotton slim fit shirt")
    assert type_reward(wanted, same) == {
        "r_type": 1.0,
        "query_match": True,
        "category_match": True,
        "title_score": pytest.approx(0.2),
    }
    assert type_reward(wanted, other)["r_type"] == 0.5


def test_type_category_levels_need_two_shared():
    # the path is (category, product type); one shared level (the category) is no match
    other_type = product(product_type="hoodie", title="norvik hoodie with tee print")
    wanted = goal(product_type="tee print shirt crew jersey")
    result = type_reward(wanted, other_type)
    assert result["category_match"] is False and result["query_match"] is False
    # title above 0.2 suffices
    assert result["title_score"] == pytest.approx(0.4) and result["r_type"] == 1.0
    # 0.2
    assert type_reward(goal(product_type="tee shirt crew jersey polo"), other_type)["r_type"] == 0.5
    # levels compare as a set, order ignored: (fashion, t-shirt) vs (t-shirt, fashion) shares two
    swapped = product(category="t-shirt", product_type="fashion")
    assert type_reward(GOAL, swapped)["category_match"] is True
    assert type_reward(GOAL, product(category="beauty"))["category_match"] is False


def test_type_noun_share_and_zero_when_no_noun_is_shared():
    # another type whose title shares a noun of the goal's type: half the nouns, r_type 1 (WebShop's
    # title rule)
    case = Product(
        asin="b2",
        category="electronics",
        product_type="phone case",
        title="lumen shockproof phone case",
        attributes=["shockproof"],
        options={"color": ["black"]},
        price=9.0,
    )
    charger = goal(category="electronics", product_type="phone charger", attributes=[], options={})
    assert type_reward(charger, case)["title_score"] == pytest.approx(0.5)
    assert type_reward(charger, case)["r_type"] == 1.0
    # no shared noun: 0 even for the same product type (the title overrides query and category)
    plain = product(title="norvik crew tee")
    assert type_reward(GOAL, plain) == {
        "r_type": 0.0,
        "query_match": True,
        "category_match": True,
        "title_score": 0.0,
    }
    assert shop_reward(GOAL, plain, ASKED)["reward"] == 0.0
    # below 0.1 but above 0: r_type 0.1 whatever matches
    many = goal(product_type="shirt top tunic blouse jersey polo vest tank camisole henley sweater")
    assert (
        type_reward(many, product(product_type=many.product_type, title="norvik shirt"))["r_type"]
        == 0.1
    )
    # a goal type without nouns scores 0.2: r_type from query / category only
    bare = goal(product_type="black")
    assert type_reward(bare, product(product_type="black"))["r_type"] == 1.0
    assert type_reward(bare, product(product_type="white"))["r_type"] == 0.5


def test_nouns_without_a_tagger():
    assert nouns("Men’s Cotton Crew T-Shirts, 2 Pack") == [
        "men",
        "cotton",
        "crew",
        "t-shirt",
        "pack",
    ]
    assert nouns("dark chocolate") == ["chocolate"] and nouns("green tea") == ["tea"]
    assert nouns("dresses and glasses for berries") == ["dress", "glass", "berry"]
    assert nouns("coffee beans") == ["coffee", "bean"] == nouns("coffee bean")
    # every generated type has nouns, and each generated product's own title scores 1 on its type
    assert all(nouns(ptype) for spec in CATEGORIES.values() for ptype in spec["types"])
    for p in generate_catalog(50, 0):
        mine = GOAL.model_copy(update={"category": p.category, "product_type": p.product_type})
        assert type_reward(mine, p) == {
            "r_type": 1.0,
            "query_match": True,
            "category_match": True,
            "title_score": 1.0,
        }


# -- attributes ------------------------------------------------------------------------------------
def test_attribute_fuzzy_and_via_title():
    near = product(attributes=["cottons", "slim-fit"], title="norvik t-shirt")
    assert shop_reward(GOAL, near, ASKED)["r_att"] == 1.0  # token-set ratio above 85
    via_title = product(attributes=["polyester"], title="norvik cotton slim fit t-shirt")
    assert shop_reward(GOAL, via_title, ASKED)["r_att"] == 1.0
    neither = product(attributes=["polyester", "relaxed fit"], title="norvik t-shirt")
    assert shop_reward(GOAL, neither, ASKED)["r_att"] == 0.0
    assert shop_reward(GOAL, neither, ASKED)["reward"] == pytest.approx(3 / 5)
    # clearly different attributes sharing words stay below the threshold
    skin = goal(attributes=["for dry skin"])
    assert shop_reward(skin, product(attributes=["for oily skin"]), ASKED)["r_att"] == 0.0
    assert shop_reward(skin, product(attributes=["for dry skin"]), ASKED)["r_att"] == 1.0


# -- options ---------------------------------------------------------------------------------------
# Goal/product pairs scored by WebShop's get_reward under each rule set: the expected values are
# WebShop's, worked by hand from its formula (attributes met + options met + price) / (attributes +
# options + 1), r_type 1 (same product type, the title names it). Master: a goal value is met when a
# chosen value's token-set ratio with it is above 85 (sizes included), no title check. v2: a chosen
# "size" value must equal a goal value, other options as master; then a goal value not met is met
# when the title contains it (the goal's value: not the chosen one).
SPEAKER = Product(
    asin="b3",
    category="electronics",
    product_type="bluetooth speaker",
    title="alpen shockproof bluetooth speaker",
    attributes=["shockproof", "portable"],
    options={"color": ["black", "blue", "red"], "pack": ["1 pack", "2 pack"]},
    price=40.0,
)
SOLAR = SPEAKER.model_copy(
    update={
        "title": "vantage solar powered bluetooth speaker",
        "attributes": ["solar powered", "portable"],
    }
)
TABLE = Product(
    asin="b4",
    category="furniture",
    product_type="coffee table",
    title="zephyr foldable coffee table for small spaces",
    attributes=["foldable", "for small spaces"],
    options={"color": ["walnut", "oak"], "size": ["small", "medium", "large"]},
    price=120.0,
)
GRANOLA = Product(
    asin="b5",
    category="food",
    product_type="granola",
    title="cedar & co kosher granola",
    attributes=["kosher", "gift box"],
    options={"flavor": ["honey", "vanilla"], "size": ["2 pound", "5 pound"]},
    price=12.0,
)
NAVY_SHIRT = SHIRT.model_copy(update={"title": "norvik cotton slim fit navy t-shirt"})


def asks(target: Product, attributes: list[str], options: dict[str, str]) -> Goal:
    return Goal(
        instruction="-",
        category=target.category,
        product_type=target.product_type,
        attributes=attributes,
        options=options,
        price_upper=500.0,
        target=target.asin,
        query=target.product_type,
    )


# (case, goal, product, chosen, WebShop master's reward, WebShop v2's reward)
PAIRS = [
    # a chosen value found in the title is no credit under either (the rule before 2026-12 gave
    # both 1.0)
    (
        "chosen small in 'for small spaces'",
        asks(TABLE, ["foldable"], {"color": "walnut", "size": "medium"}),
        TABLE,
        {"color": "walnut", "size": "small"},
        0.75,
        0.75,
    ),
    (
        "chosen blue in 'bluetooth'",
        asks(SPEAKER, ["shockproof"], {"color": "red", "pack": "2 pack"}),
        SPEAKER,
        {"color": "blue", "pack": "2 pack"},
        0.75,
        0.75,
    ),
    # v2 credits a goal value the title contains, whatever was chosen (substring: "red" in
    # "powered")
    (
        "goal small in 'for small spaces'",
        asks(TABLE, ["foldable"], {"color": "walnut", "size": "small"}),
        TABLE,
        {"color": "walnut", "size": "large"},
        0.75,
        1.0,
    ),
    (
        "goal blue in 'bluetooth'",
        asks(SPEAKER, ["shockproof"], {"color": "blue", "pack": "1 pack"}),
        SPEAKER,
        {"color": "red", "pack": "1 pack"},
        0.75,
        1.0,
    ),
    (
        "goal red in 'powered'",
        asks(SOLAR, ["solar powered"], {"color": "red", "pack": "2 pack"}),
        SOLAR,
        {"color": "black", "pack": "2 pack"},
        0.75,
        1.0,
    ),
    (
        "nothing chosen, goal navy in the title",
        asks(NAVY_SHIRT, ["cotton"], {"size": "small", "color": "navy"}),
        NAVY_SHIRT,
        {},
        0.5,
        0.75,
    ),
    # master matches sizes by token-set ratio (100 for x-small/small and large/x-large, 86 for 2/5
    # pound); v2 exactly
    (
        "x-small for small",
        asks(SHIRT, ["cotton"], {"size": "small", "color": "navy"}),
        SHIRT,
        {"size": "x-small", "color": "navy"},
        1.0,
        0.75,
    ),
    (
        "large for x-large",
        asks(SHIRT, ["cotton"], {"size": "x-large", "color": "navy"}),
        SHIRT,
        {"size": "large", "color": "navy"},
        1.0,
        0.75,
    ),
    (
        "2 pound for 5 pound",
        asks(GRANOLA, ["kosher"], {"flavor": "honey", "size": "5 pound"}),
        GRANOLA,
        {"flavor": "honey", "size": "2 pound"},
        1.0,
        0.75,
    ),
    # master counts per goal value: one chosen "small" meets both "small" and "x-small"
    (
        "one chosen value, two goal values",
        asks(SHIRT, ["cotton"], {"size": "small", "fit": "x-small"}),
        SHIRT,
        {"size": "small"},
        1.0,
        0.75,
    ),
    # the same under both
    (
        "pack of 2 for 2 pack",
        asks(SPEAKER, ["shockproof"], {"color": "black", "pack": "2 pack"}),
        SPEAKER,
        {"color": "black", "pack": "pack of 2"},
        1.0,
        1.0,
    ),
    (
        "blue for navy blue",
        asks(SHIRT, ["cotton"], {"size": "small", "color": "navy blue"}),
        SHIRT,
        {"size": "small", "color": "blue"},
        1.0,
        1.0,
    ),
    (
        "x-small for small, not a size",
        asks(SHIRT, ["cotton"], {"fit": "small", "color": "navy"}),
        SHIRT,
        {"fit": "x-small", "color": "navy"},
        1.0,
        1.0,
    ),
    (
        "wrong colour",
        asks(SHIRT, ["cotton"], {"size": "small", "color": "navy"}),
        SHIRT,
        {"size": "small", "color": "black"},
        0.75,
        0.75,
    ),
    (
        "wrong size and colour",
        asks(TABLE, ["foldable"], {"color": "oak", "size": "large"}),
        TABLE,
        {"color": "walnut", "size": "medium"},
        0.5,
        0.5,
    ),
    (
        "over the price bound",
        asks(GRANOLA, ["kosher"], {"flavor": "honey", "size": "5 pound"}).model_copy(
            update={"price_upper": 10.0}
        ),
        GRANOLA,
        {"flavor": "honey", "size": "5 pound"},
        0.75,
        0.75,
    ),
]


@pytest.mark.parametrize(
    "case, wanted, bought, chosen, master, v2", PAIRS, ids=[p[0] for p in PAIRS]
)
def test_option_rules_give_webshops_rewards(case, wanted, bought, chosen, master, v2):
    assert shop_reward(wanted, bought, chosen, rules="master")["reward"] == pytest.approx(master)
    assert shop_reward(wanted, bought, chosen, rules="v2")["reward"] == pytest.approx(v2)


def test_no_credit_for_a_wrong_chosen_value_found_in_the_title():
    # the reviewer's false successes: the target bought with one wrong option scored 1.0
    for wanted, bought, chosen in [
        (
            asks(TABLE, ["foldable"], {"color": "walnut", "size": "medium"}),
            TABLE,
            {"color": "walnut", "size": "small"},
        ),
        (
            asks(SPEAKER, ["shockproof"], {"color": "red", "pack": "2 pack"}),
            SPEAKER,
            {"color": "blue", "pack": "2 pack"},
        ),
    ]:
        for rules in WEBSHOP_RULES:
            parts = shop_reward(wanted, bought, chosen, rules=rules)
            assert parts["r_option"] == 0.5 and not is_success(parts["reward"]), rules


def test_fuzzy_option_match():
    assert fuzzy_match("x-small", "small") and fuzzy_match("2 pack", "pack of 2")
    assert not fuzzy_match("small", "large") and not fuzzy_match("navy", "black")
    fit = goal(options={"fit": "small"})
    for rules in WEBSHOP_RULES:
        # not a size: fuzzy
        assert shop_reward(fit, SHIRT, {"fit": "x-small"}, rules=rules)["r_option"] == 1.0
        assert shop_reward(fit, SHIRT, {"fit": "large"}, rules=rules)["r_option"] == 0.0
        packs = goal(options={"pack": "2 pack"})
        assert shop_reward(packs, SHIRT, {"pack": "pack of 2"}, rules=rules)["r_option"] == 1.0


def test_sizes_exact_under_v2_fuzzy_under_master():
    near = {"size": "x-small", "color": "navy"}
    assert shop_reward(GOAL, SHIRT, near, rules="v2")["r_option"] == 0.5
    assert shop_reward(GOAL, SHIRT, near, rules="master")["r_option"] == 1.0
    for rules in WEBSHOP_RULES:
        assert shop_reward(GOAL, SHIRT, {"size": "medium", "color": "navy"}, rules=rules)[
            "reward"
        ] == pytest.approx(4 / 5)
        assert shop_reward(GOAL, SHIRT, {}, rules=rules)["reward"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        shop_reward(GOAL, SHIRT, ASKED, rules="v3")


def test_colour_normalisation():
    assert normalize_color("Navy Blue") == "blue" and normalize_color("light blue") == "blue"
    assert normalize_color("x-large") == "x-large"
    assert not fuzzy_match("light blue", "sky blue")  # matched only through normalisation
    light = goal(options={"color": "light blue"})
    for rules in WEBSHOP_RULES:
        assert shop_reward(light, SHIRT, {"color": "sky blue"}, rules=rules)["r_option"] == 1.0
        assert (
            shop_reward(
                goal(options={"color": "navy blue"}), SHIRT, {"color": "blue"}, rules=rules
            )["r_option"]
            == 1.0
        )
        assert shop_reward(light, SHIRT, {"color": "black"}, rules=rules)["r_option"] == 0.0


def test_v2_count_is_capped_at_the_goal_values():
    # two chosen values meeting one goal value: WebShop v2 counts 2 of 1 and scores (2 + 2 + 1) /
    # (2 + 1 + 1) = 1.25; the shop caps the count (a documented deviation). Master counts per goal
    # value: 1.0 there too.
    one = goal(options={"color": "navy"})
    twice = {"color": "navy", "trim": "navy"}
    for rules in WEBSHOP_RULES:
        assert shop_reward(one, SHIRT, twice, rules=rules) == {
            "reward": 1.0,
            "r_type": 1.0,
            "r_att": 1.0,
            "r_option": 1.0,
            "r_price": 1.0,
        }


def test_default_webshop_rules_are_v2():
    near = {"size": "x-small", "color": "navy"}
    assert shop_reward(GOAL, SHIRT, near) == shop_reward(GOAL, SHIRT, near, rules="v2")
    assert DEFAULT_WEBSHOP_RULES == "v2" and set(WEBSHOP_RULES) == {"master", "v2"}


# -- price -----------------------------------------------------------------------------------------
def test_price_bound():
    assert shop_reward(GOAL, product(price=30.0), ASKED)["r_price"] == 1.0
    dear = shop_reward(GOAL, product(price=30.01), ASKED)
    assert dear["r_price"] == 0.0 and dear["reward"] == pytest.approx(4 / 5)


# -- the simple rule, unchanged --------------------------------------------------------------------
def test_simple_rule_is_the_earlier_one():
    hoodie = product(product_type="hoodie")  # titled t-shirt: WebShop's title rule calls it one
    mug = product(product_type="mug", category="furniture")
    assert shop_reward(GOAL, hoodie, ASKED, rule="simple")["reward"] == pytest.approx(0.5)
    assert shop_reward(GOAL, mug, ASKED, rule="simple")["reward"] == pytest.approx(0.1)
    assert shop_reward(GOAL, hoodie, ASKED)["reward"] == 1.0
    near = {"size": "x-small", "color": "navy"}
    fit = goal(options={"fit": "small"})
    assert shop_reward(fit, SHIRT, {"fit": "x-small"}, rule="simple")["r_option"] == 0.0
    assert shop_reward(GOAL, SHIRT, near, rule="simple") == {
        "reward": pytest.approx(4 / 5),
        "r_type": 1.0,
        "r_att": 1.0,
        "r_option": 0.5,
        "r_price": 1.0,
    }
    fuzzy_attr = product(attributes=["cottons", "slim-fit"], title="norvik t-shirt")
    assert shop_reward(GOAL, fuzzy_attr, ASKED, rule="simple")["reward"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        shop_reward(GOAL, SHIRT, ASKED, rule="fuzzy")


def test_default_rule_is_webshops():
    hoodie = product(product_type="hoodie")
    # the title still says t-shirt: WebShop's type rule
    assert shop_reward(GOAL, hoodie, ASKED)["reward"] == 1.0
    assert shop_reward(GOAL, hoodie, ASKED, rule="simple")["reward"] == pytest.approx(0.5)
