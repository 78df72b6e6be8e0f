"""Phase 3 evaluation: the same held-out episodes for the base student and every trained model.

Each model runs three panels, sampled at the labeling's temperature by default
(`evaluate.n_rollouts` per item; greedy with temperature 0): `n_tasks` held-out tasks (a seed range
no stage trains on), held-out snapshots per quadrant (snapshot tasks the split keeps out of
training), and the retention panel (tasks the base student solved in phase 0). Every model, and
every training seed of a model, sees exactly the same episode specs and sample seeds, so differences
are paired by item (`teachable.gates.paired`). The student acts in its action mode
(`rollouts.action_mode`: `score` ranks the valid actions, `generate` writes free text that
`teachable.policy.parsing.parse_action` maps to one, an unparseable reply wasting the step). Here:
which models, on which episodes, run how; the tables and gates built from the episodes are
`teachable.evaluation.results`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from peft import PeftModel
from tqdm.auto import tqdm

from teachable.core.params import Params
from teachable.core.records import Episode, InputError
from teachable.core.resume import ScratchLog
from teachable.core.tasks import make_tasks
from teachable.envs import make_env
from teachable.labeling.quadrants import QUADRANTS, SHORT_NAMES
from teachable.policy.hf import HFPolicy
from teachable.policy.parsing import count_failures
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.training.matrix import cell_metrics, cell_stage

MODEL_COLUMNS = ["model", "kind", "train_quadrant", "format"]
# The episode rows' layout; part of the evaluate_models stage's scratch key, so rows cached by an
# earlier layout (version 1 had no action_mode, n_replies, n_parse_failures) are never mixed with
# new ones. Tables read old rows too.
ROWS_VERSION = 2
# the `horizon` key of the steps an episode from a snapshot gets (label.horizon)
SNAPSHOT_HORIZON = "snapshot"


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: the base student (`adapter` None) or the student with one trained LoRA
    adapter."""

    model: str
    kind: str  # base | cell | baseline | control (`self`) | recovery | selection
    adapter: str | None = None
    train_quadrant: str = ""
    format: str = ""
    mlflow_run_id: str | None = None  # the training run, which gets the headline numbers too
    # training seed index: a model trained n_seeds times is n_seeds EvalModels of one name
    seed: int = 0
    # the snapshot ids this adapter was trained on (the learning panel's items)
    trained_on: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.model}/seed-{self.seed}"

    @property
    def columns(self) -> dict:
        return {
            "model": self.model,
            "kind": self.kind,
            "train_quadrant": self.train_quadrant,
            "format": self.format,
            "seed": self.seed,
        }


def matrix_models(phase2: str | Path, cells: list[str]) -> list[EvalModel]:
    """The base student plus every training seed of each phase 2 model in `cells` (`phase2_cells`:
    exactly what the params define, never a stale directory from earlier params).
    `<cell>/metrics.json` lists the seeds; one without `seeds` is one adapter. An untrained (empty)
    cell is evaluated as the base model it is, so every row of the matrix exists. A defined cell
    that was not trained (no metrics.json, or an adapter missing) is an InputError naming it and the
    stage to run."""
    out = [EvalModel("base", "base")]
    for name in sorted(cells):
        cell_dir, metrics = Path(phase2) / name, cell_metrics(phase2, name)
        trained = metrics.get("trained", True)
        seeds = metrics.get("seeds") or [
            {"seed_index": 0, "dir": str(cell_dir), "mlflow_run_id": metrics.get("mlflow_run_id")}
        ]
        if trained:
            missing = [
                s["dir"] for s in seeds if not (Path(s["dir"]) / "adapter_config.json").is_file()
            ]
            if missing:
                raise InputError(
                    f"{missing[0]} has no adapter (adapter_config.json), though "
                    f"{cell_dir / 'metrics.json'} lists it; run `dvc repro {cell_stage(name)}`"
                )
        kind, quadrant, fmt = (
            ("cell", *name.split("-", 1))
            if "-" in name
            else ({"recovery": "recovery", "self": "control"}.get(name, "baseline"), "", "")
        )
        out += [
            EvalModel(
                name,
                kind,
                s["dir"] if trained else None,
                quadrant,
                fmt,
                s.get("mlflow_run_id"),
                s["seed_index"],
                tuple(s.get("snapshot_ids", ()) if trained else ()),
            )
            for s in seeds
        ]
    return out


