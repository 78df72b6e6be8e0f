"""Label a chunk of snapshots: U from the student's scores, teacher advice, then the rollouts that
leverage and the CPT need, in rounds (sequential allocation: rollouts go to the snapshots whose
leverage side is still undetermined).

Each snapshot is scored in a call of its own and each round of its rollouts is one run of the
batched engine of its own. A batched forward pass gives each row floats that depend on the other
rows (the padding to the longest prompt, the matmul kernel chosen for the batch's size: 1e-6 in U
and the action probabilities, which records keep at 6 decimals), so batching snapshots together made
records depend on the chunk, and on where a killed run resumed. Batches of one snapshot's own
episodes make every record a function of the snapshot, params and seed: byte-identical whatever
`chunk_size` and wherever a run stopped (at the same `batch_size`, which bounds how many of a
snapshot's episodes share a batch). On the pilot's CPU this costs no label time beyond noise (1.01x
over six runs, `benchmarks/label_batching.py`); on a GPU the smaller batches are not yet
measured."""

from __future__ import annotations

import logging
import random
from typing import NamedTuple

import numpy as np

from teachable.core.params import LabelParams
from teachable.envs import restore_env
from teachable.labeling.estimates import (
    CONFIDENCE,
    CPT_ARMS,
    cpt,
    leverage,
    local_leverage,
    sample_seed,
    side,
)
from teachable.labeling.posterior import (
    Prior,
    fit_prior,
    pair_counts,
    posterior_high,
    posterior_side,
)
from teachable.labeling.uncertainty import uncertainty
from teachable.policy.patches import contrast_patch, demo_patch, hint_patch, placebo_patch
from teachable.policy.candidates import expand_candidates, has_open, sample_open_actions
from teachable.policy.hf import to_distribution
from teachable.policy.prompts import build_messages
from teachable.core.records import Snapshot
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.teacher.base import Advice

log = logging.getLogger(__name__)


class RoundEntry(NamedTuple):
    """A snapshot in a round of rollouts: its advice, its CPT patches, and whether its leverage arms
    go on."""

    snapshot: Snapshot
    advice: Advice
    patches: dict[str, str | None]
    leverage_arms: bool


def wrong_action(
    snapshot: Snapshot, probs: np.ndarray, suggested: str, candidates: list[str] | None = None
) -> str:
    """The student's action for the contrast: what it did, else its most likely action other than
    the teacher's (over the scored candidates; the open template itself when the teacher's is the
    only one)."""
    if snapshot.student_action and snapshot.student_action != suggested:
        return snapshot.student_action
    candidates = candidates if candidates is not None else snapshot.valid_actions
    ranked = [candidates[i] for i in np.argsort(-probs, kind="stable")]
    return next((a for a in ranked if a != suggested), snapshot.valid_actions[0])


def scoring_candidates(
    snap: Snapshot, advice: Advice | None, policy, env, temperature: float, seed: int
) -> list[str]:
    """The snapshot's valid actions; an open action becomes the student's sampled fillings (seeded
    by the snapshot), the action it took there, and the teacher's."""
    if not has_open(snap.valid_actions):
        return snap.valid_actions
    messages = build_messages(snap.mission, snap.obs, snap.valid_actions, snap.history)
    n = getattr(env, "n_open_samples", 1)
    sampled = sample_open_actions(
        policy,
        messages,
        snap.valid_actions,
        n,
        temperature,
        sample_seed(seed, snap.snapshot_id, -1),
    )
    return expand_candidates(
        snap.valid_actions,
        [*sampled, snap.student_action, advice.suggested_action if advice else None],
    )


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


def _specs(
    snap: Snapshot,
    advice: Advice,
    patches: dict,
    p: LabelParams,
    seed: int,
    first: int,
    last: int,
    leverage_arms: bool = True,
) -> list[RolloutSpec]:
    """Rollouts first..last-1 of every arm of a snapshot (all arms share the sample seed of rollout
    i; the CPT arms stop at `cpt_rollouts`); the deterministic expert's single rollout with the
    first round. `leverage_arms` False leaves out the student and forced arms (the posterior rule
    stopped them while the CPT arms go on)."""
    base = dict(
        level=snap.state.level,
        seed=snap.seed,
        start_actions=tuple(snap.state.actions),
        start_hash=snap.state_hash,
        horizon=p.horizon,
    )
    arms: list[tuple[str, dict]] = [("student", {})] if leverage_arms else []
    if not p.skip_leverage and leverage_arms:
        arms.append(("force", {"forced_action": advice.suggested_action}))
    if not p.skip_cpt:
        arms += [(c, {"patch": patches[c]}) for c in CPT_ARMS]
    specs = [
        RolloutSpec(
            f"{snap.snapshot_id}|{arm}|{i}",
            sample_seed=sample_seed(seed, snap.snapshot_id, i),
            **base,
            **extra,
        )
        for arm, extra in arms
        for i in range(first, min(last, p.cpt_rollouts) if arm in CPT_ARMS else last)
    ]
    if first == 0 and not p.skip_leverage:
        specs.append(RolloutSpec(f"{snap.snapshot_id}|expert|0", control="expert", **base))
    return specs


