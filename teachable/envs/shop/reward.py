"""WebShop's reward for a purchase: product-type match times the share of the goal's attributes, options and
price bound that the bought product (with the options chosen on its page) satisfies.

    reward = r_type * (n_attributes_met + n_options_met + r_price) / (n_attributes + n_options + 1)

WebShop infers the product type from query, category and title overlap; our catalogue states it, so r_type is
1 for the same product type, 0.5 for another type of the same category and 0.1 otherwise. An attribute counts as
met when the product lists it or its title contains it (WebShop also matches titles). Success is reward 1.0.
"""

from __future__ import annotations

from teachable.envs.shop.catalog import Goal, Product

SAME_CATEGORY, OTHER_CATEGORY = 0.5, 0.1


def type_reward(goal: Goal, product: Product) -> float:
    if product.product_type == goal.product_type:
        return 1.0
    return SAME_CATEGORY if product.category == goal.category else OTHER_CATEGORY


def shop_reward(goal: Goal, product: Product, chosen: dict[str, str]) -> dict:
    """The reward and its parts for buying `product` with options `chosen` (option name -> value)."""
    attrs_met = sum(a in product.attributes or a in product.title for a in goal.attributes)
    picked = set(chosen.values())
    options_met = sum(value in picked for value in goal.options.values())
    r_price = float(product.price <= goal.price_upper)
    r_type = type_reward(goal, product)
    total = r_type * (attrs_met + options_met + r_price) / (len(goal.attributes) + len(goal.options) + 1)
    return {"reward": round(total, 6), "r_type": r_type, "r_att": attrs_met / max(1, len(goal.attributes)),
            "r_option": options_met / max(1, len(goal.options)), "r_price": r_price}


def is_success(reward: float) -> bool:
    return reward >= 1.0 - 1e-9
