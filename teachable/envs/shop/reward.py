"""WebShop's reward for a purchase: the product-type score times the share of the goal's attributes,
options and price bound that the bought product (with the options chosen on its page) satisfies.

    reward = r_type * (n_attributes_met + n_options_met + r_price) / (n_attributes + n_options + 1)

Two rules compute the parts (`shop_reward(..., rule=...)`, "webshop" by default; the environment
passes its `ShopEnv.reward_rule`, the param `shop.reward`); under "webshop", `rules=` names the
WebShop branch whose option rules apply ("master" or "v2"; `ShopEnv.webshop_rules`, the param
`shop.webshop_rules`):

"webshop" follows the rules of WebShop's `get_reward` (princeton-nlp/WebShop,
web_agent_site/engine/goal.py):

* r_type. WebShop compares the bought product with the goal's target on three signals: the search
  query the product was scraped under (query match), the levels of its category path shared with the
  target's, ignoring order (a match at two or more), and the share of the nouns of the target's
  title that the bought product's title also has (title score). r_type is 1.0 when any of the three
  matches (the title score counting above 0.2), 0.5 otherwise; then 0.1 when the title score is
  below 0.1 and 0.0 when it is 0, whatever the other two say. A goal without nouns gets title
  score 0.2. Our inputs:
  - query -> the product type. WebShop's scrape queries are product-type searches ("men's
    t-shirts"); our goal's `query` is the expert's search instead, and products keep none, so the
    query match is `product.product_type == goal.product_type` (the goal's type is its target's).
  - category path -> the two levels we keep, (category, product_type): generated products have
    exactly these, and `load_webshop` keeps WebShop's top category and the last level of
    `product_category`. Two shared levels need both to agree, so on our data the category match
    coincides with the query match; it is kept for the rule's shape.
  - the target's title -> the goal's product type. A Goal does not carry its target's title (and
    `shop_reward` sees no catalogue), so the desired nouns are those of the goal's product type, the
    part of a title that names what the product is; the bought product's title is used as WebShop
    uses it. So on our data the title score is the share of the goal type's nouns that appear in the
    bought title: 1.0 for a product of the same type (generated titles end with their type), 0.5 for
    types sharing one of two nouns ("phone charger" vs "phone case", or a bookshelf titled "... for
    home office ..." against an "office chair" goal), 0 otherwise.
* nouns. WebShop tags nouns with spaCy (en_core_web_sm on master, en_core_web_lg on v2), whose
  models cannot be downloaded here. `nouns()` is a deterministic stand-in: lower-cased word tokens
  (hyphenated words kept whole, "t-shirt"; possessive "'s" dropped), without numbers, a short
  stop-word list and a short list of adjectives common in product names (colours, sizes, "dark",
  "green", "organic", ...), each reduced to a singular by suffix rules ("beans" -> "bean",
  "dresses" -> "dress") so a plural category name matches a singular title. On the generated
  catalogue it is exact by construction: every product-type word is a noun except "dark" (chocolate)
  and "green" (tea), which the adjective list drops (tests check every generated type). On
  WebShop-source titles it is a heuristic: it keeps some adjectives spaCy would drop, which only
  matters where such a word is part of a goal's type.
* attributes. A goal attribute is met when some attribute of the product scores above 85 on the
  token-set ratio (rapidfuzz's `fuzz.token_set_ratio` with its default processor, lower-casing and
  replacing punctuation by spaces, rounded to an integer as thefuzz does), or else when the
  lower-cased title contains it. WebShop also searches bullet points and description; our products
  have neither (their attributes are the page's features).
* options, by one of WebShop's two rule sets (`rules=`, the param `shop.webshop_rules`). Both
  lower-case and colour-normalise every chosen value and every goal value as WebShop's
  `normalize_color`: the alphabetically first of WebShop's colour words it contains ("navy blue" ->
  "blue", "light blue" -> "blue"). Goal values are compared without their option names (WebShop's
  human goals list values only).
  - "master" (WebShop's default branch, the rules its published results use): a goal value is met
    when some chosen value scores above 85 on the token-set ratio against it, sizes included
    ("x-small" meets "small", "x-large" meets "large", "2 pound" meets "5 pound" at 86). At most one
    count per goal value; no title check.
  - "v2" (WebShop's `v2` branch, not merged into master): a chosen value under an option named
    "size" counts when it equals a goal value (EXACT_MATCH_OPTS); any other chosen value counts when
    it scores above 85 against a goal value. Then each goal value not met so far counts when the
    product's title contains it (WebShop also searches bullet points and description, which our
    products lack) - the goal's value, not the chosen one: a goal asking for "small" is credited by
    a title "... for small spaces ..." whatever size was chosen, as in WebShop v2. Two deviations:
    v2's synonym look-ups (PyMultiDictionary, a web dictionary, for options and attributes) are left
    out, and the count is capped at the number of goal values, where v2's can exceed it (two chosen
    values matching one goal value) and push the reward above 1.
  Under neither does a chosen value count because its own string occurs in the title (the rule
  before 2026-12-07, which credited a wrong "small" in "for small spaces" and a wrong "blue" in
  "bluetooth").
* price: 1 when the product's price is at most the goal's bound, else 0 (WebShop's price of the
  chosen option combination is our single price).

"simple" is the earlier exact rule, kept for old runs: r_type 1 for the same product type, 0.5 for
another type of the same category, 0.1 otherwise; an attribute is met when the product lists it or
its title contains it; an option when the chosen values include the goal's value exactly; the same
price part.

Success is reward 1.0 under either rule.
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz, utils

from teachable.envs.shop.catalog import Goal, Product

RULES = ("webshop", "simple")
# WebShop's option rules: its master or its v2 branch (module docstring)
WEBSHOP_RULES = ("master", "v2")
DEFAULT_WEBSHOP_RULES = "v2"  # the params default (shop.webshop_rules; why v2 there)
SAME_CATEGORY, OTHER_CATEGORY = 0.5, 0.1  # the simple rule's r_type for another type
FUZZY_THRESHOLD = 85  # a match scores strictly above this (WebShop's `> 85`)
# option names compared exactly under v2 (WebShop v2's EXACT_MATCH_OPTS)
EXACT_OPTIONS = frozenset({"size"})

# WebShop's colour words (normalize.py's COLOR_SET, an alphabetical list): a value normalises to the
# first of them, in alphabetical order, that it contains.
COLOR_WORDS = tuple(
    sorted(
        """
    alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown
    burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee
    cognac copper coral cranberry cream crystal dark denim eggplant elephant espresso fuchsia gold
    granite grape graphite grass gray green grey heather indigo ivory ivy khaki lavender lemon
    leopard light lilac lime magenta maroon mauve merlot midnight mint mocha multicolor mushroom
    mustard natural navy nude olive orange peach pewter pink plum purple rainbow red rose royal rust
    sand sapphire seashell silver skull slate steel stone stonewash sunflower tan taupe teal tiger
    turquoise violet walnut wheat white wine yellow
