"""The shop's search engine and environment: pyserini BM25 searches per second (Lucene, and through
the memoising shared searcher), environment steps per second (expert play), and state restores per
second (replay from (level, seed, actions) vs fork). Builds its own catalogue and index in a
temporary directory. Usage:

    python benchmarks/shop.py [--products 1000] [--queries 500] [--episodes 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from teachable.core.params import ShopParams
from teachable.envs.shop import SHOP_LEVELS, ShopEnv, ShopWorld
from teachable.envs.shop.build import build_shop


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s ({n} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        build_shop(ShopParams.defaults(n_products=args.products), scratch)
        print(
            f"index build ({args.products} products, JVM start included): "
            f"{time.perf_counter() - start:.2f} s"
        )
        world = ShopWorld.load(scratch)
        levels = [lvl for lvl in SHOP_LEVELS]
        queries = [world.goal(levels[i % len(levels)], i).query for i in range(args.queries)]
        world.searcher.search_uncached("warm up the jvm", 50)

        start = time.perf_counter()
        for q in queries:
            world.searcher.search_uncached(q, 50)
        print(f"searches, Lucene BM25 (top 50): {rate(len(queries), time.perf_counter() - start)}")
        for q in queries:
            world.search(q)
        start = time.perf_counter()
        for q in queries:
            world.search(q)
        print(
            f"searches, memoised shared searcher (repeated queries): "
            f"{rate(len(queries), time.perf_counter() - start)}"
        )

        steps, solved, states = 0, 0, []
        start = time.perf_counter()
        for i in range(args.episodes):
            env = ShopEnv(levels[i % len(levels)], world=world)
            env.reset(100_000 + i)  # fresh tasks: their searches are not memoised yet
            done = False
            while not done:
                _, _, terminated, truncated, info = env.step(env.expert_action())
                steps += 1
                done = terminated or truncated
                if not done and len(states) < 300:
                    states.append((env.state(), env.state_hash(), env))
            solved += info["success"]
        elapsed = time.perf_counter() - start
        print(
            "env steps, expert play (valid actions + expert + step, searches included): "
            f"{rate(steps, elapsed)}; expert success {solved / args.episodes:.3f}"
        )

        start = time.perf_counter()
        for state, digest, _ in states:
            ShopEnv.restore(state, digest, world=world)
        print(
            f"restores by replay (hash-checked): {rate(len(states), time.perf_counter() - start)}"
        )
        start = time.perf_counter()
        for _, _, env in states:
            env.fork()
        print(f"forks: {rate(len(states), time.perf_counter() - start)}")


if __name__ == "__main__":
    main()
