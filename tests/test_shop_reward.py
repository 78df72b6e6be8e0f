"""The shop's reward rules on hand-made goal/product pairs: WebShop's (type from query, category levels and title
nouns; fuzzy attributes and options with colour normalisation; price) and the earlier simple rule."""

import pytest

from teachable.envs.shop.catalog import CATEGORIES, Goal, Product, generate_catalog
from teachable.envs.shop.reward import (
    fuzzy_match,
    is_success,
    normalize_color,
    nouns,
    shop_reward,
    type_reward,
)

SHIRT = Product(asin="b1", category="fashion", product_type="t-shirt", title="norvik cotton slim fit t-shirt",
                attributes=["cotton", "slim fit", "machine wash", "casual"],
                options={"size": ["x-small", "small", "medium"], "color": ["navy", "black"]}, price=20.0)
GOAL = Goal(instruction="i need a cotton slim fit t-shirt with size small, navy, and price lower than 30.00 dollars",
            category="fashion", product_type="t-shirt", attributes=["cotton", "slim fit"],
            options={"size": "small", "color": "navy"}, price_upper=30.0, target="b1", query="cotton slim fit t-shirt")
ASKED = {"size": "small", "color": "navy"}


def product(**update) -> Product:
    return SHIRT.model_copy(update=update)


def goal(**update) -> Goal:
    return GOAL.model_copy(update=update)


def test_full_match_is_one_and_the_parts_are_kept():
    parts = shop_reward(GOAL, SHIRT, ASKED)
    assert parts == {"reward": 1.0, "r_type": 1.0, "r_att": 1.0, "r_option": 1.0, "r_price": 1.0}
    assert is_success(parts["reward"]) and shop_reward(GOAL, SHIRT, ASKED, rule="webshop") == parts


# -- r_type ---------------------------------------------------------------------------------------------------------
def test_type_same_query_carries_a_low_title_score():
    # five goal nouns, one in the title: title score 0.2 (not above 0.2), so only the query match gives 1.0
    wanted = goal(product_type="shirt crew tunic blouse jersey")
    same = product(product_type="shirt crew tunic blouse jersey", title="norvik cotton slim fit shirt")
    other = product(product_type="tank top", title="norvik cotton slim fit shirt")
    assert type_reward(wanted, same) == {"r_type": 1.0, "query_match": True, "category_match": True,
                                         "title_score": pytest.approx(0.2)}
    assert type_reward(wanted, other)["r_type"] == 0.5


def test_type_category_levels_need_two_shared():
    # the path is (category, product type); one shared level (the category) is no match
    other_type = product(product_type="hoodie", title="norvik hoodie with tee print")
    wanted = goal(product_type="tee print shirt crew jersey")
    result = type_reward(wanted, other_type)
    assert result["category_match"] is False and result["query_match"] is False
    assert result["title_score"] == pytest.approx(0.4) and result["r_type"] == 1.0  # title above 0.2 suffices
    assert type_reward(goal(product_type="tee shirt crew jersey polo"), other_type)["r_type"] == 0.5  # 0.2
    # levels compare as a set, order ignored: (fashion, t-shirt) vs (t-shirt, fashion) shares two
    swapped = product(category="t-shirt", product_type="fashion")
    assert type_reward(GOAL, swapped)["category_match"] is True
    assert type_reward(GOAL, product(category="beauty"))["category_match"] is False


def test_type_noun_share_and_zero_when_no_noun_is_shared():
    # another type whose title shares a noun of the goal's type: half the nouns, r_type 1 (WebShop's title rule)
    case = Product(asin="b2", category="electronics", product_type="phone case", title="lumen shockproof phone case",
                   attributes=["shockproof"], options={"color": ["black"]}, price=9.0)
    charger = goal(category="electronics", product_type="phone charger", attributes=[], options={})
    assert type_reward(charger, case)["title_score"] == pytest.approx(0.5)
    assert type_reward(charger, case)["r_type"] == 1.0
    # no shared noun: 0 even for the same product type (the title overrides query and category)
    plain = product(title="norvik crew tee")
    assert type_reward(GOAL, plain) == {"r_type": 0.0, "query_match": True, "category_match": True,
                                        "title_score": 0.0}
    assert shop_reward(GOAL, plain, ASKED)["reward"] == 0.0
    # below 0.1 but above 0: r_type 0.1 whatever matches
    many = goal(product_type="shirt top tunic blouse jersey polo vest tank camisole henley sweater")
    assert type_reward(many, product(product_type=many.product_type, title="norvik shirt"))["r_type"] == 0.1
    # a goal type without nouns scores 0.2: r_type from query / category only
    bare = goal(product_type="black")
    assert type_reward(bare, product(product_type="black"))["r_type"] == 1.0
    assert type_reward(bare, product(product_type="white"))["r_type"] == 0.5


