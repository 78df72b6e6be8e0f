"""The batched rollout engine: many episodes in lock-step, one policy call per step for all live
episodes.

An episode starts from `reset(seed)` or from a stored state (replayed once, verified by hash, then
forked by deepcopy for every further rollout from the same state). Its first step can be forced to a
given action or carry a patch in the prompt; the whole episode can be under expert control. Student
sampling uses one random generator per episode, seeded from the spec, so an episode's actions do not
depend on which others share its batch.

Common random numbers: every step of every episode takes the same two draws from its generator (a
seed for sampling open-action candidates, a uniform for the choice by inverse CDF), whether the
policy, a forced action or the expert acts. Two arms that share a sample seed therefore stay in step
after a forced or patched first step: where they take the same first action they are the same
episode, so their difference is measured without noise.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from teachable.envs import TextEnv, make_env, restore_env
from teachable.policy.candidates import expand_candidates, has_open, sample_open_actions
from teachable.policy.hf import to_distribution
from teachable.policy.parsing import is_malformed, parse_action, without_control_tokens
from teachable.policy.prompts import MIN_REPLY_TOKENS, build_messages, reply_budget
from teachable.core.records import Episode, Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutSpec:
    episode_id: str
    level: str
    seed: int  # the task
    sample_seed: int = 0  # the student's sampling
    start_actions: tuple[str, ...] = ()  # a stored state: replayed from reset(seed)
    start_hash: str | None = None
    forced_action: str | None = None  # taken at the first step instead of the policy's choice
    patch: str | None = None  # in the prompt at the first step only
    control: str = "student"  # or "expert"
    # steps allowed from the start state (None: up to the engine's max_steps)
    horizon: int | None = None

    @property
    def task_id(self) -> str:
        return f"{self.level}-{self.seed}"


@dataclass
class _Live:
    spec: RolloutSpec
    env: TextEnv
    rng: np.random.Generator
    steps: list[Step] = field(default_factory=list)
    n_steps: int = 0
    reward: float = 0.0
    success: bool = False
    done: bool = False
    cycled: bool = False
    seen: set = field(default_factory=set)  # (state hash, prompt) pairs, for `stop_cycles`
    pending: tuple[str | None, dict[str, float], bool] | None = None
    limit: int = 0  # the step count at which the episode is cut off
    first_action: str | None = None
    # this step's (open-sampling seed, uniform), drawn for every step
    draws: tuple[int, float] = (0, 0.0)
    reply: str = ""  # this step's generated reply, kept on its Step when it names no valid action


def inverse_cdf(probs: np.ndarray, u: float) -> int:
    """The index a uniform draw `u` picks from a distribution (the first whose cumulative mass
    exceeds u)."""
    return min(int(np.searchsorted(np.cumsum(probs), u, side="right")), len(probs) - 1)


class RolloutEngine:
    def __init__(
        self,
        policy,
        env_name: str = "babyai",
        max_steps: int = 32,
        history_len: int = 1,
        temperature: float = 1.0,
        batch_size: int = 64,
        record_steps: bool = True,
        action_mode: str = "score",
        progress: bool = False,
        stop_cycles: bool = False,
    ):
        if action_mode not in ("score", "generate"):
            raise ValueError(f"action_mode must be 'score' or 'generate', got {action_mode!r}")
        if stop_cycles and temperature != 0:
            raise ValueError(
                "stop_cycles needs greedy decoding (temperature 0): "
                "only then does a cycle repeat forever"
            )
        self.policy = policy
        self.env_name = env_name
        self.max_steps = max_steps
        self.history_len = history_len
        self.temperature = temperature
        self.batch_size = batch_size
        self.record_steps = record_steps
        self.action_mode = action_mode
        self.progress = progress
        self.stop_cycles = stop_cycles

    # -- starting episodes -------------------------------------------------------------------------
    def _start(self, spec: RolloutSpec, templates: dict) -> _Live:
        limit = (
            len(spec.start_actions) + spec.horizon if spec.horizon is not None else self.max_steps
        )
        if spec.start_actions:
            key = (spec.level, spec.seed, spec.start_actions, limit)
            if key not in templates:
                state = {
                    "level": spec.level,
                    "seed": spec.seed,
                    "actions": list(spec.start_actions),
                }
                templates[key] = restore_env(self.env_name, state, spec.start_hash, limit)
            env = templates[key].fork()
        else:
            env = make_env(self.env_name, spec.level, limit)
            env.reset(spec.seed)
        return _Live(
            spec, env, np.random.default_rng(spec.sample_seed), n_steps=env.step_count, limit=limit
        )

    def messages(self, live: _Live) -> list[dict]:
        first = live.n_steps == len(live.spec.start_actions)
        history = live.env.history[-self.history_len :] if self.history_len else []
        return build_messages(
            live.env.mission,
            live.env.observation,
            live.env.valid_actions(),
            history,
            live.spec.patch if first else None,
        )

    # -- choosing actions --------------------------------------------------------------------------
    def candidates(self, lv: _Live) -> list[str]:
        """The valid actions; an open one (`search[...]`) becomes the student's sampled fillings
        plus the expert's (see `teachable.policy.candidates`), sampled with the episode's own
        generator."""
        valid = lv.env.valid_actions()
        if not has_open(valid):
            return valid
        n = getattr(lv.env, "n_open_samples", 1)
        sampled = sample_open_actions(
            self.policy, self.messages(lv), valid, n, self.temperature, lv.draws[0]
        )
        return expand_candidates(valid, [*sampled, lv.env.expert_action()])

    def _choose_scored(self, lives: Sequence[_Live]) -> None:
        scores = self.policy.score(
            [self.messages(lv) for lv in lives], [self.candidates(lv) for lv in lives]
        )
        for lv, sc in zip(lives, scores):
            probs = to_distribution(sc.logliks)
            sampling = to_distribution(sc.logliks, self.temperature)
            idx = (
                int(np.argmax(sampling))
                if self.temperature == 0
                else inverse_cdf(sampling, lv.draws[1])
            )
            lv.pending = (
                sc.candidates[idx],
                dict(zip(sc.candidates, np.round(probs, 6).tolist())),
                True,
            )

    def _choose_generated(self, lives: Sequence[_Live]) -> None:
        # one generator for the batch: HF generate takes one seed
        seed = lives[0].draws[0] if lives else 0
        tokenizer = getattr(self.policy, "tokenizer", None)  # test doubles have none
        budget = (
            reply_budget(tokenizer, [lv.env.valid_actions() for lv in lives])
            if tokenizer
            else MIN_REPLY_TOKENS
        )
        replies = self.policy.generate(
            [self.messages(lv) for lv in lives],
            max_new_tokens=budget,
            temperature=self.temperature,
            seed=seed,
        )
        for lv, reply in zip(lives, replies):
            action = parse_action(reply, lv.env.valid_actions())
            parsed = action is not None
            # retail's parse_failure: respond (tau-bench): only a reply with no tool call goes to
            # the user as text; a well-formed call that names no valid action stays a parse failure,
            # its JSON is no message
            if not parsed and is_malformed(reply) and hasattr(lv.env, "unparsed_action"):
                action = lv.env.unparsed_action(without_control_tokens(reply))
            lv.pending, lv.reply = (action, {}, parsed), reply

    def _choose(self, lives: list[_Live]) -> None:
        ask = []
        for lv in lives:
            # taken whoever acts (see above)
            lv.draws = (int(lv.rng.integers(2**31)), float(lv.rng.random()))
            first = lv.n_steps == len(lv.spec.start_actions)
            if first and lv.spec.forced_action is not None:
                lv.pending = (lv.spec.forced_action, {}, True)
            elif lv.spec.control == "expert":
                lv.pending = (lv.env.expert_action(), {}, True)
            else:
                ask.append(lv)
        if ask:
            (self._choose_scored if self.action_mode == "score" else self._choose_generated)(ask)

    # -- stepping ----------------------------------------------------------------------------------
    def _advance(self, lv: _Live) -> None:
        action, probs, parse_ok = lv.pending
        if lv.n_steps == len(lv.spec.start_actions):
            lv.first_action = action
        # a failed parse is recorded even where its text went to the user (parse_ok false)
        if self.record_steps:
            # what the student said, to read its failures
            unparsed = {} if parse_ok else {"reply": lv.reply}
            lv.steps.append(
                Step(
                    obs=lv.env.observation,
                    valid_actions=lv.env.valid_actions(),
                    action=action,
                    action_probs=probs,
                    parse_ok=parse_ok,
                    state_hash=lv.env.state_hash(),
                    **unparsed,
                )
            )
        lv.n_steps += 1
        # an unparseable reply (parse_failure count) wastes the step and changes nothing
        if action is not None:
            _, reward, terminated, truncated, info = lv.env.step(action)
            lv.reward += reward
            lv.success = lv.success or info.get("success", False)
            lv.done = terminated or truncated
        lv.done = lv.done or lv.n_steps >= lv.limit
        if self.stop_cycles and not lv.done and lv.spec.control == "student":
            self._check_cycle(lv)

    def _check_cycle(self, lv: _Live) -> None:
        """Greedy decoding is a function of the prompt, and the next state a function of the state
        and action: a (state, prompt) pair seen before means the episode repeats that loop until it
        runs out of steps. End it now as the failure it will be (`cycled`), saving the rest of the
        horizon."""
        key = (lv.env.state_hash(), repr(self.messages(lv)))
        lv.cycled = key in lv.seen
        lv.done = lv.cycled
        lv.seen.add(key)

    def _finish(self, lv: _Live) -> Episode:
        spec = lv.spec
        return Episode(
            episode_id=spec.episode_id,
            env=self.env_name,
            task_id=spec.task_id,
            seed=spec.seed,
            policy="expert" if spec.control == "expert" else self.policy_name,
            mission=lv.env.mission,
            success=lv.success,
            reward=round(lv.reward, 6),
            n_steps=lv.n_steps - len(spec.start_actions),
            steps=lv.steps,
            cycled=lv.cycled,
            first_action=lv.first_action,
        )

    @property
    def policy_name(self) -> str:
        return getattr(self.policy, "name", type(self.policy).__name__)

    def run(
        self, specs: Sequence[RolloutSpec], on_episode: Callable[[Episode], None] | None = None
    ) -> list[Episode]:
        """Run every spec to the end; results come back in the order of `specs`."""
        order = {spec.episode_id: i for i, spec in enumerate(specs)}
        if len(order) != len(specs):
            raise ValueError("episode_id must be unique within one run")
        pending, live, templates = deque(specs), [], {}
        results: list[Episode | None] = [None] * len(specs)
        bar = tqdm(total=len(specs), desc="episodes", unit="ep", disable=not self.progress)
        while pending or live:
            while pending and len(live) < self.batch_size:
                live.append(self._start(pending.popleft(), templates))
            self._choose(live)
            for lv in live:
                self._advance(lv)
            for lv in [lv for lv in live if lv.done]:
                episode = self._finish(lv)
                results[order[lv.spec.episode_id]] = episode
                if on_episode:
                    on_episode(episode)
                bar.update(1)
            live = [lv for lv in live if not lv.done]
        bar.close()
        return results

    def first_actions(self, specs: Sequence[RolloutSpec]) -> list[str | None]:
        """The action each spec takes at its first step, exactly as a full run takes it (one batched
        step each)."""
        probe = copy.copy(self)
        probe.record_steps, probe.progress, probe.stop_cycles = True, False, False
        return [
            ep.steps[0].action
            for ep in probe.run([dataclasses.replace(s, horizon=1) for s in specs])
        ]

    def run_shared(self, specs: Sequence[RolloutSpec]) -> list[Episode]:
        """`run(specs)` for arms that share start states and sample seeds, each distinct episode run
        once.

        A forced first step takes the same draws as a sampled one, and a patch is in the first
        prompt only, so two specs with the same start state, sample seed and horizon that take the
        same first action are the same episode from then on. Each spec's first action is found in
        one batched step; each distinct (start, seed, first action) then runs once as a forced spec,
        and every spec gets its outcome under its own id. With `action_mode="generate"` (one seed
        per batch) or step records (a shared episode's first prompt is only one of its specs') every
        spec runs as it is."""
        if self.action_mode != "score" or self.record_steps:
            return self.run(specs)
        asked = [s for s in specs if s.control == "student" and s.forced_action is None]
        chosen = dict(zip((s.episode_id for s in asked), self.first_actions(asked)))
        shared: dict[tuple, RolloutSpec] = {}
        key_of = {}
        for spec in specs:
            first = chosen.get(spec.episode_id, spec.forced_action)
            key = (
                spec.level,
                spec.seed,
                spec.start_actions,
                spec.sample_seed,
                spec.horizon,
                spec.control,
                first,
            )
            if key not in shared:
                shared[key] = dataclasses.replace(
                    spec, episode_id=f"shared|{len(shared)}", forced_action=first, patch=None
                )
            key_of[spec.episode_id] = key
        episodes = dict(zip(shared, self.run(list(shared.values()))))
        return [
            episodes[key_of[s.episode_id]].model_copy(update={"episode_id": s.episode_id})
            for s in specs
        ]
