"""Text environments: the `TextEnv` protocol and a registry by name (BabyAI and the shop built in;
others register)."""

from teachable.envs.base import RestoreError, TextEnv

_REGISTRY: dict[str, type] = {}


def register_env(name: str, cls: type) -> None:
    """Make an environment class available by name; it takes (level, max_steps) and has
    `restore`."""
    _REGISTRY[name] = cls


def _env_class(name: str) -> type:
    if name == "babyai" and name not in _REGISTRY:
        from teachable.envs.babyai import BabyAITextEnv

        register_env("babyai", BabyAITextEnv)
    if name == "shop" and name not in _REGISTRY:
        from teachable.envs.shop import ShopEnv

        register_env("shop", ShopEnv)
    if name == "retail" and name not in _REGISTRY:
        from teachable.envs.retail import RetailEnv

        register_env("retail", RetailEnv)
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; known: {env_names()}")
    return _REGISTRY[name]


BUILT_IN = ("babyai", "shop", "retail")


def env_names() -> list[str]:
    """Every environment a params file can name: the built-in ones and any registered since."""
    return sorted(set(_REGISTRY) | set(BUILT_IN))


def make_env(name: str, level: str, max_steps: int | None = None) -> TextEnv:
    return _env_class(name)(level, max_steps=max_steps)


def restore_env(
    name: str, state: dict, expected_hash: str | None = None, max_steps: int | None = None
) -> TextEnv:
    """Rebuild a stored state by deterministic replay, verified against its hash."""
    return _env_class(name).restore(state, expected_hash, max_steps=max_steps)


def tokenizer_words(name: str) -> list[str]:
    """Strings an offline student's tokenizer keeps whole (the shop's product ids, so that picking a
    result is one token); none for BabyAI. An environment class offers them as a `tokenizer_words()`
    classmethod."""
    words = getattr(_env_class(name), "tokenizer_words", None)
    return list(words()) if words else []


def known_levels(name: str) -> list[str]:
    """The level names an environment accepts (BabyAI level names; the shop's task families)."""
    return list(getattr(_env_class(name), "LEVELS", ()))


def configure_envs(params) -> None:
    """Check `env.levels` against the environment (here, not in the params model, so that reading
    params imports no environment) and apply the params environments made by name need (the shop:
    its query sampling and reward rule; retail: its database). Every stage calls it before any
    work."""
    from teachable.core.params import ParamsError

    known = known_levels(params.env.name)
    unknown = [lvl for lvl in params.env.levels if lvl not in known]
    if unknown:
        hint = (
            f" (e.g. dvc exp run -S env.name={params.env.name} -S 'env.levels=[all]')"
            if params.env.name in ("shop", "retail")
            else ""
        )
        raise ParamsError(
            f"invalid parameters: env.levels: unknown {params.env.name} level(s) {unknown}; "
            f"known: {sorted(known)}{hint}"
        )
    if params.env.name == "shop":
        from teachable.envs.shop import configure_shop

        configure_shop(
            n_open_samples=params.shop.n_query_samples,
            reward_rule=params.shop.reward,
            webshop_rules=params.shop.webshop_rules,
        )
    if params.env.name == "retail":
        from teachable.envs.retail import configure_retail

        r = params.retail
        configure_retail(
            n_users=r.n_users,
            orders_per_user=r.orders_per_user,
            n_products=r.n_products,
            db_seed=r.db_seed,
            taubench_dir=r.taubench_dir if r.source == "taubench" else "",
            task_split=r.task_split,
            parse_failure=r.parse_failure,
            unplayable=r.unplayable,
            user=r.user,
            user_llm=r.user_llm,
        )


__all__ = [
    "RestoreError",
    "TextEnv",
    "configure_envs",
    "env_names",
    "known_levels",
    "make_env",
    "register_env",
    "restore_env",
    "tokenizer_words",
]
