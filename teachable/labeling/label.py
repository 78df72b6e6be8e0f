"""Label a chunk of snapshots: U from one batched scoring call, teacher advice, then the rollouts that leverage
and the CPT need, in rounds, each round of the whole chunk one run of the batched engine (sequential allocation:
rollouts go to the snapshots whose leverage side is still undetermined)."""

from __future__ import annotations

import random

import numpy as np

from teachable.core.params import LabelParams
from teachable.envs import restore_env
from teachable.labeling.estimates import CONFIDENCE, CPT_ARMS, cpt, leverage, local_leverage, sample_seed, side
from teachable.labeling.uncertainty import uncertainty
from teachable.policy.patches import contrast_patch, demo_patch, hint_patch, placebo_patch
from teachable.policy.candidates import expand_candidates, has_open, sample_open_actions
from teachable.policy.hf import to_distribution
from teachable.policy.prompts import build_messages
from teachable.core.records import Snapshot
from teachable.rollout.engine import RolloutEngine, RolloutSpec
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


def _specs(snap: Snapshot, advice: Advice, patches: dict, p: LabelParams, seed: int, first: int,
           last: int) -> list[RolloutSpec]:
    """Rollouts first..last-1 of every arm of a snapshot (all arms share the sample seed of rollout i; the CPT arms
    stop at `cpt_rollouts`); the deterministic expert's single rollout with the first round."""
    base = dict(level=snap.state.level, seed=snap.seed, start_actions=tuple(snap.state.actions),
                start_hash=snap.state_hash, horizon=p.horizon)
    arms: list[tuple[str, dict]] = [("student", {})]
    if not p.skip_leverage:
        arms.append(("force", {"forced_action": advice.suggested_action}))
    if not p.skip_cpt:
        arms += [(c, {"patch": patches[c]}) for c in CPT_ARMS]
    specs = [RolloutSpec(f"{snap.snapshot_id}|{arm}|{i}", sample_seed=sample_seed(seed, snap.snapshot_id, i),
                         **base, **extra)
             for arm, extra in arms for i in range(first, min(last, p.cpt_rollouts) if arm in CPT_ARMS else last)]
    if first == 0 and not p.skip_leverage:
        specs.append(RolloutSpec(f"{snap.snapshot_id}|expert|0", control="expert", **base))
    return specs