@contextlib.contextmanager
def adapted(policy, adapter: str | None) -> Iterator:
    """The policy (an HFPolicy or a ServerPolicy) with a LoRA adapter attached for the duration; the
    shared base model is left as it was. A server policy loads the adapter into its server once,
    names it in every request, and frees it after."""
    from teachable.policy.server import ServerPolicy, adapter_name

    if adapter is None:
        yield policy
        return
    if isinstance(policy, ServerPolicy):
        view = policy.with_adapter(adapter_name(adapter), adapter)
        try:
            yield view
        finally:
            view.unload_adapter()
        return
    model = PeftModel.from_pretrained(policy.model, adapter).eval()
    try:
        yield HFPolicy(model, policy.tokenizer, policy.name, policy.batch_size)
    finally:
        model.unload()


# -- the panels ------------------------------------------------------------------------------------
def heldout_snapshots(records: list[dict], n_per_quadrant: int, seed: int) -> list[dict]:
    """Up to n held-out (`split == "eval"`) snapshots per quadrant, a seeded sample, in a stable
    order."""
    chosen = []
    for q in QUADRANTS:
        pool = sorted(
            (r for r in records if r.get("split") == "eval" and r["quadrant"] == q),
            key=lambda r: r["snapshot_id"],
        )
        chosen += random.Random(f"{seed}-{q}").sample(pool, min(n_per_quadrant, len(pool)))
    return chosen


def panel_specs(
    levels: list[str],
    n_tasks: int,
    snapshots: list[dict],
    retention: list[dict],
    n_rollouts: int,
    seed: int,
    horizon: int | None,
) -> list[RolloutSpec]:
    """Episode ids are `panel|item|i`; sample seeds depend only on the id, so every model gets the
    same ones. An episode from a snapshot gets `horizon` steps (the labeling's), as in labeling and
    phase 1B: with the episode's remaining steps instead, a late snapshot would get fewer steps here
    than there, and time left would confound the per-quadrant, transfer and supervision comparisons
    again."""
    rollouts = range(n_rollouts)
    specs = [
        RolloutSpec(f"task|{t.task_id}|{i}", t.level, t.seed)
        for t in make_tasks(levels, n_tasks, "heldout")
        for i in rollouts
    ]
    for r in snapshots:
        specs += [
            RolloutSpec(
                f"snapshot|{r['snapshot_id']}|{i}",
                r["state"]["level"],
                r["seed"],
                start_actions=tuple(r["state"]["actions"]),
                start_hash=r["state_hash"],
                horizon=horizon,
            )
            for i in rollouts
        ]
    specs += [
        RolloutSpec(f"retention|{t['task_id']}|{i}", t["level"], t["seed"])
        for t in retention
        for i in rollouts
    ]
    return [
        dataclasses.replace(s, sample_seed=panel_sample_seed(seed, s.episode_id)) for s in specs
    ]


def panel_sample_seed(seed: int, episode_id: str) -> int:
    """A sampling stream of its own for each evaluation episode. Not phase 0's `seed * 1_000_003 +
    i`: a retention task is a phase 0 task the base solved, and with phase 0's seed a sampled
    (temperature > 0) evaluation would replay that very success, so the base would keep 100% of the
    retention panel by construction."""
    return random.Random(f"evaluate|{seed}|{episode_id}").getrandbits(63)


def evaluation_plan(params: Params, snapshots: list[dict], retention: list[dict]) -> dict:
    """What every model is evaluated on (phase 3 and the selection runs alike): the episode specs,
    how to run them, and what the tables need to read them (`evaluate_models` keyword arguments)."""
    e, env = params.evaluate, params.env
    chosen = heldout_snapshots(snapshots, e.n_snapshots_per_quadrant, params.seed)
    return {
        "specs": panel_specs(
            env.levels,
            e.n_tasks,
            chosen,
            retention[: e.retention_max],
            e.n_rollouts,
            params.seed,
            params.label.horizon,
        ),
        "engine_kwargs": dict(
            env_name=env.name,
            max_steps=env.max_steps,
            history_len=env.history_len,
            temperature=e.temperature,
            batch_size=e.batch_size,
            action_mode=params.rollouts.action_mode,
        ),
        "quadrant_of": {r["snapshot_id"]: r["quadrant"] for r in chosen},
        "horizon": {
            **horizons(env.name, env.levels, env.max_steps),
            **({SNAPSHOT_HORIZON: params.label.horizon} if params.label.horizon else {}),
        },
    }


