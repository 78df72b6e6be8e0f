"""Stage `rollouts` (phase 0): the student on `rollouts.n_tasks` tasks, all episodes batched in
lock-step.

Outputs `data/rollouts/student.jsonl` (one episode a line), `reports/phase0/metrics.json` and
`reports/phase0/parse_failures.json` (the first unparseable replies, verbatim, for the report).
Resumable: finished episodes go to a scratch log first; a killed run restarted skips them.
"""

from __future__ import annotations

import logging
from itertools import islice

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params
from teachable.core.records import Episode, write_json, write_jsonl
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.core.tasks import rollout_sample_seed
from teachable.policy.student import load_student
from teachable.core.tasks import make_tasks
from teachable.core.tracking import stage_run
from teachable.policy.parsing import count_failures

OUT, METRICS = "data/rollouts/student.jsonl", "reports/phase0/metrics.json"
FAILURES = "reports/phase0/parse_failures.json"
N_FAILURE_EXAMPLES = 20
log = logging.getLogger(__name__)


def summarise(episodes: list[Episode], action_mode: str) -> dict:
    steps = [s for ep in episodes for s in ep.steps]
    failures, malformed = count_failures(steps)
    return {
        "n_episodes": len(episodes),
        "success_rate": round(sum(ep.success for ep in episodes) / len(episodes), 4),
        "mean_steps": round(sum(ep.n_steps for ep in episodes) / len(episodes), 3),
        "action_mode": action_mode,
        "n_replies": len(steps),
        "n_parse_failures": failures,
        "parse_failure_rate": round(failures / max(1, len(steps)), 4),
        # the failures with no action form (`is_malformed`: what tau-bench counts)
        "n_malformed": malformed,
        "malformed_rate": round(malformed / max(1, len(steps)), 4),
    }


def failure_examples(episodes: list[Episode], n: int = N_FAILURE_EXAMPLES) -> list[dict]:
    """The first `n` unparseable replies in episode order, with where they were and how many actions
    were valid."""
    found = (
        {
            "episode_id": ep.episode_id,
            "step": i,
            "n_valid_actions": len(s.valid_actions),
            "reply": getattr(s, "reply", None),
        }
        for ep in episodes
        for i, s in enumerate(ep.steps)
        if not s.parse_ok
    )
    return list(islice(found, n))


def resume_key(params: Params) -> dict:
    """Every param the stage's results depend on: a resume log is reused only under the same
    ones."""
    return params.model_dump(
        mode="json", include={"seed", "env", "shop", "retail", "student", "rollouts"}
    )


def main(params: Params) -> None:
    p, env = params.rollouts, params.env
    tasks = make_tasks(env.levels, p.n_tasks, "pipeline")
    specs = [
        RolloutSpec(f"ep{i:06d}", t.level, t.seed, sample_seed=rollout_sample_seed(params.seed, i))
        for i, t in enumerate(tasks)
    ]
    key = resume_key(params)
    scratch = resume.ScratchLog("rollouts", key)
    done = {ep.episode_id: ep for ep in scratch.load(Episode)}
    with stage_run("rollouts", key) as mlflow:
        policy = load_student(params.student)
        engine = RolloutEngine(
            policy,
            env.name,
            env.max_steps,
            env.history_len,
            p.temperature,
            p.batch_size,
            action_mode=p.action_mode,
            progress=True,
        )
        engine.run([s for s in specs if s.episode_id not in done], on_episode=scratch.append)
        episodes = sorted(scratch.load(Episode), key=lambda ep: ep.episode_id)
        metrics = summarise(episodes, p.action_mode)
        # how many tau-bench tasks were played, skipped, flagged unplayable (and dropped)
        if env.name == "retail":
            from teachable.envs.retail import RetailEnv

            metrics.update(RetailEnv.shared_world().counts())
        write_jsonl(OUT, episodes)
        write_json(METRICS, metrics)
        examples = failure_examples(episodes)
        write_json(
            FAILURES, {"n_parse_failures": metrics["n_parse_failures"], "examples": examples}
        )
        if examples:
            log.info(
                "%d unparseable replies; the first: %r (all of them: `reply` on their steps in %s)",
                metrics["n_parse_failures"],
                examples[0]["reply"][:300],
                OUT,
            )
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.log_artifact(METRICS)
    scratch.remove()


if __name__ == "__main__":
    stage.run(main)