def decision_confidence(p: LabelParams) -> float:
    """The level of each look's two-sided interval. A side is wrong only through one tail (the one
    away from the truth), each tail holds (1 - level) / 2 = alpha / looks, and Bonferroni over the
    looks a snapshot can get keeps the chance that any look puts it on the wrong side at most
    `alpha`."""
    return 1 - 2 * p.alpha / (p.max_rollouts // p.round_size)


def match_probability(snap: Snapshot, scores, suggested: str, temperature: float) -> float | None:
    """The exact chance that the student's own first draw picks the expert's action (then its
    rollout and the forced one are the same episode). Unknown (None) where the state has an open
    action: there the candidates themselves are sampled per rollout."""
    if has_open(snap.valid_actions):
        return None
    dist = to_distribution(scores.logliks, temperature)
    return (
        float(dist[scores.candidates.index(suggested)]) if suggested in scores.candidates else 0.0
    )


def _matched(outcomes: dict[str, list[bool]], p_match: float | None) -> list[bool] | None:
    """Whether each student rollout's own first draw picked the expert's action (kept in the
    outcomes under "matched", beside the arms); None where p_match is unknown."""
    return outcomes["matched"] if p_match is not None else None


def _local(
    outcomes: dict[str, list[bool]], p_match: float | None, confidence: float = CONFIDENCE
) -> dict:
    return local_leverage(outcomes, _matched(outcomes, p_match), p_match, confidence)


def needs_more(
    outcomes: dict[str, list[bool]], p_match: float | None, p: LabelParams, threshold: float
) -> bool:
    """Whether a snapshot gets another round: the CPT arms short of `cpt_rollouts`, or below the cap
    with its leverage side still undetermined (or its L_local interval wider than
    `target_width`)."""
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


def _leverage_record(
    outcomes: dict[str, list[bool]], p_match: float | None, p: LabelParams, threshold: float
) -> dict:
    decision = _local(outcomes, p_match, decision_confidence(p))
    return {
        **leverage(outcomes, _matched(outcomes, p_match), p_match),
        "horizon": p.horizon,
        "threshold": threshold,
        "side": side(decision["ci"], threshold),
        "decision_ci": decision["ci"],
        "decision_confidence": round(decision_confidence(p), 6),
    }


def _posterior_high(
    outcomes: dict[str, list[bool]], p_match: float | None, threshold: float, prior: Prior
) -> float:
    matched = _matched(outcomes, p_match)
    return posterior_high(
        pair_counts(outcomes["force"], outcomes["student"], matched), p_match, threshold, prior
    )


def leverage_needs_more(
    outcomes: dict[str, list[bool]],
    p_match: float | None,
    p: LabelParams,
    threshold: float,
    prior: Prior,
) -> bool:
    """The posterior rule's look: the leverage arms get another round while below the cap and the
    posterior probability of the wrong side is not yet below `posterior_error`
    (`labeling.posterior`)."""
    if p.skip_leverage or len(outcomes["student"]) >= p.max_rollouts:
        return False
    return (
        posterior_side(_posterior_high(outcomes, p_match, threshold, prior), p.posterior_error)
        == "undetermined"
    )


def _posterior_leverage_record(
    outcomes: dict[str, list[bool]],
    p_match: float | None,
    p: LabelParams,
    threshold: float,
    prior: Prior,
) -> dict:
    """The leverage block under the posterior rule: the side is the posterior's (undetermined when
    the cap came first); `decision_ci` is L_local's 95% interval, so readers of the interval keep
    working."""
    lev = leverage(outcomes, _matched(outcomes, p_match), p_match)
    p_high = _posterior_high(outcomes, p_match, threshold, prior)
    return {
        **lev,
        "horizon": p.horizon,
        "threshold": threshold,
        "side": posterior_side(p_high, p.posterior_error),
        "decision_ci": lev["ci"]["L_local"],
        "decision_confidence": CONFIDENCE,
        "stopping": "posterior",
        "posterior_high": round(p_high, 6),
        "posterior_error": p.posterior_error,
    }


def _run_round(
    entries: list[RoundEntry],
    outcomes: dict[str, dict[str, list[bool]]],
    engine: RolloutEngine,
    p: LabelParams,
    seed: int,
    first: int,
    last: int,
) -> None:
    """Rollouts first..last-1 of each entry, appended to `outcomes` in place: one run of the batched
    engine per snapshot, so the batches its episodes share are its own, whatever else is in the
    chunk (see the module docstring)."""
    for entry in entries:
        specs = _specs(
            entry.snapshot, entry.advice, entry.patches, p, seed, first, last, entry.leverage_arms
        )
        mine = outcomes[entry.snapshot.snapshot_id]
        for episode in engine.run_shared(specs):  # in spec order: i ascends within each arm
            _, arm, _ = episode.episode_id.split("|")
            mine.setdefault(arm, []).append(episode.success)
            # the same episode as the forced one when its own draw picked that action
            if arm == "student":
                mine.setdefault("matched", []).append(
                    episode.first_action == entry.advice.suggested_action
                )


def score_alone(policy, snapshots: list[Snapshot], candidates: list[list[str]]) -> list:
    """Each snapshot's candidates scored in a call of its own: a batched forward pass gives each row
    floats that depend on the other rows (padding, the matmul kernel chosen for the batch's size),
    and U and the action probabilities go into records at 6 decimals."""
    return [
        policy.score([build_messages(s.mission, s.obs, s.valid_actions, s.history)], [c])[0]
        for s, c in zip(snapshots, candidates)
    ]


def first_round(
    snapshots: list[Snapshot], policy, teacher, engine: RolloutEngine, p: LabelParams, seed: int
) -> list[dict]:
    """Pass 1: U (each snapshot scored alone), teacher advice, and every arm's first round. Returns
    one state per snapshot the teacher did not drop, in the order given: JSON-ready (the stage keeps
    it in its resume log) with the record's labels so far, p_match and the outcomes."""
    advised, candidates = [], []
    for snap in snapshots:
        env = restore_env(snap.env, snap.state.model_dump(), snap.state_hash, engine.max_steps)
        # None: an unusable answer with on_invalid: drop
        advice = teacher.advise(env, snap.student_action)
        advised.append(advice)
        candidates.append(scoring_candidates(snap, advice, policy, env, engine.temperature, seed))
    scores = score_alone(policy, snapshots, candidates)
    states, entries = [], []
    for snap, sc, advice in zip(snapshots, scores, advised):
        if advice is None:
            continue
        wrong = wrong_action(snap, sc.probs, advice.suggested_action, sc.candidates)
        patches = cpt_patches(snap, advice, wrong, seed)
        u = uncertainty(sc.probs)
        labels = dict(
            U=u["entropy"],
            uncertainty=u,
            student_probs=dict(zip(sc.candidates, np.round(sc.probs, 6).tolist())),
            teacher=advice.model_dump(),
            # the wrong action the contrast patch and DPO pairs name
            contrast_action=wrong,
            patches=patches,
        )
        states.append(
            {
                "snapshot_id": snap.snapshot_id,
                "labels": labels,
                "outcomes": {},
                "p_match": match_probability(snap, sc, advice.suggested_action, engine.temperature),
            }
        )
        entries.append(RoundEntry(snap, advice, patches, leverage_arms=True))
    outcomes = {state["snapshot_id"]: state["outcomes"] for state in states}
    _run_round(entries, outcomes, engine, p, seed, 0, min(p.round_size, p.max_rollouts))
    return states


def first_round_counts(state: dict, p: LabelParams) -> tuple[int, int, int]:
    """A state's (b, c, r) over its first round: what the posterior rule's prior is fitted on."""
    n, outcomes = min(p.round_size, p.max_rollouts), state["outcomes"]
    matched = _matched(outcomes, state["p_match"])
    matched = matched[:n] if matched is not None else None
    return pair_counts(outcomes["force"][:n], outcomes["student"][:n], matched)


def run_prior(states: list[dict], p: LabelParams) -> Prior | None:
    """The posterior rule's prior, fitted on the first rounds of every state given (all of a run's
    snapshots in the stage, so no record depends on chunking); None under the interval rule or
    without leverage arms."""
    if p.stopping != "posterior" or p.skip_leverage:
        return None
    prior = fit_prior([first_round_counts(state, p) for state in states], p.posterior_prior)
    log.info(
        "posterior prior (%s) over %d snapshots: pi0 %.3f, discordance Beta%s, direction Beta%s",
        prior.model,
        prior.n_snapshots,
        prior.pi0,
        tuple(round(a, 3) for a in prior.discordance),
        tuple(round(a, 3) for a in prior.direction),
    )
    return prior


def _wants(
    outcomes: dict[str, list[bool]],
    p_match: float | None,
    p: LabelParams,
    threshold: float,
    prior: Prior | None,
) -> tuple[bool, bool]:
    """(another round for the snapshot, its leverage arms in it). The interval rule keeps every arm
    in step (`needs_more`); the posterior rule stops the leverage arms on its own look while the CPT
    arms go on to `cpt_rollouts`."""
    if prior is None:
        more = needs_more(outcomes, p_match, p, threshold)
        return more, more
    lev = leverage_needs_more(outcomes, p_match, p, threshold, prior)
    return lev or (not p.skip_cpt and len(outcomes.get("placebo", [])) < p.cpt_rollouts), lev


def more_rounds(
    states: list[dict],
    snapshots: list[Snapshot],
    engine: RolloutEngine,
    p: LabelParams,
    seed: int,
    L_threshold: float,
    prior: Prior | None = None,
) -> list[dict]:
    """Pass 2: the rounds after the first for the states given (from `first_round`, any chunking),
    and their records in the order of `states`. `prior` None: the interval rule; else the posterior
    rule with that prior. Every decision uses the snapshot's own outcomes (and the run's prior), and
    its rollouts run in batches of their own, so records do not depend on the chunk."""
    by_id = {snap.snapshot_id: snap for snap in snapshots}
    outcomes = {
        st["snapshot_id"]: {arm: list(v) for arm, v in st["outcomes"].items()} for st in states
    }
    advice = {st["snapshot_id"]: Advice.model_validate(st["labels"]["teacher"]) for st in states}
    first = min(p.round_size, p.max_rollouts)

    def look(state: dict) -> RoundEntry | None:
        sid = state["snapshot_id"]
        more, lev = _wants(outcomes[sid], state["p_match"], p, L_threshold, prior)
        return (
            RoundEntry(by_id[sid], advice[sid], state["labels"]["patches"], lev) if more else None
        )

    active = list(states)
    while entries := [entry for entry in map(look, active) if entry]:
        going = {entry.snapshot.snapshot_id for entry in entries}
        active = [state for state in active if state["snapshot_id"] in going]
        last = min(first + p.round_size, p.max_rollouts)
        _run_round(entries, outcomes, engine, p, seed, first, last)
        first = last
    return [
        _record(by_id[st["snapshot_id"]], st, outcomes[st["snapshot_id"]], p, L_threshold, prior)
        for st in states
    ]


def _record(
    snap: Snapshot,
    state: dict,
    outcomes: dict[str, list[bool]],
    p: LabelParams,
    L_threshold: float,
    prior: Prior | None,
) -> dict:
    result = {arm: v for arm, v in outcomes.items() if arm != "matched"}
    record = snap.model_dump(mode="json")
    record.update(
        **state["labels"],
        rollouts={
            "n_per_arm": len(result["student"]),
            "n_cpt": len(result.get("placebo", [])),
            "total": sum(map(len, result.values())),
        },
    )
    if not p.skip_leverage:
        record["leverage"] = (
            _leverage_record(outcomes, state["p_match"], p, L_threshold)
            if prior is None
            else _posterior_leverage_record(outcomes, state["p_match"], p, L_threshold, prior)
        )
    if not p.skip_cpt:
        record["cpt"] = cpt(result)
    return record


def label_chunk(
    snapshots: list[Snapshot],
    policy,
    teacher,
    engine: RolloutEngine,
    p: LabelParams,
    seed: int,
    L_threshold: float,
) -> list[dict]:
    """Labeled snapshot records (dicts), in the order given; snapshots the teacher dropped are left
    out.

    Rollouts come in rounds of `round_size` per arm; a snapshot gets another round only while
    `needs_more` says so. Under the interval rule every decision uses the snapshot's own outcomes
    and its own batches, so records do not depend on the chunk. Under the posterior rule the prior
    is fitted on this chunk's first rounds: label a run with `label_snapshots` (or the stage), which
    fits it once on all of them."""
    states = first_round(snapshots, policy, teacher, engine, p, seed)
    return more_rounds(states, snapshots, engine, p, seed, L_threshold, run_prior(states, p))


def label_snapshots(
    snapshots: list[Snapshot],
    policy,
    teacher,
    engine: RolloutEngine,
    p: LabelParams,
    seed: int,
    L_threshold: float,
) -> tuple[list[dict], Prior | None]:
    """A run's records and prior, in two passes over chunks of `chunk_size` as the stage runs them
    (without its resume log): every first round, the prior fitted once on all of them, then the
    rounds after."""
    chunks = [snapshots[i : i + p.chunk_size] for i in range(0, len(snapshots), p.chunk_size)]
    states = [
        state for chunk in chunks for state in first_round(chunk, policy, teacher, engine, p, seed)
    ]
    prior = run_prior(states, p)
    records = []
    for i in range(0, len(states), p.chunk_size):
        records += more_rounds(
            states[i : i + p.chunk_size], snapshots, engine, p, seed, L_threshold, prior
        )
    return records, prior