def learning_specs(
    models: list[EvalModel], records: list[dict], params: Params
) -> dict[str, list[RolloutSpec]]:
    """The learning panel: each trained adapter from up to `evaluate.n_learning_snapshots` of the
    snapshots it was trained on (a seeded sample), `evaluate.n_learning_rollouts` each at the
    labeling's horizon, and the base from all of them; sample seeds depend only on the episode id,
    so an adapter and the base are paired. Keyed by `EvalModel.key`."""
    e, by_id = params.evaluate, {r["snapshot_id"]: r for r in records}
    chosen = {
        m.key: sorted(
            random.Random(f"learning|{params.seed}|{m.key}").sample(
                sorted(i for i in m.trained_on if i in by_id),
                min(e.n_learning_snapshots, len(m.trained_on)),
            )
        )
        for m in models
        if m.adapter and m.trained_on
    }
    union = sorted({i for ids in chosen.values() for i in ids})

    def specs(ids: list[str]) -> list[RolloutSpec]:
        return [
            dataclasses.replace(
                RolloutSpec(
                    f"learning|{i}|{k}",
                    by_id[i]["state"]["level"],
                    by_id[i]["seed"],
                    start_actions=tuple(by_id[i]["state"]["actions"]),
                    start_hash=by_id[i]["state_hash"],
                    horizon=params.label.horizon,
                ),
                sample_seed=panel_sample_seed(params.seed, f"learning|{i}|{k}"),
            )
            for i in ids
            for k in range(e.n_learning_rollouts)
        ]

    return {
        **{key: specs(ids) for key, ids in chosen.items()},
        **({"base/seed-0": specs(union)} if union else {}),
    }


def horizons(env_name: str, levels: list[str], max_steps: int) -> dict[str, int]:
    """Each level's step limit (the episode horizon), to tell "ran out of steps"."""
    limits = {}
    for task in make_tasks(levels, len(levels), "heldout"):
        env = make_env(env_name, task.level, max_steps)
        env.reset(task.seed)
        limits[task.level] = env.max_steps
    return limits


def evaluate_models(
    policy: HFPolicy,
    models: list[EvalModel],
    specs: list[RolloutSpec],
    engine_kwargs: dict,
    quadrant_of: dict[str, str],
    horizon: dict[str, int],
    scratch: ScratchLog,
    extra: dict[str, list[RolloutSpec]] | None = None,
) -> pd.DataFrame:
    """Every model on the same specs, plus its own `extra` specs (the learning panel, by
    `EvalModel.key`), in `engine_kwargs`' action mode (score by default); a model's rows go to the
    scratch log when it finishes, so a killed stage restarted skips the models already evaluated."""
    done = {entry["model"]: entry["rows"] for entry in scratch.load()}
    for model in tqdm([m for m in models if m.key not in done], desc="models", unit="model"):
        with adapted(policy, model.adapter) as p:
            episodes = RolloutEngine(
                p, record_steps=True, stop_cycles=engine_kwargs["temperature"] == 0, **engine_kwargs
            ).run([*specs, *(extra or {}).get(model.key, [])])
        done[model.key] = episode_rows(
            model, episodes, quadrant_of, horizon, engine_kwargs.get("action_mode", "score")
        )
        scratch.append({"model": model.key, "rows": done[model.key]})
    return pd.DataFrame([row for m in models for row in done[m.key]])


def episode_rows(
    model: EvalModel,
    episodes: list[Episode],
    quadrant_of: dict[str, str],
    horizon: dict[str, int],
    action_mode: str = "score",
) -> list[dict]:
    """One flat row per episode: which panel and item (and the item's quadrant, Q1..Q4, for
    snapshots), success, steps, whether it looped or ran out of steps (`horizon`: each level's step
    limit, and under `snapshot` the steps an episode from a snapshot gets), the action mode, and the
    student's replies and failed ones (`n_replies`: every recorded step, as nothing is forced and no
    expert acts in an evaluation; `n_parse_failures`: steps with `parse_ok` false, a generated reply
    naming no valid action; `n_malformed`: those with no action form at all,
    `teachable.policy.parsing.is_malformed`)."""
    rows = []
    for ep in episodes:
        panel, item, rollout = ep.episode_id.split("|")
        seen, looped = set(), ep.cycled
        for step in ep.steps:
            key = (step.state_hash, step.action)
            looped = looped or key in seen
            seen.add(key)
        level = ep.task_id.rsplit("-", 1)[0]
        from_snapshot = panel in ("snapshot", "learning")
        limit = horizon.get(SNAPSHOT_HORIZON if from_snapshot else level, horizon.get(level, 10**9))
        n_failed, n_malformed = count_failures(ep.steps)
        rows.append(
            {
                **model.columns,
                "panel": panel,
                "item": item,
                "rollout": int(rollout),
                "eval_quadrant": SHORT_NAMES.get(quadrant_of.get(item), ""),
                "success": ep.success,
                "n_steps": ep.n_steps,
                "looped": looped,
                "hit_max_steps": (not ep.success) and (ep.cycled or ep.n_steps >= limit),
                "action_mode": action_mode,
                "n_replies": len(ep.steps),
                "n_parse_failures": n_failed,
                "n_malformed": n_malformed,
            }
        )
    return rows
