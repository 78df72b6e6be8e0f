"""The WebShop-style shop as a `TextEnv`: search -> results (10 a page, next/prev) -> item
(options) -> buy.

Actions are WebShop's: `search[query]` on the search page (an open action: `valid_actions()` offers
the template `search[...]`, see `teachable.policy.candidates`) and `click[label]` for everything
clickable. Observations are compact text like WebShop's simple mode. An invalid action changes
nothing and says so. Buying ends the episode with WebShop's reward (`reward.py`); success is
reward 1.0. The expert searches the goal's query, pages to its target (or searches the target's
title when the query does not find it), chooses the goal's options and buys. A state is (level,
seed, actions), restored by replay and checked against `state_hash()`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from pathlib import Path

from teachable.envs.base import replay
from teachable.envs.search import Searcher
from teachable.envs.shop.catalog import (
    SHOP_LEVELS,
    Goal,
    Product,
    make_goal,
    products_of,
    read_catalog,
)
from teachable.envs.shop.reward import is_success, shop_reward

PAGE_SIZE, MAX_RESULTS = 10, 50  # WebShop's
SEARCH = "search[...]"  # the open action's template
BACK, NEXT, PREV, BUY = "click[back to search]", "click[next >]", "click[< prev]", "click[buy now]"
_ACTION = re.compile(r"^(search|click)\[(.*)\]$", re.DOTALL)


class ShopWorld:
    """A built shop: the catalogue, its goals (WebShop's instruction list, or none: drawn per seed)
    and the search engine. Loaded once per directory and shared by every environment in the
    process."""

    _loaded: dict[str, ShopWorld] = {}  # noqa: RUF012

    def __init__(self, products: list[Product], goals: list[Goal], searcher):
        self.products = {p.asin: p for p in products}
        self.goals = goals
        self.searcher = searcher
        self._by_level = {lvl: products_of(products, lvl) for lvl in SHOP_LEVELS}
        self._goals_by_level = {
            lvl: [g for g in goals if lvl == "all" or g.category == lvl] for lvl in SHOP_LEVELS
        }
        self._goal_cache: dict[tuple[str, int], Goal] = {}

    @classmethod
    def load(cls, directory: str | Path) -> ShopWorld:
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.exists() or not json.loads(meta_path.read_text()).get("built"):
            raise FileNotFoundError(
                f"no shop built in {directory}: run `dvc repro index` with env.name: shop"
            )
        key = f"{directory.resolve()}:{meta_path.read_text()}"
        if key not in cls._loaded:
            products = read_catalog(directory / "products.jsonl", Product)
            goals_path = directory / "goals.jsonl"
            goals = read_catalog(goals_path, Goal) if goals_path.exists() else []
            cls._loaded[key] = cls(products, goals, Searcher.shared(directory / "index"))
        return cls._loaded[key]

    def goal(self, level: str, seed: int) -> Goal:
        key = (level, seed)
        if key not in self._goal_cache:
            listed = self._goals_by_level[level]
            if listed:
                self._goal_cache[key] = listed[seed % len(listed)]
            elif self._by_level[level]:
                self._goal_cache[key] = make_goal(self._by_level[level], seed)
            else:
                raise ValueError(f"the shop's catalogue has no products for level {level!r}")
        return self._goal_cache[key]

    def search(self, query: str) -> tuple[str, ...]:
        return tuple(a for a in self.searcher.search(query, MAX_RESULTS) if a in self.products)


class ShopEnv:
    env_name = "shop"
    LEVELS = tuple(SHOP_LEVELS)
    world_dir: str = "data/shop"  # the `index` stage's output
    n_open_samples: int = 4  # the student's sampled queries per search page (shop.n_query_samples)
    # shop.reward: WebShop's rules, or "simple" (the earlier exact match)
    reward_rule: str = "webshop"
    # shop.webshop_rules: under "webshop", WebShop's "master" or "v2" option rules
    webshop_rules: str = "v2"

    def __init__(self, level: str, max_steps: int | None = None, world: ShopWorld | None = None):
        if level not in SHOP_LEVELS:
            raise ValueError(f"unknown shop level {level!r}; known: {list(SHOP_LEVELS)}")
        self.level = level
        self.world = world or ShopWorld.load(self.world_dir)
        self.max_steps = max_steps or 15
        self.seed: int | None = None
        self.actions: list[str] = []
        self.history: list[dict] = []
        self.mission = self.observation = ""

    # -- gymnasium-style API -----------------------------------------------------------------------
    def reset(self, seed: int) -> tuple[str, dict]:
        self.seed = int(seed)
        self.goal = self.world.goal(self.level, self.seed)
        self.mission = self.goal.instruction
        self.actions, self.history = [], []
        self.page, self.query, self.results, self.page_no = "search", "", (), 0
        self.item: str | None = None
        self.chosen: dict[str, str] = {}
        self.reward = 0.0
        self.observation = self._render()
        return self.observation, {"mission": self.mission}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        before = self.observation
        self.actions.append(action)
        self.history.append({"obs": before, "action": action})
        ok = self._apply(action)
        terminated = self.page == "done"
        reward = self.reward if terminated and ok else 0.0
        self.observation = (
            self._render()
            if ok
            else f"Invalid action '{action}': nothing changed. {self._render()}"
        )
        truncated = self.step_count >= self.max_steps and not terminated
        return (
            self.observation,
            reward,
            terminated,
            truncated,
            {"success": terminated and is_success(self.reward), "valid": ok},
        )

    def _apply(self, action: str) -> bool:
        match = _ACTION.match(action.strip())
        if match is None or self.page == "done":
            return False
        kind, arg = match.group(1), match.group(2).strip()
        if kind == "search":
            if self.page != "search" or not arg or arg == "...":
                return False
            self.query = arg.lower()
            self.results, self.page_no, self.page = self.world.search(self.query), 0, "results"
            return True
        if action not in self.valid_actions():
            return False
        if action == BACK:
            self.page, self.query, self.results, self.item, self.chosen = "search", "", (), None, {}
        elif action == NEXT:
            self.page_no += 1
        elif action == PREV and self.page == "results":
            self.page_no -= 1
        elif action == PREV:  # from an item, back to the results page it was opened from
            self.page, self.item, self.chosen = "results", None, {}
        elif action == BUY:
            product = self.world.products[self.item]
            self.reward = shop_reward(
                self.goal, product, self.chosen, rule=self.reward_rule, rules=self.webshop_rules
            )["reward"]
            self.page = "done"
        elif self.page == "results":
            self.page, self.item, self.chosen = "item", arg, {}
        else:  # an option value on the item page
            product = self.world.products[self.item]
            name = next(n for n, values in product.options.items() if arg in values)
            self.chosen[name] = arg
        return True

    # -- pages as text -----------------------------------------------------------------------------
    def _shown(self) -> tuple[str, ...]:
        return self.results[self.page_no * PAGE_SIZE : (self.page_no + 1) * PAGE_SIZE]

    def _n_pages(self) -> int:
        return max(1, -(-len(self.results) // PAGE_SIZE))

    def _render(self) -> str:
        if self.page == "search":
            return "Search page. Type a search query."
        if self.page == "results":
            if not self.results:
                return f"No results for '{self.query}'."
            lines = [f"Results for '{self.query}', page {self.page_no + 1} of {self._n_pages()}:"]
            for asin in self._shown():
                product = self.world.products[asin]
                lines.append(f"[{asin}] {product.title} ${product.price:.2f}")
            return "\n".join(lines)
        product = self.world.products[self.item]
        if self.page == "item":
            lines = [
                f"Item [{product.asin}] {product.title}. Price: ${product.price:.2f}. "
                f"Features: {', '.join(product.attributes)}."
            ]
            lines += [f"{name}: {', '.join(values)}" for name, values in product.options.items()]
            picked = ", ".join(f"{n} {v}" for n, v in self.chosen.items()) or "none"
            return "\n".join([*lines, f"Selected: {picked}."])
        picked = ", ".join(f"{n} {v}" for n, v in self.chosen.items()) or "no options"
        return (
            f"You bought [{product.asin}] {product.title} with {picked}. Reward {self.reward:.2f}."
        )

    # -- what the pipeline needs on top ------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return len(self.actions)

    def valid_actions(self) -> list[str]:
        if self.page == "search":
            return [SEARCH]
        if self.page == "results":
            nav = (
                [BACK]
                + ([PREV] if self.page_no > 0 else [])
                + ([NEXT] if self.page_no + 1 < self._n_pages() else [])
            )
            return nav + [f"click[{asin}]" for asin in self._shown()]
        if self.page == "item":
            values = [v for vals in self.world.products[self.item].options.values() for v in vals]
            return [BACK, PREV] + [f"click[{v}]" for v in dict.fromkeys(values)] + [BUY]
        return []

    def expert_query(self) -> str:
        """The goal's query, or the target's title when the goal's query does not find the
        target."""
        if self.goal.target in self.world.search(self.goal.query):
            return self.goal.query
        return self.world.products[self.goal.target].title

    def meets_goal(self, asin: str) -> bool:
        """Whether buying this product (with the goal's options, which it must offer) earns the full
        reward."""
        product = self.world.products[asin]
        offered = {v for values in product.options.values() for v in values}
        chosen = {n: v for n, v in self.goal.options.items() if v in offered}
        reward = shop_reward(
            self.goal, product, chosen, rule=self.reward_rule, rules=self.webshop_rules
        )["reward"]
        return len(chosen) == len(self.goal.options) and is_success(reward)

    def wanted(self) -> str:
        """The product the expert goes for: the best-ranked result that meets the goal (any such
        product earns the full reward), else the goal's target. Ranking order makes the choice
        readable from the results page: the first listed product that matches the instruction."""
        return next((a for a in self.results if self.meets_goal(a)), self.goal.target)

    def expert_action(self) -> str:
        target = self.wanted()
        if self.page == "search":
            return f"search[{self.expert_query()}]"
        if self.page == "results":
            if target in self._shown():
                return f"click[{target}]"
            if target in self.results:
                return NEXT if self.results.index(target) // PAGE_SIZE > self.page_no else PREV
            return BACK
        if self.page == "item":
            if not self.meets_goal(self.item):
                return PREV
            for name, value in self.goal.options.items():
                if self.chosen.get(name) != value:
                    return f"click[{value}]"
            return BUY
        return BACK  # the episode is over; nothing is valid

    def random_action(self, rng: random.Random) -> str:
        """An off-expert action for the student's demonstrations: a query of a few instruction words
        on the search page, any valid click elsewhere."""
        if self.page == "search":
            words = [w for w in re.findall(r"[a-z][a-z-]*", self.mission) if len(w) > 2]
            return f"search[{' '.join(rng.sample(words, min(len(words), rng.randint(1, 3))))}]"
        return rng.choice(self.valid_actions())

    def state(self) -> dict:
        return {"level": self.level, "seed": self.seed, "actions": list(self.actions)}

    def state_hash(self) -> str:
        page = {
            "level": self.level,
            "seed": self.seed,
            "page": self.page,
            "query": self.query,
            "page_no": self.page_no,
            "item": self.item,
            "chosen": sorted(self.chosen.items()),
            "reward": self.reward,
        }
        return hashlib.sha256(json.dumps(page).encode()).hexdigest()[:32]

    def fork(self) -> ShopEnv:
        """A copy sharing the world (catalogue, searcher); only the small page state is copied."""
        twin = copy.copy(self)
        twin.actions, twin.history, twin.chosen = (
            list(self.actions),
            list(self.history),
            dict(self.chosen),
        )
        return twin

    @classmethod
    def restore(
        cls,
        state: dict,
        expected_hash: str | None = None,
        max_steps: int | None = None,
        world: ShopWorld | None = None,
    ) -> ShopEnv:
        """Rebuild a state by replaying (level, seed, actions); verify it against the stored
        hash."""
        return replay(cls(state["level"], max_steps=max_steps, world=world), state, expected_hash)

    @classmethod
    def tokenizer_words(cls) -> list[str]:
        """The catalogue's product ids: an offline student's tokenizer keeps each whole (one token,
        like a word)."""
        return list(ShopWorld.load(cls.world_dir).products)

    # -- facts for the oracle teacher --------------------------------------------------------------
    def target_hint(self) -> str:
        """Where the product the goal needs is, from the current page (names no action)."""
        target = self.world.products[self.wanted()]
        if self.page == "search":
            return (
                f"The product you need is a {self.goal.product_type}; "
                "name its type and the asked-for features."
            )
        if self.page == "results":
            if target.asin in self._shown():
                return f"The product you need is on this page: [{target.asin}] {target.title}."
            if target.asin in self.results:
                return (
                    "The product you need is on results page "
                    f"{self.results.index(target.asin) // PAGE_SIZE + 1}."
                )
            return "The product you need is not among these results; another search would find it."
        if self.page == "item":
            if not self.meets_goal(self.item):
                return f"This is not the product you need; that is [{target.asin}] {target.title}."
            missing = [f"{n} {v}" for n, v in self.goal.options.items() if self.chosen.get(n) != v]
            if missing:
                return f"This is the product you need; it still needs {', '.join(missing)}."
            return "This product, with these options, is everything the instruction asks for."
        return "The episode is over."


def configure_shop(
    world_dir: str | Path | None = None,
    n_open_samples: int | None = None,
    reward_rule: str | None = None,
    webshop_rules: str | None = None,
) -> None:
    """Where environments made by name find the built shop, how many queries the student samples,
    and which reward rule (and, under "webshop", which WebShop branch's option rules) a purchase is
    scored by."""
    if world_dir is not None:
        ShopEnv.world_dir = str(world_dir)
    if n_open_samples is not None:
        ShopEnv.n_open_samples = int(n_open_samples)
    if reward_rule is not None:
        ShopEnv.reward_rule = reward_rule
    if webshop_rules is not None:
        ShopEnv.webshop_rules = webshop_rules
