"""The retail pilot's phase 0 read back: success, pass^k, parse failures, and two runs compared pair
by pair.

The episodes come from the `rollouts` stage (`data/rollouts/student.jsonl`, one run per params:
score or generate mode, `retail.parse_failure: count | respond`, the generated world or
`retail.source: taubench`). On a tau-bench split with `env.levels=[all]` and `rollouts.n_tasks = k
x` the loaded tasks, task seed s plays loaded task s mod n, so each task gets k rollouts with their
own sample seeds: `--tasks n` reads them as pass^1 .. pass^k.

    # success, pass^k, parse failures
    python benchmarks/retail_pilot.py summary RUN.jsonl [--tasks N]
    # B - A on the same episode ids
    python benchmarks/retail_pilot.py paired A.jsonl B.jsonl
    python benchmarks/retail_pilot.py expert <checkout> [--split test] [--max-steps 20 30]

Intervals: Wilson 95% for rates (parse failures: on replies, as phase 0 reports them; replies of one
episode are not independent, so those intervals are narrow); pass^k over tasks
(`teachable.evaluation.results.pass_k`); a paired success difference by Tango's score interval; a
difference of per-reply rates by a 2,000-draw bootstrap over episodes (pairs resampled together).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from teachable.core.records import Episode
from teachable.evaluation.results import pass_k
from teachable.labeling.estimates import paired_difference, rate
from teachable.policy.parsing import count_failures, is_malformed


def load(path: str) -> list[Episode]:
    return [
        Episode.model_validate_json(line)
        for line in Path(path).read_text().splitlines()
        if line.strip()
    ]


def summary(episodes: list[Episode], n_tasks: int | None = None) -> dict:
    steps = [s for ep in episodes for s in ep.steps]
    failures, malformed = count_failures(steps)
    out = {
        "episodes": len(episodes),
        "success": rate(sum(ep.success for ep in episodes), len(episodes)),
        "mean_reward": round(float(np.mean([ep.reward for ep in episodes])), 4),
        "mean_steps": round(float(np.mean([ep.n_steps for ep in episodes])), 2),
        "parse_failures": rate(failures, len(steps)),
        "malformed": rate(malformed, len(steps)),
        "episodes_with_a_parse_failure": rate(
            sum(any(not s.parse_ok for s in ep.steps) for ep in episodes), len(episodes)
        ),
    }
    if n_tasks:
        by_task: dict[int, list[bool]] = {}
        for ep in episodes:
            by_task.setdefault(ep.seed % n_tasks, []).append(ep.success)
        k = min(len(v) for v in by_task.values())
        outcomes = np.array([[v[:k] for _, v in sorted(by_task.items())]], dtype=float)
        out["pass_k"] = [
            {
                "k": e["k"],
                "value": round(e["value"], 4),
                "ci": [round(c, 4) for c in e["ci"]],
                "tasks": e["n_items"],
            }
            for e in pass_k(outcomes, max_k=k)
        ]
        out["tasks_solved_at_least_once"] = int((outcomes[0].sum(axis=1) > 0).sum())
    return out


def reply_rates(episodes: list[Episode]) -> np.ndarray:
    """Per episode: (replies, parse failures, malformed)."""
    return np.array(
        [
            (
                len(ep.steps),
                sum(not s.parse_ok for s in ep.steps),
                sum(
                    not s.parse_ok and is_malformed(getattr(s, "reply", "") or "") for s in ep.steps
                ),
            )
            for ep in episodes
        ],
        dtype=float,
    )


def paired(a: list[Episode], b: list[Episode], draws: int = 2000, seed: int = 0) -> dict:
    """B - A on the episodes both runs have (same ids: same task and sample seed)."""
    left, right = {ep.episode_id: ep for ep in a}, {ep.episode_id: ep for ep in b}
    ids = sorted(set(left) & set(right))
    x = [right[i].success for i in ids]
    y = [left[i].success for i in ids]
    out = {"pairs": len(ids), "success_b_minus_a": paired_difference(x, y)}
    ra, rb = reply_rates([left[i] for i in ids]), reply_rates([right[i] for i in ids])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids), size=(draws, len(ids)))
    for column, name in ((1, "parse_failure_rate"), (2, "malformed_rate")):
        point = rb[:, column].sum() / rb[:, 0].sum() - ra[:, column].sum() / ra[:, 0].sum()
        boot = rb[picks, column].sum(1) / rb[picks, 0].sum(1) - ra[picks, column].sum(1) / ra[
            picks, 0
        ].sum(1)
        out[f"{name}_b_minus_a"] = {
            "diff": round(float(point), 4),
            "ci": [round(float(q), 4) for q in np.quantile(boot, [0.025, 0.975])],
        }
    return out


def expert(checkout: Path, split: str, max_steps: list[int]) -> dict:
    """The expert through the rollout engine on every loaded task of a tau-bench split, at each
    horizon (the expert and the scripted user are deterministic: pass^k = pass^1)."""
    from teachable.envs.retail import RetailEnv
    from teachable.envs.retail.env import configure_retail
    from teachable.rollout.engine import RolloutEngine, RolloutSpec

    if (checkout / "tau_bench" / "envs" / "retail").is_dir():
        checkout = checkout / "tau_bench" / "envs" / "retail"
    configure_retail(taubench_dir=checkout, task_split=split, unplayable="keep")
    world = RetailEnv.shared_world()
    out = {"counts": world.counts()}
    flagged = [bool(t.unplayable) for t in world.listed]
    for horizon in max_steps:
        engine = RolloutEngine(None, "retail", horizon, record_steps=False)
        eps = engine.run(
            [RolloutSpec(f"x{i}", "all", i, control="expert") for i in range(len(world.listed))]
        )
        solved = [ep.success for ep in eps]
        out[f"max_steps={horizon}"] = {
            "success": rate(sum(solved), len(solved)),
            "flagged_unplayable": rate(sum(s for s, f in zip(solved, flagged) if f), sum(flagged)),
            "not_flagged": rate(
                sum(s for s, f in zip(solved, flagged) if not f), len(flagged) - sum(flagged)
            ),
            "mean_steps": round(float(np.mean([ep.n_steps for ep in eps])), 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary")
    s.add_argument("episodes")
    s.add_argument(
        "--tasks", type=int, default=None, help="distinct tasks (seed mod N): read pass^k"
    )
    p = sub.add_parser("paired")
    p.add_argument("a")
    p.add_argument("b")
    e = sub.add_parser("expert")
    e.add_argument("checkout", type=Path)
    e.add_argument("--split", default="test")
    e.add_argument("--max-steps", type=int, nargs="+", default=[20, 30])
    args = parser.parse_args()
    if args.command == "summary":
        result = summary(load(args.episodes), args.tasks)
    elif args.command == "paired":
        result = paired(load(args.a), load(args.b))
    else:
        result = expert(args.checkout, args.split, args.max_steps)
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
