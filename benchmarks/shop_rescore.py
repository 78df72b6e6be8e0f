"""A shop run's phase 0 under WebShop's reward and under the earlier simple rule, on the same
episodes.

The student's actions never depend on the reward rule (a purchase ends the episode, so its reward is
never in a prompt), so each phase 0 episode is one paired observation: replay its actions in the
built shop, re-score its purchase under both rules (webshop under the run's `shop.webshop_rules`),
and compare the rules on the same episodes (Tango's interval on the difference, the exact McNemar
p-value on the discordant episodes; `teachable.gates.paired`). The replay is checked against the
episode's recorded reward under the rule it ran with. Run from a workspace whose params.yaml is the
shop run's (`env.name: shop`) and whose `data/` holds its outputs:

    python benchmarks/shop_rescore.py [--rollouts data/rollouts/student.jsonl] \
        [--params params.yaml]
"""

from __future__ import annotations

import argparse
from collections import Counter

from teachable.core.params import load_params
from teachable.core.records import Episode, read_jsonl
from teachable.envs import configure_envs, restore_env
from teachable.envs.shop import ShopEnv
from teachable.envs.shop import reward as shop_rewards
from teachable.gates.paired import compare, success_rate


def replay(episode: Episode, max_steps: int) -> dict[str, float] | None:
    """The episode's purchase scored under every rule (None when it bought nothing)."""
    level, _ = episode.task_id.rsplit("-", 1)
    actions = [step.action for step in episode.steps if step.action is not None]
    env = restore_env(
        "shop", {"level": level, "seed": episode.seed, "actions": actions}, max_steps=max_steps
    )
    if env.page != "done":
        return None
    product = env.world.products[env.item]
    scored = {
        rule: shop_rewards.shop_reward(
            env.goal, product, env.chosen, rule=rule, rules=ShopEnv.webshop_rules
        )["reward"]
        for rule in shop_rewards.RULES
    }
    if abs(scored[ShopEnv.reward_rule] - episode.reward) > 1e-6:
        raise RuntimeError(
            f"{episode.episode_id}: replay scores {scored[ShopEnv.reward_rule]} under "
            f"{ShopEnv.reward_rule!r}, the run recorded {episode.reward}"
        )
    return scored


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", default="data/rollouts/student.jsonl")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    if params.env.name != "shop":
        raise SystemExit(f"{args.params}: env.name is {params.env.name!r}, not shop")
    configure_envs(params)
    episodes = read_jsonl(args.rollouts, Episode)
    purchases = [replay(ep, params.env.max_steps) for ep in episodes]
    success = {
        rule: [p is not None and shop_rewards.is_success(p[rule]) for p in purchases]
        for rule in shop_rewards.RULES
    }
    ran_with = ShopEnv.reward_rule
    recorded = [ep.success for ep in episodes]
    if recorded != success[ran_with]:
        raise RuntimeError(f"re-scored successes under {ran_with!r} differ from the recorded ones")

    bought = sum(p is not None for p in purchases)
    print(
        f"{args.rollouts}: {len(episodes)} episodes (ran with shop.reward={ran_with}, "
        f"shop.webshop_rules={ShopEnv.webshop_rules}), {bought} bought something"
    )
    for rule in shop_rewards.RULES:
        r = success_rate(success[rule])
        rewards = [p[rule] if p else 0.0 for p in purchases]
        print(
            f"  {rule:8} success {sum(success[rule]):4d}/{len(episodes)} = {r['success']:.3f}  95% "
            f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]   mean reward {sum(rewards) / len(rewards):.3f}"
        )
    d = compare(success["webshop"], success["simple"])
    pairs = Counter(zip(success["webshop"], success["simple"]))
    print(
        f"  webshop - simple: {d['delta']:+.3f}, 95% [{d['ci'][0]:+.3f}, "
        f"{d['ci'][1]:+.3f}], exact McNemar p = {d['p_two_sided']:.3g} ({d['method']}); "
        f"success under webshop only {pairs[(True, False)]}, under simple only "
        f"{pairs[(False, True)]}, both {pairs[(True, True)]}, neither {pairs[(False, False)]}"
    )


if __name__ == "__main__":
    main()