def test_nouns_without_a_tagger():
    assert nouns("Men’s Cotton Crew T-Shirts, 2 Pack") == ["men", "cotton", "crew", "t-shirt", "pack"]
    assert nouns("dark chocolate") == ["chocolate"] and nouns("green tea") == ["tea"]
    assert nouns("dresses and glasses for berries") == ["dress", "glass", "berry"]
    assert nouns("coffee beans") == ["coffee", "bean"] == nouns("coffee bean")
    # every generated type has nouns, and each generated product's own title scores 1 on its type
    assert all(nouns(ptype) for spec in CATEGORIES.values() for ptype in spec["types"])
    for p in generate_catalog(50, 0):
        mine = GOAL.model_copy(update={"category": p.category, "product_type": p.product_type})
        assert type_reward(mine, p) == {"r_type": 1.0, "query_match": True, "category_match": True,
                                        "title_score": 1.0}


# -- attributes -----------------------------------------------------------------------------------------------------
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


# -- options -------------------------------------------------------------------------------------------------------
def test_fuzzy_option_match():
    assert fuzzy_match("x-small", "small") and fuzzy_match("2 pack", "pack of 2")
    assert not fuzzy_match("small", "large") and not fuzzy_match("navy", "black")
    fit = goal(options={"fit": "small"})
    assert shop_reward(fit, SHIRT, {"fit": "x-small"})["r_option"] == 1.0  # not a size option: fuzzy
    assert shop_reward(fit, SHIRT, {"fit": "large"})["r_option"] == 0.0
    packs = goal(options={"pack": "2 pack"})
    assert shop_reward(packs, SHIRT, {"pack": "pack of 2"})["r_option"] == 1.0


def test_size_options_compare_exactly():
    # WebShop matches options named "size" exactly: x-small does not count for small there
    assert shop_reward(GOAL, SHIRT, {"size": "x-small", "color": "navy"})["r_option"] == 0.5
    assert shop_reward(GOAL, SHIRT, {"size": "medium", "color": "navy"})["reward"] == pytest.approx(4 / 5)
    assert shop_reward(GOAL, SHIRT, {})["reward"] == pytest.approx(3 / 5)


def test_colour_normalisation():
    assert normalize_color("Navy Blue") == "blue" and normalize_color("light blue") == "blue"
    assert normalize_color("x-large") == "x-large"
    assert not fuzzy_match("light blue", "sky blue")  # matched only through normalisation
    light = goal(options={"color": "light blue"})
    assert shop_reward(light, SHIRT, {"color": "sky blue"})["r_option"] == 1.0
    assert shop_reward(goal(options={"color": "navy blue"}), SHIRT, {"color": "blue"})["r_option"] == 1.0
    assert shop_reward(light, SHIRT, {"color": "black"})["r_option"] == 0.0


def test_option_in_title_counts_and_the_count_is_capped():
    titled = product(title="norvik cotton slim fit black t-shirt")
    assert shop_reward(GOAL, titled, {"size": "small", "color": "black"})["r_option"] == 1.0  # WebShop's title hit
    one = goal(options={"color": "navy"})
    twice = {"color": "navy", "trim": "navy"}  # two chosen values matching one goal value
    assert shop_reward(one, SHIRT, twice)["reward"] == 1.0 and shop_reward(one, SHIRT, twice)["r_option"] == 1.0


# -- price --------------------------------------------------------------------------------------------------------
def test_price_bound():
    assert shop_reward(GOAL, product(price=30.0), ASKED)["r_price"] == 1.0
    dear = shop_reward(GOAL, product(price=30.01), ASKED)
    assert dear["r_price"] == 0.0 and dear["reward"] == pytest.approx(4 / 5)


# -- the simple rule, unchanged ----------------------------------------------------------------------------------
def test_simple_rule_is_the_earlier_one():
    hoodie = product(product_type="hoodie")  # titled t-shirt: WebShop's title rule calls it one
    mug = product(product_type="mug", category="furniture")
    assert shop_reward(GOAL, hoodie, ASKED, rule="simple")["reward"] == pytest.approx(0.5)
    assert shop_reward(GOAL, mug, ASKED, rule="simple")["reward"] == pytest.approx(0.1)
    assert shop_reward(GOAL, hoodie, ASKED)["reward"] == 1.0
    near = {"size": "x-small", "color": "navy"}
    fit = goal(options={"fit": "small"})
    assert shop_reward(fit, SHIRT, {"fit": "x-small"}, rule="simple")["r_option"] == 0.0
    assert shop_reward(GOAL, SHIRT, near, rule="simple") == {"reward": pytest.approx(4 / 5), "r_type": 1.0,
                                                             "r_att": 1.0, "r_option": 0.5, "r_price": 1.0}
    fuzzy_attr = product(attributes=["cottons", "slim-fit"], title="norvik t-shirt")
    assert shop_reward(GOAL, fuzzy_attr, ASKED, rule="simple")["reward"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        shop_reward(GOAL, SHIRT, ASKED, rule="fuzzy")


def test_default_rule_is_webshops():
    hoodie = product(product_type="hoodie")
    assert shop_reward(GOAL, hoodie, ASKED)["reward"] == 1.0  # the title still says t-shirt: WebShop's type rule
    assert shop_reward(GOAL, hoodie, ASKED, rule="simple")["reward"] == pytest.approx(0.5)
