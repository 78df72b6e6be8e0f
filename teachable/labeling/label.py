"""Label a chunk of snapshots: U from one batched scoring call, teacher advice, then every rollout that leverage
and the CPT need for the whole chunk in one run of the batched engine."""

from __future__ import annotations

import random

import numpy as np

from teachable.config import LabelParams
from teachable.envs import restore_env
from teachable.labeling.estimates import CPT_CONDITIONS, cpt, leverage, sample_seed
from teachable.labeling.uncertainty import uncertainty
from teachable.patches import contrast_patch, demo_patch, hint_patch, placebo_patch
from teachable.policy.candidates import expand_candidates, has_open, sample_open_actions
from teachable.policy.prompts import build_messages
from teachable.records import Snapshot
from teachable.rollout import RolloutEngine, RolloutSpec
from teachable.teacher.base import Advice


def wrong_action(snapshot: Snapshot, probs: np.ndarray, suggested: str, candidates: list[str] | None = None) -> str:
    """The student's action for the contrast: what it did, else its most likely action other than the teacher's
    (over the scored candidates; the open template itself when the teacher's is the only one)."""
    if snapshot.student_action and snapshot.student_action != suggested:
        return snapshot.student_action
    candidates = candidates if candidates is not None else snapshot.valid_actions
    ranked = [candidates[i] for i in np.argsort(-probs, kind="stable")]
    return next((a for a in ranked if a != suggested), snapshot.valid_actions[0])


def scoring_candidates(snap: Snapshot, advice: Advice | None, policy, env, temperature: float, seed: int) -> list[str]:
    """The snapshot's valid actions; an open action becomes the student's sampled fillings (seeded by the
    snapshot), the action it took there, and the teacher's."""
    if not has_open(snap.valid_actions):
        return snap.valid_actions
    messages = build_messages(snap.mission, snap.obs, snap.valid_actions, snap.history)
    n = getattr(env, "n_open_samples", 1)
    sampled = sample_open_actions(policy, messages, snap.valid_actions, n, temperature,
                                  sample_seed(seed, snap.snapshot_id, -1))
    return expand_candidates(snap.valid_actions,
                             [*sampled, snap.student_action, advice.suggested_action if advice else None])


def cpt_patches(snapshot: Snapshot, advice: Advice, wrong: str, seed: int) -> dict[str, str | None]:
    demo = demo_patch(advice.suggested_action, advice.hint)
    rng = random.Random(f"{seed}:{snapshot.snapshot_id}:placebo")
    return {
        "base": None,
        "placebo": placebo_patch(len(demo), rng),
        "demo": demo,
        "contrast": contrast_patch(wrong, advice.suggested_action),
        "hint": hint_patch(advice.hint),
    }


def _specs(snap: Snapshot, advice: Advice, patches: dict, p: LabelParams, seed: int) -> list[RolloutSpec]:
    base = dict(level=snap.state.level, seed=snap.seed, start_actions=tuple(snap.state.actions),
                start_hash=snap.state_hash)
    plan: list[tuple[str, int, dict]] = []
    if not p.skip_leverage:
        plan += [("student", p.n_student_rollouts, {}),
                 ("force", p.n_force_rollouts, {"forced_action": advice.suggested_action}),
                 ("expert", p.n_expert_rollouts, {"control": "expert"})]
    if not p.skip_cpt:
        plan += [(c, p.n_per_condition, {"patch": patches[c]}) for c in CPT_CONDITIONS]
    return [
        RolloutSpec(f"{snap.snapshot_id}|{cond}|{i}", sample_seed=sample_seed(seed, snap.snapshot_id, i),
                    **base, **extra)
        for cond, n, extra in plan
        for i in range(n)
    ]


def label_chunk(snapshots: list[Snapshot], policy, teacher, engine: RolloutEngine, p: LabelParams, seed: int):
    """Labeled snapshot records (dicts), in the order given; snapshots the teacher dropped are left out."""
    advised, candidates = [], []
    for snap in snapshots:
        env = restore_env(snap.env, snap.state.model_dump(), snap.state_hash, engine.max_steps)
        advice = teacher.advise(env, snap.student_action)  # None: an unusable answer with on_invalid: drop
        advised.append(advice)
        candidates.append(scoring_candidates(snap, advice, policy, env, engine.temperature, seed))
    scores = policy.score(
        [build_messages(s.mission, s.obs, s.valid_actions, s.history) for s in snapshots], candidates
    )
    prepared, specs = [], []
    for snap, sc, advice in zip(snapshots, scores, advised):
        if advice is None:
            continue
        wrong = wrong_action(snap, sc.probs, advice.suggested_action, sc.candidates)
        patches = cpt_patches(snap, advice, wrong, seed)
        prepared.append((snap, sc, advice, patches))
        specs += _specs(snap, advice, patches, p, seed)

    outcomes: dict[str, dict[str, list[bool]]] = {s.snapshot_id: {} for s in snapshots}
    for episode in engine.run(specs):
        sid, cond, _ = episode.episode_id.split("|")
        outcomes[sid].setdefault(cond, []).append(episode.success)

    records = []
    for snap, sc, advice, patches in prepared:
        u = uncertainty(sc.probs)
        record = snap.model_dump(mode="json")
        record.update(
            U=u["entropy"],
            uncertainty=u,
            student_probs=dict(zip(sc.candidates, np.round(sc.probs, 6).tolist())),
            teacher=advice.model_dump(),
            contrast_action=wrong,  # the wrong action the contrast patch and DPO pairs name
            patches=patches,
        )
        if not p.skip_leverage:
            record["leverage"] = leverage(outcomes[snap.snapshot_id])
        if not p.skip_cpt:
            record["cpt"] = cpt(outcomes[snap.snapshot_id])
        records.append(record)
    return records
