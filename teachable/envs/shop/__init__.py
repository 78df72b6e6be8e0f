"""WebShop-style shop: catalogue (catalog.py), reward (reward.py), environment (env.py), build
(build.py)."""

from teachable.envs.shop.catalog import SHOP_LEVELS
from teachable.envs.shop.env import ShopEnv, ShopWorld, configure_shop

__all__ = ["SHOP_LEVELS", "ShopEnv", "ShopWorld", "configure_shop"]
