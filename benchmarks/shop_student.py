"""Where a shop student goes wrong: along the expert's path on held-out tasks, how often the student's top
candidate is the expert's action on each page (search, results = clicking a product, item = options and buy),
and its success greedy and sampled. Takes env, shop and student from params.yaml (`env.name: shop`, as after
`dvc exp run -S env.name=shop ...`, whose `index` stage built data/shop). Usage:

    python benchmarks/shop_student.py [--tasks 32]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from teachable.core.params import EnvParams, load_params
from teachable.envs import configure_envs, make_env
from teachable.policy.candidates import expand_candidates, has_open, sample_open_actions
from teachable.policy.hf import HFPolicy
from teachable.policy.prompts import build_messages
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.training.student import load_student
from teachable.core.tasks import make_tasks


def page_agreement(policy: HFPolicy, tasks, env_params: EnvParams) -> dict[str, tuple[int, float, float]]:
    """Per page: (states, share where the student's argmax is the expert's action, mean p(expert action))."""
    seen = defaultdict(lambda: [0, 0, 0.0])
    for task in tasks:
        env = make_env("shop", task.level, env_params.max_steps)
        env.reset(task.seed)
        done = False
        while not done:
            expert, valid = env.expert_action(), env.valid_actions()
            messages = build_messages(env.mission, env.observation, valid, env.history[-env_params.history_len:], None)
            candidates = valid
            if has_open(valid):  # as the rollout engine: the student's sampled queries plus the expert's
                sampled = sample_open_actions(policy, messages, valid, env.n_open_samples, 1.0, task.seed)
                candidates = expand_candidates(valid, [*sampled, expert])
            probs = policy.score([messages], [candidates])[0].probs
            row = seen[env.page]
            row[0] += 1
            row[1] += candidates[int(np.argmax(probs))] == expert
            row[2] += float(probs[candidates.index(expert)])
            _, _, terminated, truncated, _ = env.step(expert)
            done = terminated or truncated
    return {page: (n, hits / n, p / n) for page, (n, hits, p) in seen.items()}


def success(policy: HFPolicy, tasks, env_params: EnvParams, temperature: float) -> float:
    engine = RolloutEngine(policy, "shop", env_params.max_steps, env_params.history_len, temperature,
                           record_steps=False)
    episodes = engine.run([RolloutSpec(t.task_id, t.level, t.seed, sample_seed=i) for i, t in enumerate(tasks)])
    return float(np.mean([e.success for e in episodes]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=32)
    args = parser.parse_args()
    params = load_params()
    if params.env.name != "shop":
        parser.error("params.yaml has env.name: babyai; run this where the shop params are set (env.name: shop)")
    configure_envs(params)
    policy = load_student(params.student)
    tasks = make_tasks(params.env.levels, args.tasks, "student_eval")  # the build's held-out tasks
    print(f"{params.student.dir}, {args.tasks} held-out tasks, along the expert's path:")
    for page, (n, top, p_expert) in sorted(page_agreement(policy, tasks, params.env).items()):
        print(f"  {page:8s} {n:4d} states  top candidate = expert {top:.2f}  mean p(expert) {p_expert:.2f}")
    for temperature in (0.0, 1.0):
        print(f"success at temperature {temperature}: {success(policy, tasks, params.env, temperature):.3f}")


if __name__ == "__main__":
    main()