""".split()
    )
)

# -- nouns without a tagger ------------------------------------------------------------------------
_STOPWORDS = frozenset(
    """
    a an the and or nor for with without of in on at to by from into onto up as per plus via vs x &
    this that these those it its is are be
""".split()
)
_ADJECTIVES = frozenset(
    """
    dark green black white blue red pink purple yellow orange brown beige grey gray silver golden
    small large big mini little medium extra tall short long wide narrow thin thick slim heavy
    lightweight new old best great good premium original classic modern vintage casual formal cute
    soft hard fresh pure natural organic waterproof wireless portable adjustable compatible durable
    comfortable breathable professional elegant sturdy multi non free
""".split()
)
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def singular(word: str) -> str:
    """A plural's singular by suffix rules (deterministic; no dictionary): berries->berry,
    dresses->dress, beans->bean; words ending in ss, us, is or shorter than four letters are left
    alone."""
    if len(word) < 4 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def nouns(text: str) -> list[str]:
    """The nouns of a product name or type, in order, without a tagger (see the module
    docstring)."""
    found = []
    for token in _TOKEN.findall(text.lower().replace("\u2019", "'")):
        token = token.removesuffix("'s").strip("'")
        if (
            not token
            or not re.search(r"[a-z]", token)
            or token in _STOPWORDS
            or token in _ADJECTIVES
        ):
            continue
        found.append(singular(token))
    return found


# -- matching --------------------------------------------------------------------------------------
def fuzzy_score(a: str, b: str) -> int:
    """thefuzz's token_set_ratio (lower-cased, punctuation as spaces, rounded to an integer), via
    rapidfuzz."""
    return int(round(fuzz.token_set_ratio(a, b, processor=utils.default_process)))


def fuzzy_match(a: str, b: str) -> bool:
    return fuzzy_score(a, b) > FUZZY_THRESHOLD


def normalize_color(value: str) -> str:
    """WebShop's colour normalisation: the (alphabetically) first colour word the value contains,
    else the value."""
    value = value.lower()
    return next((color for color in COLOR_WORDS if color in value), value)


def category_levels(category: str, product_type: str) -> set[str]:
    """The category path's levels as WebShop compares them (a set: order and repeats ignored)."""
    return {level.strip().lower() for level in (category, product_type) if level.strip()}


