"""Where an offline student goes wrong: along the expert's path on held-out tasks, per kind of
state, how often the student's top candidate is the expert's action and its mean probability, with
the student's success greedy and sampled. A state's kind is the shop's page (search, results, item),
a tool-calling expert action's tool (or, for `respond`, the message's first word: "Confirm:",
"Refund:", "Which", ...), or BabyAI's expert action. Takes env, its section and student from
params.yaml (as after `dvc exp run -S env.name=...`). Usage:

    python benchmarks/student_agreement.py [--tasks 32]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from scipy.stats import binomtest

from teachable.core.params import EnvParams, load_params
from teachable.core.tasks import make_tasks
from teachable.envs import configure_envs, make_env
from teachable.envs.toolcall import parse_call
from teachable.policy.candidates import expand_candidates, has_open, sample_open_actions
from teachable.policy.hf import HFPolicy
from teachable.policy.prompts import build_messages
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.policy.student import load_student


def state_kind(env, expert: str) -> str:
    if hasattr(env, "page"):
        return env.page
    call = parse_call(expert)
    if call is None:
        return expert
    name, arguments = call
    if name == "respond":
        return f"respond {str(arguments.get('content', '')).split(' ')[0]}"
    return name


def agreement(policy: HFPolicy, tasks, env_params: EnvParams) -> dict[str, tuple[int, int, float]]:
    """Per kind: (states, states where the student's argmax is the expert's action, mean p(expert
    action))."""
    seen = defaultdict(lambda: [0, 0, 0.0])
    for task in tasks:
        env = make_env(env_params.name, task.level, env_params.max_steps)
        env.reset(task.seed)
        done = False
        while not done:
            expert, valid = env.expert_action(), env.valid_actions()
            messages = build_messages(
                env.mission, env.observation, valid, env.history[-env_params.history_len :], None
            )
            candidates = valid
            # as the rollout engine: the student's sampled queries plus the expert's
            if has_open(valid):
                sampled = sample_open_actions(
                    policy, messages, valid, env.n_open_samples, 1.0, task.seed
                )
                candidates = expand_candidates(valid, [*sampled, expert])
            probs = policy.score([messages], [candidates])[0].probs
            row = seen[state_kind(env, expert)]
            row[0] += 1
            row[1] += candidates[int(np.argmax(probs))] == expert
            row[2] += float(probs[candidates.index(expert)])
            _, _, terminated, truncated, _ = env.step(expert)
            done = terminated or truncated
    return {kind: (n, hits, p / n) for kind, (n, hits, p) in seen.items()}


def successes(policy: HFPolicy, tasks, env_params: EnvParams, temperature: float) -> int:
    engine = RolloutEngine(
        policy,
        env_params.name,
        env_params.max_steps,
        env_params.history_len,
        temperature,
        record_steps=False,
    )
    episodes = engine.run(
        [RolloutSpec(t.task_id, t.level, t.seed, sample_seed=i) for i, t in enumerate(tasks)]
    )
    return sum(bool(e.success) for e in episodes)


def interval(k: int, n: int) -> str:
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return f"{k}/{n} = {k / n:.2f} (95% [{ci.low:.2f}, {ci.high:.2f}])"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=32)
    args = parser.parse_args()
    params = load_params()
    configure_envs(params)
    policy = load_student(params.student)
    tasks = make_tasks(params.env.levels, args.tasks, "student_eval")  # the build's held-out tasks
    print(
        f"{params.student.dir} on {params.env.name} {params.env.levels}, "
        f"{args.tasks} held-out tasks, along the expert's path:"
    )
    for kind, (n, top, p_expert) in sorted(agreement(policy, tasks, params.env).items()):
        print(
            f"  {kind:32s} {n:4d} states  top candidate = expert {interval(top, n)}  "
            f"mean p(expert) {p_expert:.2f}"
        )
    for temperature in (0.0, 1.0):
        print(
            f"success at temperature {temperature}: "
            f"{interval(successes(policy, tasks, params.env, temperature), len(tasks))}"
        )


if __name__ == "__main__":
    main()
