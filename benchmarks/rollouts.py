"""Batched rollout engine vs a naive loop vs the forward bound, on the same tasks with the same
student.

- naive: one episode at a time, one full forward pass per candidate action (no batching, no cache);
- batched: the engine with N concurrent episodes (one cached, batched scoring call per step);
- forward bound: a raw batched forward of the same model over the same prompts (no env, no
  candidates).
Rates are in states (agent steps) per second; episodes/s is printed too. Usage:

    python benchmarks/rollouts.py [--student models/student] [--episodes 64] [--naive-episodes 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from teachable.core.params import load_params
from teachable.policy.hf import HFPolicy, NaivePolicy
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.core.tasks import make_tasks


def timed_run(engine: RolloutEngine, specs) -> tuple[float, int, list]:
    start = time.perf_counter()
    episodes = engine.run(specs)
    return time.perf_counter() - start, sum(ep.n_steps for ep in episodes), episodes


@torch.inference_mode()
def forward_bound(policy: HFPolicy, prompts: list[str], batch: int) -> tuple[float, float]:
    """States/s and tokens/s of a raw batched prompt forward over `prompts`."""
    tok = policy.tokenizer
    start, tokens = time.perf_counter(), 0
    for i in range(0, len(prompts), batch):
        enc = tok(
            prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False
        )
        policy.model(**enc.to(policy.device), logits_to_keep=1)
        tokens += int(enc.attention_mask.sum())
    elapsed = time.perf_counter() - start
    return len(prompts) / elapsed, tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--student", default=None)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--naive-episodes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    params = load_params()
    env = params.env
    policy = HFPolicy.load(args.student or params.student.dir, batch_size=args.batch)
    tasks = make_tasks(env.levels, args.episodes, "heldout")
    specs = [RolloutSpec(t.task_id, t.level, t.seed, sample_seed=i) for i, t in enumerate(tasks)]
    make = lambda pol, batch: RolloutEngine(
        pol, env.name, env.max_steps, env.history_len, 1.0, batch
    )

    naive_s, naive_states, _ = timed_run(make(NaivePolicy(policy), 1), specs[: args.naive_episodes])
    batched_s, batched_states, episodes = timed_run(make(policy, args.batch), specs)

    engine = make(policy, args.batch)
    prompts = []
    for ep, spec in zip(episodes, specs):  # rebuild the exact prompts the batched run scored
        lv = engine._start(spec, {})
        for step in ep.steps:
            prompts.append(policy.prompt(engine.messages(lv)))
            lv.env.step(step.action)
            lv.n_steps += 1
    bound_states, bound_tokens = forward_bound(policy, prompts, args.batch)

    naive_rate, batched_rate = naive_states / naive_s, batched_states / batched_s
    print(
        f"model: {policy.name} ({sum(p.numel() for p in policy.model.parameters()):,} "
        f"parameters), threads={torch.get_num_threads()}, mean prompt "
        f"tokens={np.mean([len(policy.tokenizer(p).input_ids) for p in prompts[:500]]):.0f}"
    )
    print(
        f"naive   (1 episode, 1 forward/candidate): {naive_rate:8.1f} states/s  "
        f"{args.naive_episodes / naive_s:6.2f} episodes/s"
    )
    print(
        f"batched ({args.batch} concurrent episodes):       {batched_rate:8.1f} states/s  "
        f"{args.episodes / batched_s:6.2f} episodes/s"
    )
    print(
        "forward bound (raw batched prompt pass):  "
        f"{bound_states:8.1f} states/s  {bound_tokens:,.0f} tokens/s"
    )
    print(
        f"batched / naive = {batched_rate / naive_rate:.1f}x   batched / bound = "
        f"{batched_rate / bound_states:.2f}   bound / naive = {bound_states / naive_rate:.1f}x"
    )


if __name__ == "__main__":
    main()
