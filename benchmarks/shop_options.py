"""False successes of WebShop's option rules on the generated catalogue: every purchase of a goal's
target with exactly one option value wrong (all other options as asked), scored under
`shop.webshop_rules` master and v2. Such a purchase should not be a success; where one scores 1.0
the rule set gave the wrong value full credit (master: a size within its fuzzy match, "x-small" for
"small"; v2: the goal's value found in the title, "small" in "for small spaces", "red" in "solar
powered"). No search index needed. Usage:

    python benchmarks/shop_options.py [--products 1000] [--catalog-seed 0] [--goals 500]
"""

from __future__ import annotations

import argparse
from collections import Counter

from teachable.envs.shop.catalog import generate_catalog, make_goal
from teachable.envs.shop.reward import WEBSHOP_RULES, is_success, shop_reward


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--catalog-seed", type=int, default=0)
    parser.add_argument("--goals", type=int, default=500, help="goals of seeds 0 .. goals-1")
    args = parser.parse_args()

    products = generate_catalog(args.products, args.catalog_seed)
    by_asin = {p.asin: p for p in products}
    n, successes, kinds = 0, Counter(), {rules: Counter() for rules in WEBSHOP_RULES}
    for seed in range(args.goals):
        goal = make_goal(products, seed)
        target = by_asin[goal.target]
        for name, asked in goal.options.items():
            for wrong in target.options[name]:
                if wrong == asked:
                    continue
                n += 1
                chosen = {**goal.options, name: wrong}
                for rules in WEBSHOP_RULES:
                    if is_success(shop_reward(goal, target, chosen, rules=rules)["reward"]):
                        successes[rules] += 1
                        kinds[rules][f"{name} {wrong!r} for {asked!r}"] += 1
    print(
        f"{args.goals} goals on a {args.products}-product catalogue (seed {args.catalog_seed}): "
        f"{n} purchases of the target with one wrong option value"
    )
    for rules in WEBSHOP_RULES:
        common = ", ".join(f"{kind} x{count}" for kind, count in kinds[rules].most_common(6))
        print(
            f"  {rules:6} scored 1.0: {successes[rules]:4d}/{n} = "
            f"{successes[rules] / max(1, n):.3f}  ({common})"
        )


if __name__ == "__main__":
    main()
