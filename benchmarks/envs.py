"""Every registered text environment side by side: environment steps per second (random valid
actions over many episodes), restores per second (replay of mid-episode states from (level, seed,
actions), hash-checked, as the pipeline restores its snapshots) and forks per second, with the cost
of one restore in environment steps.

The states restored are drawn uniformly from every mid-episode state the random episodes visited, so
their depth is the depth at which those episodes spend their time. An open action (the shop's
`search[...]`) is filled by the environment's own `random_action` where it has one, else by the
expert's action. The shop is built in a temporary directory first (its build time is printed, not
counted). Usage:

    python benchmarks/envs.py [--envs babyai shop retail] [--episodes 200] [--restores 300] \
        [--max-steps 32]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sys
import tempfile
import time

from teachable.envs import env_names, known_levels, make_env, restore_env
from teachable.policy.candidates import is_open

LEVELS = {"babyai": ["GoToLocal", "PickupDist"], "shop": ["all", "fashion", "food", "electronics"]}


def levels_of(name: str) -> list[str]:
    """The levels above, else (retail) the first two and "all" (else the third), as
    tests/test_env_protocol.py."""
    if name in LEVELS:
        return LEVELS[name]
    known = known_levels(name)
    return known[:2] + (["all"] if "all" in known[2:] else known[2:3])


def random_action(env, rng: random.Random) -> str:
    action = rng.choice(env.valid_actions())
    if is_open(action):
        action = env.random_action(rng) if hasattr(env, "random_action") else env.expert_action()
    return action


@contextlib.contextmanager
def prepared(name: str, products: int):
    """What making `name` environments by name needs (the shop: a built catalogue and index,
    configured)."""
    if name != "shop":
        yield None
        return
    from teachable.core.params import ShopParams
    from teachable.envs.shop import ShopEnv, configure_shop
    from teachable.envs.shop.build import build_shop

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        build_shop(ShopParams.defaults(n_products=products), scratch)
        built = time.perf_counter() - start
        defaults = ShopEnv.world_dir, ShopEnv.n_open_samples
        configure_shop(world_dir=scratch)
        try:
            yield f"shop built in {built:.2f} s ({products} products, JVM start included)"
        finally:
            configure_shop(*defaults)


def forget_memos(name: str) -> bool:
    """Empty the process-wide memos a restore can hit (the shop's search memo); False where there
    are none."""
    if name != "shop":
        return False
    from teachable.envs.search import Searcher

    for searcher in Searcher._open.values():
        searcher._cache.clear()
    return True


def play(
    name: str, levels: list[str], episodes: int, max_steps: int, seed0: int, rng: random.Random
):
    """Random episodes; returns (steps, seconds, mid-episode states as (state, hash))."""
    steps, states, aside = 0, [], 0.0
    start = time.perf_counter()
    for i in range(episodes):
        mark = time.perf_counter()
        env = make_env(name, levels[i % len(levels)], max_steps)
        # making the environment is not stepping (a restore pays it)
        aside += time.perf_counter() - mark
        env.reset(seed0 + i)
        while True:
            _, _, terminated, truncated, _ = env.step(random_action(env, rng))
            steps += 1
            if terminated or truncated:
                break
            mark = time.perf_counter()
            states.append((env.state(), env.state_hash()))
            aside += time.perf_counter() - mark  # not counted as stepping
    return steps, time.perf_counter() - start - aside, states


def measure(name: str, args) -> dict:
    levels = levels_of(name)
    rng = random.Random(0)
    # warm up (imports, JVM, caches)
    play(name, levels, max(2, args.episodes // 20), args.max_steps, 900_000, rng)
    steps, seconds, states = play(name, levels, args.episodes, args.max_steps, 0, rng)
    sample = random.Random(1).sample(states, min(args.restores, len(states)))

    start = time.perf_counter()
    restored = [
        restore_env(name, state, digest, max_steps=args.max_steps) for state, digest in sample
    ]
    restore_s = time.perf_counter() - start
    start = time.perf_counter()
    for env in restored:
        env.fork()
    fork_s = time.perf_counter() - start
    cold_s = None
    if forget_memos(name):  # each restore with nothing memoised, as in a fresh labeling process
        cold_s = 0.0
        for state, digest in sample:
            forget_memos(name)
            start = time.perf_counter()
            restore_env(name, state, digest, max_steps=args.max_steps)
            cold_s += time.perf_counter() - start

    step_rate, restore_rate, fork_rate = (
        steps / seconds,
        len(sample) / restore_s,
        len(sample) / fork_s,
    )
    depth = sum(env.step_count for env in restored) / len(restored)
    return {
        "env": name,
        "levels": ",".join(levels),
        "episodes": args.episodes,
        "steps": steps,
        "steps/s": step_rate,
        "restores": len(sample),
        "depth": depth,
        "restores/s": restore_rate,
        "forks/s": fork_rate,
        "restore/step": step_rate / restore_rate,
        "per replayed step": step_rate / restore_rate / max(depth, 1),
        "fork/step": step_rate / fork_rate,
        "cold restores/s": cold_s and len(sample) / cold_s,
        "cold restore/step": cold_s and cold_s / len(sample) * step_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=env_names())
    parser.add_argument("--episodes", type=int, default=200, help="random episodes per environment")
    parser.add_argument(
        "--restores", type=int, default=300, help="mid-episode states restored (and forked)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=32, help="episode horizon (the pipeline's env.max_steps)"
    )
    parser.add_argument(
        "--products", type=int, default=1000, help="the shop's generated catalogue size"
    )
    args = parser.parse_args()

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    rows, missing = [], []
    for name in args.envs:
        try:
            known_levels(name)
        except ImportError as err:
            missing.append(f"{name}: not measured, its module does not import ({err})")
            continue
        with prepared(name, args.products) as note:
            if note:
                print(note)
            rows.append(measure(name, args))

    print()
    print(
        "| env | levels | episodes (steps) | steps/s | restores (mean depth) | "
        "restores/s | restore / step cost | ... per replayed step | cold restores/s "
        "| cold restore / step cost | forks/s | fork / step cost |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cold = (
            f"{r['cold restores/s']:,.0f} | {r['cold restore/step']:.1f}"
            if r["cold restores/s"]
            else "= warm | = warm"
        )
        print(
            f"| {r['env']} | {r['levels']} | {r['episodes']} ({r['steps']}) | "
            f"{r['steps/s']:,.0f} | {r['restores']} ({r['depth']:.1f}) | {r['restores/s']:,.0f} "
            f"| {r['restore/step']:.1f} | {r['per replayed step']:.2f} | {cold} "
            f"| {r['forks/s']:,.0f} | {r['fork/step']:.3f} |"
        )
    for line in missing:
        print(line)
    print(
        "\nsteps/s: per step of random play, the reset, valid actions and random choice "
        "included (making the environment not). A restore makes an environment, replays "
        "its state's actions and checks the hash; restore / step cost = (1 / restores/s) "
        "/ (1 / steps/s), and per replayed step divided by the mean depth. Warm: "
        "in the process that played the episodes (the shop's search memo holds their queries); "
        "cold: that memo emptied before each restore (a fresh process's first restore)."
    )


if __name__ == "__main__":
    main()