def decision_confidence(p: LabelParams) -> float:
    """The level of each look's two-sided interval. A side is wrong only through one tail (the one away from the
    truth), each tail holds (1 - level) / 2 = alpha / looks, and Bonferroni over the looks a snapshot can get keeps
    the chance that any look puts it on the wrong side at most `alpha`."""
    return 1 - 2 * p.alpha / (p.max_rollouts // p.round_size)


def match_probability(snap: Snapshot, scores, suggested: str, temperature: float) -> float | None:
    """The exact chance that the student's own first draw picks the expert's action (then its rollout and the
    forced one are the same episode). Unknown (None) where the state has an open action: there the candidates
    themselves are sampled per rollout."""
    if has_open(snap.valid_actions):
        return None
    dist = to_distribution(scores.logliks, temperature)
    return float(dist[scores.candidates.index(suggested)]) if suggested in scores.candidates else 0.0


def _local(outcomes: dict[str, list[bool]], p_match: float | None, confidence: float = CONFIDENCE) -> dict:
    return local_leverage(outcomes, outcomes["matched"] if p_match is not None else None, p_match, confidence)


def needs_more(outcomes: dict[str, list[bool]], p_match: float | None, p: LabelParams, threshold: float) -> bool:
    """Whether a snapshot gets another round: the CPT arms short of `cpt_rollouts`, or below the cap with its
    leverage side still undetermined (or its L_local interval wider than `target_width`)."""
    n = len(outcomes["student"])
    if not p.skip_cpt and n < p.cpt_rollouts:
        return True
    if n >= p.max_rollouts or p.skip_leverage:
        return False
    decision = _local(outcomes, p_match, decision_confidence(p))
    if side(decision["ci"], threshold) == "undetermined":
        return True
    if p.target_width is None:
        return False
    low, high = _local(outcomes, p_match)["ci"]
    return high - low > p.target_width


def _leverage_record(outcomes: dict[str, list[bool]], p_match: float | None, p: LabelParams,
                     threshold: float) -> dict:
    decision = _local(outcomes, p_match, decision_confidence(p))
    matched = outcomes["matched"] if p_match is not None else None
    return {**leverage(outcomes, matched, p_match), "horizon": p.horizon, "threshold": threshold,
            "side": side(decision["ci"], threshold), "decision_ci": decision["ci"],
            "decision_confidence": round(decision_confidence(p), 6)}


def label_chunk(snapshots: list[Snapshot], policy, teacher, engine: RolloutEngine, p: LabelParams, seed: int,
                L_threshold: float) -> list[dict]:
    """Labeled snapshot records (dicts), in the order given; snapshots the teacher dropped are left out.

    Rollouts come in rounds of `round_size` per arm; a snapshot gets another round only while `needs_more` says
    so. Every decision uses the snapshot's own outcomes, so records do not depend on the chunk or batch size."""
    advised, candidates = [], []
    for snap in snapshots:
        env = restore_env(snap.env, snap.state.model_dump(), snap.state_hash, engine.max_steps)
        advice = teacher.advise(env, snap.student_action)  # None: an unusable answer with on_invalid: drop
        advised.append(advice)
        candidates.append(scoring_candidates(snap, advice, policy, env, engine.temperature, seed))
    scores = policy.score(
        [build_messages(s.mission, s.obs, s.valid_actions, s.history) for s in snapshots], candidates
    )
    prepared, p_match = [], {}
    for snap, sc, advice in zip(snapshots, scores, advised):
        if advice is not None:
            wrong = wrong_action(snap, sc.probs, advice.suggested_action, sc.candidates)
            prepared.append((snap, sc, advice, wrong, cpt_patches(snap, advice, wrong, seed)))
            p_match[snap.snapshot_id] = match_probability(snap, sc, advice.suggested_action, engine.temperature)

    outcomes: dict[str, dict[str, list[bool]]] = {snap.snapshot_id: {} for snap, *_ in prepared}
    active, first = list(prepared), 0
    while active:
        last = min(first + p.round_size, p.max_rollouts)
        specs = [spec for snap, _, advice, _, patches in active
                 for spec in _specs(snap, advice, patches, p, seed, first, last)]
        suggested = {snap.snapshot_id: advice.suggested_action for snap, _, advice, _, _ in active}
        for episode in engine.run_shared(specs):  # in spec order: i ascends within each arm
            sid, arm, _ = episode.episode_id.split("|")
            outcomes[sid].setdefault(arm, []).append(episode.success)
            if arm == "student":  # the same episode as the forced one when its own draw picked that action
                outcomes[sid].setdefault("matched", []).append(episode.first_action == suggested[sid])
        first = last
        active = [entry for entry in active
                  if needs_more(outcomes[entry[0].snapshot_id], p_match[entry[0].snapshot_id], p, L_threshold)]

    records = []
    for snap, sc, advice, wrong, patches in prepared:
        result = {arm: v for arm, v in outcomes[snap.snapshot_id].items() if arm != "matched"}
        u = uncertainty(sc.probs)
        record = snap.model_dump(mode="json")
        record.update(
            U=u["entropy"],
            uncertainty=u,
            student_probs=dict(zip(sc.candidates, np.round(sc.probs, 6).tolist())),
            teacher=advice.model_dump(),
            contrast_action=wrong,  # the wrong action the contrast patch and DPO pairs name
            patches=patches,
            rollouts={"n_per_arm": len(result["student"]), "n_cpt": len(result.get("placebo", [])),
                      "total": sum(map(len, result.values()))},
        )
        if not p.skip_leverage:
            record["leverage"] = _leverage_record(outcomes[snap.snapshot_id], p_match[snap.snapshot_id], p, L_threshold)
        if not p.skip_cpt:
            record["cpt"] = cpt(result)
        records.append(record)
    return records
