"""The shop expert's success rate under WebShop's reward rules and under the earlier simple rule.
Builds a generated shop (catalogue + BM25 index, pyserini: needs Java) in a temporary directory,
then plays the expert from reset on N tasks per level under each rule: the rule is switched for the
environment's purchase and the expert's `meets_goal` (`ShopEnv.reward_rule`, what the param
`shop.reward` sets), and each episode's outcome is checked against its purchase re-scored under that
rule. Each final purchase is also re-scored under the other rule.
Prints per level and rule: n, successes, rate with a Wilson 95% interval, how many purchases were of
another product type than the goal's, and the success of the same purchases under the other rule.
Usage:

    python benchmarks/shop_expert.py [--products 1000] [--catalog-seed 0] [--tasks 40] \
        [--first-seed 0]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

from teachable.core.params import ShopParams
from teachable.envs.shop import SHOP_LEVELS, ShopEnv, ShopWorld
from teachable.envs.shop import reward as shop_rewards
from teachable.envs.shop.build import build_shop

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def use_rule(rule: str) -> None:
    ShopEnv.reward_rule = rule


def check_switch(world: ShopWorld, rule: str) -> None:
    """The environment scores by `rule`: on a purchase the two rules score differently (a first-page
    result of the goal's query, bought without choosing options), its reward must be `rule`'s."""
    for seed in range(200):
        env = ShopEnv("all", max_steps=15, world=world)
        env.reset(seed)
        env.step(f"search[{env.goal.query}]")
        for asin in env.results[:10]:
            scores = {
                r: shop_rewards.shop_reward(
                    env.goal, world.products[asin], {}, rule=r, rules=ShopEnv.webshop_rules
                )["reward"]
                for r in shop_rewards.RULES
            }
            if len(set(scores.values())) > 1:
                env.step(f"click[{asin}]")
                env.step("click[buy now]")
                if env.reward != scores[rule]:
                    raise RuntimeError(
                        f"the environment does not score by {rule!r}: {env.reward} vs {scores}"
                    )
                return
    raise RuntimeError("no purchase told the rules apart")


def play(world: ShopWorld, level: str, seed: int) -> dict:
    """The expert's episode from reset; its outcome and final purchase (None when it never
    bought)."""
    env = ShopEnv(level, max_steps=15, world=world)
    env.reset(seed)
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(env.expert_action())
        done = terminated or truncated
    bought = env.item if env.page == "done" else None
    return {
        "success": bool(info.get("success")),
        "steps": env.step_count,
        "goal": env.goal,
        "product": world.products[bought] if bought else None,
        "chosen": dict(env.chosen),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--catalog-seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=40, help="tasks (seeds) per level")
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        build_shop(
            ShopParams.defaults(n_products=args.products, catalog_seed=args.catalog_seed), scratch
        )
        world = ShopWorld.load(scratch)
        print(
            f"shop: {args.products} generated products (catalog seed "
            f"{args.catalog_seed}), built in {time.perf_counter() - start:.1f} s; "
            f"{args.tasks} tasks per level from seed {args.first_seed}"
        )
        header = (
            f"{'rule':8} {'level':12} {'n':>4} {'succ':>5} {'rate':>6}  {'Wilson 95%':15} "
            f"{'other type':>10} {'other rule':>10}"
        )
        default = ShopEnv.reward_rule
        bought: dict[tuple[str, str, int], object] = {}
        try:
            for rule in shop_rewards.RULES:
                other = next(r for r in shop_rewards.RULES if r != rule)
                use_rule(rule)
                check_switch(world, rule)
                print(
                    f"\nthe environment scores purchases by {rule!r} (checked "
                    "on a purchase the rules tell apart)"
                )
                print(header)
                totals = [0, 0, 0, 0]
                for level in SHOP_LEVELS:
                    n = successes = other_type = other_success = 0
                    for seed in range(args.first_seed, args.first_seed + args.tasks):
                        result = play(world, level, seed)
                        n += 1
                        successes += result["success"]
                        product = result["product"]
                        bought[(rule, level, seed)] = product.asin if product else None
                        if product is not None:
                            own = shop_rewards.shop_reward(
                                result["goal"],
                                product,
                                result["chosen"],
                                rule=rule,
                                rules=ShopEnv.webshop_rules,
                            )
                            if shop_rewards.is_success(own["reward"]) != result["success"]:
                                raise RuntimeError(
                                    f"the environment did not score {level} seed {seed} by {rule}"
                                )
                            other_type += product.product_type != result["goal"].product_type
                            rescored = shop_rewards.shop_reward(
                                result["goal"],
                                product,
                                result["chosen"],
                                rule=other,
                                rules=ShopEnv.webshop_rules,
                            )
                            other_success += shop_rewards.is_success(rescored["reward"])
                    lo, hi = wilson(successes, n)
                    print(
                        f"{rule:8} {level:12} {n:4d} {successes:5d} {successes / n:6.3f}  "
                        f"[{lo:.3f}, {hi:.3f}]{'':1} {other_type:10d} {other_success:10d}"
                    )
                    for i, value in enumerate((n, successes, other_type, other_success)):
                        totals[i] += value
                n, successes, other_type, other_success = totals
                lo, hi = wilson(successes, n)
                print(
                    f"{rule:8} {'(pooled)':12} {n:4d} {successes:5d} {successes / n:6.3f}  "
                    f"[{lo:.3f}, {hi:.3f}]{'':1} {other_type:10d} {other_success:10d}"
                )
        finally:
            ShopEnv.reward_rule = default
        differ = sum(
            bought[("webshop", lvl, s)] != bought[("simple", lvl, s)]
            for lvl in SHOP_LEVELS
            for s in range(args.first_seed, args.first_seed + args.tasks)
        )
        print(
            f"\ntasks where the expert bought a different product under the two rules: {differ} of "
            f"{len(SHOP_LEVELS) * args.tasks}"
        )
        print(
            "columns: 'other type' = purchases of a product type other than the goal's; "
            "'other rule' = the expert's purchases that score 1.0 when re-scored under the "
            "other rule"
        )


if __name__ == "__main__":
    main()