def type_reward(goal: Goal, product: Product) -> dict:
    """WebShop's r_type with its three signals: query match, category match, title score."""
    query_match = product.product_type.lower() == goal.product_type.lower()
    shared = category_levels(goal.category, goal.product_type) & category_levels(
        product.category, product.product_type
    )
    category_match = len(shared) >= 2
    desired = set(nouns(goal.product_type))
    title_score = len(desired & set(nouns(product.title))) / len(desired) if desired else 0.2
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {
        "r_type": r_type,
        "query_match": query_match,
        "category_match": category_match,
        "title_score": title_score,
    }


def attributes_met(goal: Goal, product: Product) -> int:
    title = product.title.lower()
    met = 0
    for wanted in goal.attributes:
        if any(fuzzy_match(have, wanted) for have in product.attributes) or wanted.lower() in title:
            met += 1
    return met


def options_met(
    goal: Goal, product: Product, chosen: dict[str, str], rules: str = DEFAULT_WEBSHOP_RULES
) -> int:
    """How many of the goal's option values the chosen options (option name -> value) meet, under
    WebShop's `rules` ("master" or "v2"; see the module docstring)."""
    wanted = [normalize_color(v) for v in goal.options.values()]
    picked = {name.lower(): normalize_color(value) for name, value in chosen.items()}
    if rules == "master":
        return sum(any(fuzzy_match(value, w) for value in picked.values()) for w in wanted)
    if rules != "v2":
        raise ValueError(f"unknown WebShop rule set {rules!r}; known: {list(WEBSHOP_RULES)}")
    met, found = 0, set()
    for name, value in picked.items():
        if name in EXACT_OPTIONS:
            if value in wanted:
                met += 1
                found.add(value)
        else:
            hit = next((w for w in wanted if fuzzy_match(w, value)), None)
            if hit is not None:
                met += 1
                found.add(hit)
    if len(found) < len(wanted):  # goal values still unmet: found in the title
        title = product.title.lower()
        met += sum(w not in found and w in title for w in wanted)
    return min(met, len(wanted))


# -- the reward ------------------------------------------------------------------------------------
def _parts(r_type: float, n_att: int, n_opt: int, r_price: float, goal: Goal) -> dict:
    total = r_type * (n_att + n_opt + r_price) / (len(goal.attributes) + len(goal.options) + 1)
    return {
        "reward": round(total, 6),
        "r_type": r_type,
        "r_att": n_att / max(1, len(goal.attributes)),
        "r_option": n_opt / max(1, len(goal.options)),
        "r_price": r_price,
    }


def _simple_type(goal: Goal, product: Product) -> float:
    if product.product_type == goal.product_type:
        return 1.0
    return SAME_CATEGORY if product.category == goal.category else OTHER_CATEGORY


def shop_reward(
    goal: Goal,
    product: Product,
    chosen: dict[str, str],
    rule: str = "webshop",
    rules: str = DEFAULT_WEBSHOP_RULES,
) -> dict:
    """The reward and its parts for buying `product` with options `chosen` (option name -> value),
    under `rule` ("webshop" or "simple"); `rules` picks WebShop's option rule set for "webshop"
    ("master" or "v2")."""
    r_price = float(product.price <= goal.price_upper)
    if rule == "webshop":
        return _parts(
            type_reward(goal, product)["r_type"],
            attributes_met(goal, product),
            options_met(goal, product, chosen, rules),
            r_price,
            goal,
        )
    if rule == "simple":
        n_att = sum(a in product.attributes or a in product.title for a in goal.attributes)
        picked = set(chosen.values())
        n_opt = sum(value in picked for value in goal.options.values())
        return _parts(_simple_type(goal, product), n_att, n_opt, r_price, goal)
    raise ValueError(f"unknown shop reward rule {rule!r}; known: {list(RULES)}")


def is_success(reward: float) -> bool:
    return reward >= 1.0 - 1e-9
