"""Phase 3 evaluation cost: greedy episodes run to the horizon vs stopped at the first repeated
(state, prompt) (`RolloutEngine(stop_cycles=True)`), same model, same held-out tasks; outcomes must
be identical.

    python benchmarks/evaluation.py [--tasks 100]
"""

from __future__ import annotations

import argparse
import time

from teachable.core.params import load_params
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.policy.student import load_student
from teachable.core.tasks import make_tasks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args()
    params = load_params()
    env, e = params.env, params.evaluate
    policy = load_student(params.student)
    specs = [
        RolloutSpec(t.task_id, t.level, t.seed)
        for t in make_tasks(env.levels, args.tasks, "heldout")
    ]
    results = {}
    for stop in (False, True):
        engine = RolloutEngine(
            policy,
            env.name,
            env.max_steps,
            env.history_len,
            0.0,
            e.batch_size,
            record_steps=False,
            stop_cycles=stop,
        )
        start = time.perf_counter()
        episodes = engine.run(specs)
        results[stop] = (time.perf_counter() - start, episodes)
    (full_s, full), (stop_s, stopped) = results[False], results[True]
    same = [ep.success for ep in full] == [ep.success for ep in stopped]
    print(
        f"{args.tasks} held-out tasks, greedy, horizon {env.max_steps}; identical outcomes: "
        f"{same}; success {sum(ep.success for ep in full) / len(full):.2f}; "
        f"{sum(ep.cycled for ep in stopped)} episodes stopped in a cycle"
    )
    print(f"to the horizon : {full_s:6.1f} s, {sum(ep.n_steps for ep in full):6d} steps")
    print(f"cycle stop     : {stop_s:6.1f} s, {sum(ep.n_steps for ep in stopped):6d} steps")
    print(f"speed-up = {full_s / stop_s:.1f}x")


if __name__ == "__main__":
    main()
