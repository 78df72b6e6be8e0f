"""Phase 3 evaluation: the same held-out episodes for the base student and every trained model.

Each model runs three panels, sampled at the labeling's temperature by default (`evaluate.n_rollouts` per item;
greedy with temperature 0): `n_tasks` held-out tasks (a seed range no stage trains on), held-out snapshots per
quadrant (snapshot tasks the split keeps out of training), and the retention panel (tasks the base student solved
in phase 0). Every model, and every training seed of a model, sees exactly the same episode specs and sample seeds,
so differences are paired by item (`teachable.gates.paired`). The tables and gates below are pure functions of the
episodes, so they are unit-testable without a model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from peft import PeftModel
from tqdm.auto import tqdm

from teachable.config import GateParams, TrainParams
from teachable.gates import evaluation as gates
from teachable.gates.core import holm
from teachable.gates.paired import compare, min_detectable, success_rate
from teachable.labeling.quadrants import QUADRANTS, SHORT_NAMES
from teachable.policy.hf import HFPolicy
from teachable.config import Params
from teachable.envs import make_env
from teachable.records import Episode, InputError
from teachable.rollout import RolloutEngine, RolloutSpec
from teachable.stage import ScratchLog
from teachable.tasks import make_tasks

MODEL_COLUMNS = ["model", "kind", "train_quadrant", "format"]


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: the base student (`adapter` None) or the student with one trained LoRA adapter."""

    model: str
    kind: str  # base | cell | baseline | recovery | selection
    adapter: str | None = None
    train_quadrant: str = ""
    format: str = ""
    mlflow_run_id: str | None = None  # the training run, which gets the headline numbers too
    seed: int = 0  # training seed index: a model trained n_seeds times is n_seeds EvalModels of one name

    @property
    def key(self) -> str:
        return f"{self.model}/seed-{self.seed}"

    @property
    def columns(self) -> dict:
        return {"model": self.model, "kind": self.kind, "train_quadrant": self.train_quadrant, "format": self.format,
                "seed": self.seed}


def phase2_cells(train: TrainParams) -> list[str]:
    """The phase 2 models the current params define, as dvc.yaml trains them: every `train.quadrants` x
    `train.formats` cell (stage `train`), the `train.baselines` (`train_baseline`) and `recovery`
    (`train_recovery`). A directory under models/phase2 that is none of these is from earlier params."""
    return [f"{q}-{f}" for q in train.quadrants for f in train.formats] + list(train.baselines) + ["recovery"]


def cell_stage(cell: str) -> str:
    """The dvc.yaml stage that trains a phase 2 cell."""
    if cell == "recovery":
        return "train_recovery"
    return f"train@{cell}" if "-" in cell else f"train_baseline@{cell}"


def matrix_models(phase2: str | Path, cells: list[str]) -> list[EvalModel]:
    """The base student plus every training seed of each phase 2 model in `cells` (`phase2_cells`: exactly what
    the params define, never a stale directory from earlier params). `<cell>/metrics.json` lists the seeds; one
    without `seeds` is one adapter. An untrained (empty) cell is evaluated as the base model it is, so every row of
    the matrix exists. A defined cell that was not trained (no metrics.json, or an adapter missing) is an
    InputError naming it and the stage to run."""
    out = [EvalModel("base", "base")]
    for name in sorted(cells):
        cell_dir = Path(phase2) / name
        metrics_path = cell_dir / "metrics.json"
        if not metrics_path.is_file():
            what = "has no metrics.json" if cell_dir.is_dir() else "does not exist"
            raise InputError(f"{cell_dir} {what}: the params define model {name} but it has not been trained; "
                             f"run `dvc repro {cell_stage(name)}`")
        try:
            metrics = json.loads(metrics_path.read_text())
        except ValueError as err:
            raise InputError(f"{metrics_path}: malformed JSON ({err}); run `dvc repro {cell_stage(name)}`") from None
        trained = metrics.get("trained", True)
        seeds = metrics.get("seeds") or [{"seed_index": 0, "dir": str(cell_dir),
                                          "mlflow_run_id": metrics.get("mlflow_run_id")}]
        if trained:
            missing = [s["dir"] for s in seeds if not (Path(s["dir"]) / "adapter_config.json").is_file()]
            if missing:
                raise InputError(f"{missing[0]} has no adapter (adapter_config.json), though {metrics_path} lists "
                                 f"it; run `dvc repro {cell_stage(name)}`")
        kind, quadrant, fmt = ("cell", *name.split("-", 1)) if "-" in name else (
            "recovery" if name == "recovery" else "baseline", "", "")
        out += [EvalModel(name, kind, s["dir"] if trained else None, quadrant, fmt, s.get("mlflow_run_id"),
                          s["seed_index"]) for s in seeds]
    return out


@contextlib.contextmanager
def adapted(policy: HFPolicy, adapter: str | None) -> Iterator[HFPolicy]:
    """The policy with a LoRA adapter attached for the duration; the shared base model is left as it was."""
    if adapter is None:
        yield policy
        return
    model = PeftModel.from_pretrained(policy.model, adapter).eval()
    try:
        yield HFPolicy(model, policy.tokenizer, policy.name, policy.batch_size)
    finally:
        model.unload()


# -- the panels ------------------------------------------------------------------------------------------------------
def heldout_snapshots(records: list[dict], n_per_quadrant: int, seed: int) -> list[dict]:
    """Up to n held-out (`split == "eval"`) snapshots per quadrant, a seeded sample, in a stable order."""
    chosen = []
    for q in QUADRANTS:
        pool = sorted((r for r in records if r.get("split") == "eval" and r["quadrant"] == q),
                      key=lambda r: r["snapshot_id"])
        chosen += random.Random(f"{seed}-{q}").sample(pool, min(n_per_quadrant, len(pool)))
    return chosen


def panel_specs(levels: list[str], n_tasks: int, snapshots: list[dict], retention: list[dict],
                n_rollouts: int, seed: int) -> list[RolloutSpec]:
    """Episode ids are `panel|item|i`; sample seeds depend only on the id, so every model gets the same ones."""
    rollouts = range(n_rollouts)
    specs = [RolloutSpec(f"task|{t.task_id}|{i}", t.level, t.seed)
             for t in make_tasks(levels, n_tasks, "heldout") for i in rollouts]
    for r in snapshots:
        specs += [RolloutSpec(f"snapshot|{r['snapshot_id']}|{i}", r["state"]["level"], r["seed"],
                              start_actions=tuple(r["state"]["actions"]), start_hash=r["state_hash"])
                  for i in rollouts]
    specs += [RolloutSpec(f"retention|{t['task_id']}|{i}", t["level"], t["seed"]) for t in retention
              for i in rollouts]
    return [dataclasses.replace(s, sample_seed=panel_sample_seed(seed, s.episode_id)) for s in specs]


def panel_sample_seed(seed: int, episode_id: str) -> int:
    """A sampling stream of its own for each evaluation episode. Not phase 0's `seed * 1_000_003 + i`: a retention
    task is a phase 0 task the base solved, and with phase 0's seed a sampled (temperature > 0) evaluation would
    replay that very success, so the base would keep 100% of the retention panel by construction."""
    return random.Random(f"evaluate|{seed}|{episode_id}").getrandbits(63)


def evaluation_plan(params: Params, snapshots: list[dict], retention: list[dict]) -> dict:
    """What every model is evaluated on (phase 3 and the selection runs alike): the episode specs, how to run
    them, and what the tables need to read them (`evaluate_models` keyword arguments)."""
    e, env = params.evaluate, params.env
    chosen = heldout_snapshots(snapshots, e.n_snapshots_per_quadrant, params.seed)
    return {
        "specs": panel_specs(env.levels, e.n_tasks, chosen, retention[: e.retention_max], e.n_rollouts,
                             params.seed),
        "engine_kwargs": dict(env_name=env.name, max_steps=env.max_steps, history_len=env.history_len,
                              temperature=e.temperature, batch_size=e.batch_size),
        "quadrant_of": {r["snapshot_id"]: r["quadrant"] for r in chosen},
        "horizon": horizons(env.name, env.levels, env.max_steps),
    }


def horizons(env_name: str, levels: list[str], max_steps: int) -> dict[str, int]:
    """Each level's step limit (the episode horizon), to tell "ran out of steps"."""
    limits = {}
    for task in make_tasks(levels, len(levels), "heldout"):
        env = make_env(env_name, task.level, max_steps)
        env.reset(task.seed)
        limits[task.level] = env.max_steps
    return limits


def evaluate_models(policy: HFPolicy, models: list[EvalModel], specs: list[RolloutSpec], engine_kwargs: dict,
                    quadrant_of: dict[str, str], horizon: dict[str, int], scratch: ScratchLog) -> pd.DataFrame:
    """Every model on the same specs; a model's rows go to the scratch log when it finishes, so a killed stage
    restarted skips the models already evaluated."""
    done = {entry["model"]: entry["rows"] for entry in scratch.load()}
    for model in tqdm([m for m in models if m.key not in done], desc="models", unit="model"):
        with adapted(policy, model.adapter) as p:
            episodes = RolloutEngine(p, record_steps=True, stop_cycles=engine_kwargs["temperature"] == 0,
                                     **engine_kwargs).run(specs)
        done[model.key] = episode_rows(model, episodes, quadrant_of, horizon)
        scratch.append({"model": model.key, "rows": done[model.key]})
    return pd.DataFrame([row for m in models for row in done[m.key]])


def episode_rows(model: EvalModel, episodes: list[Episode], quadrant_of: dict[str, str],
                 horizon: dict[str, int]) -> list[dict]:
    """One flat row per episode: which panel and item (and the item's quadrant, Q1..Q4, for snapshots), success,
    steps, and whether it looped or ran out of steps (`horizon`: each level's step limit)."""
    rows = []
    for ep in episodes:
        panel, item, rollout = ep.episode_id.split("|")
        seen, looped = set(), ep.cycled
        for step in ep.steps:
            key = (step.state_hash, step.action)
            looped = looped or key in seen
            seen.add(key)
        level = ep.task_id.rsplit("-", 1)[0]
        rows.append({**model.columns, "panel": panel, "item": item, "rollout": int(rollout),
                     "eval_quadrant": SHORT_NAMES.get(quadrant_of.get(item), ""),
                     "success": ep.success, "n_steps": ep.n_steps, "looped": looped,
                     "hit_max_steps": (not ep.success) and (ep.cycled or ep.n_steps >= horizon.get(level, 10**9))})
    return rows


# -- the tables ------------------------------------------------------------------------------------------------------
TABLE_COLUMNS = ["n_seeds", "n_rollouts", "successes", "success", "ci_low", "ci_high", "delta", "delta_ci_low",
                 "delta_ci_high", "p_value", "p_holm", "min_detectable_delta"]
TRAINED_KINDS = ("cell", "baseline", "recovery")


def normalise(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows without `seed` / `rollout` columns (hand-made, or one seed and one rollout) get 0 for both."""
    return rows.assign(**{c: rows[c] if c in rows else 0 for c in ("seed", "rollout")})


def panel_items(rows: pd.DataFrame) -> list[str]:
    """A panel's items in the order the base model ran them (every model ran the same specs)."""
    base = rows[rows.model == "base"]
    return list(dict.fromkeys((base if len(base) else rows).item))


def outcomes(rows: pd.DataFrame, items: list[str]) -> np.ndarray:
    """One model's rows on one panel as an array (training seeds, items, rollouts) of successes, items in the
    given order; an error when the model lacks an episode the items ask for."""
    table = rows.assign(success=rows.success.astype(float)).pivot_table(
        index="item", columns=["seed", "rollout"], values="success", aggfunc="first").reindex(items)
    if table.isna().any().any():
        raise ValueError(f"model {rows.model.iloc[0]!r} lacks episodes on items the base ran")
    n_seeds, n_rollouts = rows.seed.nunique(), rows.rollout.nunique()
    return table.to_numpy().reshape(len(items), n_seeds, n_rollouts).transpose(1, 0, 2)


def _model_table(rows: pd.DataFrame, n_name: str) -> pd.DataFrame:
    """Per model on one panel's rows: success over seeds, items and rollouts with its 95% interval; against the
    base on the same items (`teachable.gates.paired.compare`): the delta, its 95% interval, the two-sided p, Holm's
    adjustment across the models and the minimum detectable delta (two-sided 0.05, power 0.8)."""
    columns = MODEL_COLUMNS + [n_name] + TABLE_COLUMNS
    if rows.empty:  # a panel with nothing in it (e.g. no held-out snapshots): an empty table, not an error
        return pd.DataFrame(columns=columns, dtype=float)
    items = panel_items(rows)
    has_base = bool((rows.model == "base").any())
    base = outcomes(rows[rows.model == "base"], items) if has_base else None
    out = []
    for _, model in rows.drop_duplicates("model")[MODEL_COLUMNS].iterrows():
        a = outcomes(rows[rows.model == model.model], items)
        rate = success_rate(a)
        row = {**model.to_dict(), n_name: len(items), "n_seeds": a.shape[0], "n_rollouts": a.shape[2],
               "successes": int(a.sum()), "success": rate["success"], "ci_low": rate["ci"][0], "ci_high": rate["ci"][1]}
        if has_base and model.model == "base":
            row["delta"] = 0.0
        elif has_base:
            d = compare(a, base)
            row.update(delta=d["delta"], delta_ci_low=d["ci"][0], delta_ci_high=d["ci"][1], p_value=d["p_two_sided"],
                       min_detectable_delta=min_detectable(d["se"], 0.05, two_sided=True))
        out.append(row)
    table = pd.DataFrame(out).reindex(columns=columns)
    trained = (table.model != "base") & table.p_value.notna()
    table.loc[trained, "p_holm"] = holm(table.loc[trained, "p_value"].tolist())
    return table.round(6)


def overall_task_results(rows: pd.DataFrame) -> pd.DataFrame:
    return _model_table(normalise(rows)[rows.panel == "task"], "n_tasks")


def retention_results(rows: pd.DataFrame) -> pd.DataFrame:
    return _model_table(normalise(rows)[rows.panel == "retention"], "n_tasks")


def per_quadrant_results(rows: pd.DataFrame) -> pd.DataFrame:
    snapshots = normalise(rows)[rows.panel == "snapshot"]
    parts = [_model_table(snapshots[snapshots.eval_quadrant == q], "n_snapshots").assign(eval_quadrant=q)
             for q in sorted(set(snapshots.eval_quadrant))]
    columns = MODEL_COLUMNS + ["eval_quadrant", "n_snapshots"] + TABLE_COLUMNS
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns, dtype=float)


def transfer_matrix(per_quadrant: pd.DataFrame) -> pd.DataFrame:
    """Trained-on quadrant x evaluated-on quadrant: mean success (over the formats trained on that quadrant) and
    its change vs the base student on the same held-out snapshots (descriptive; the test is the
    `transfer_diagonal` gate)."""
    cells = per_quadrant[per_quadrant.kind == "cell"]
    base = per_quadrant[per_quadrant.model == "base"].set_index("eval_quadrant").success
    table = cells.groupby(["train_quadrant", "eval_quadrant"], as_index=False).success.mean()
    table["success"] = table.success.round(6)
    table["base_success"] = table.eval_quadrant.map(base)
    table["delta"] = (table.success - table.base_success).round(6) + 0.0  # + 0.0: no "-0.0"
    return table.sort_values(["train_quadrant", "eval_quadrant"]).reset_index(drop=True)


def stuckness_results(rows: pd.DataFrame) -> pd.DataFrame:
    """On the held-out task panel: loop rate (a repeated state hash + action within an episode), mean steps of the
    successful episodes, and the share that ran out of steps (over every seed and rollout)."""
    tasks = rows[rows.panel == "task"]
    return tasks.groupby(MODEL_COLUMNS, sort=False).apply(lambda g: pd.Series({
        "n_episodes": len(g), "loop_rate": round(g.looped.mean(), 6),
        "mean_steps_to_success": round(g[g.success].n_steps.mean(), 3) if g.success.any() else None,
        "max_steps_rate": round(g.hit_max_steps.mean(), 6)}), include_groups=False).reset_index()


def tables(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every phase 3 table (named as its CSV file) from the per-episode rows."""
    per_quadrant = per_quadrant_results(rows)
    return {"overall_task_results": overall_task_results(rows), "per_quadrant_results": per_quadrant,
            "transfer_matrix": transfer_matrix(per_quadrant), "retention_results": retention_results(rows),
            "stuckness_results": stuckness_results(rows)}


# -- the gates -------------------------------------------------------------------------------------------------------
def _arrays(rows: pd.DataFrame, items: list[str], models: list[str]) -> dict[str, np.ndarray]:
    return {m: outcomes(rows[rows.model == m], items) for m in models}


def phase3_gates(rows: pd.DataFrame, g: GateParams, seed: int) -> dict[str, dict]:
    """The four phase 3 gates (`teachable.gates.evaluation`) on the per-episode rows. End-to-end gain: the model
    is chosen on the even-numbered held-out tasks (in panel order) and tested on the odd-numbered ones."""
    rows = normalise(rows)
    trained = rows[rows.kind.isin(TRAINED_KINDS)]
    names = list(dict.fromkeys(trained.model))
    tasks, kept, snaps = (rows[rows.panel == p] for p in ("task", "retention", "snapshot"))
    items = panel_items(tasks)
    halves = [items[0::2], items[1::2]]
    validation, test = (_arrays(tasks, half, names) for half in halves)
    base_val, base_test = (outcomes(tasks[tasks.model == "base"], half) for half in halves)
    retention_items = panel_items(kept)
    snapshot_items = panel_items(snaps)
    quadrant_of = dict(zip(snaps.item, snaps.eval_quadrant))
    cells = trained[trained.kind == "cell"].drop_duplicates("model")
    per_quadrant: dict[str, dict[str, np.ndarray]] = {}
    for _, cell in cells.iterrows():
        own = [i for i in snapshot_items if quadrant_of[i] == cell.train_quadrant]
        per_quadrant.setdefault(cell.train_quadrant, {})[cell.format] = outcomes(snaps[snaps.model == cell.model], own)
    snapshot_cells = {c.model: (c.train_quadrant, outcomes(snaps[snaps.model == c.model], snapshot_items))
                      for _, c in cells.iterrows()} if snapshot_items else {}
    return {
        "end_to_end_gain": gates.end_to_end_gain(validation, base_val, test, base_test, g.alpha, g.min_effect),
        "retention": gates.non_inferiority(_arrays(kept, retention_items, names),
                                           outcomes(kept[kept.model == "base"], retention_items) if len(kept) else
                                           np.zeros((1, 0, 1)), g.alpha, g.retention_margin,
                                           "worst_retention_delta_lower_bound"),
        "supervision_differentiation": gates.supervision_differentiation(per_quadrant, g.alpha, g.min_effect),
        "transfer_diagonal": gates.transfer_diagonal(
            snapshot_cells, outcomes(snaps[snaps.model == "base"], snapshot_items) if snapshot_items else
            np.zeros((1, 0, 1)), [quadrant_of[i] for i in snapshot_items], g.alpha, g.min_effect, g.n_resamples,
            seed),
    }


def _median(table: pd.DataFrame, column: str) -> float | None:
    values = table[column].dropna() if column in table else []
    return round(float(values.median()), 6) if len(values) else None


def _significant(table: pd.DataFrame, sign: int) -> int:
    """Models whose paired delta differs from the base in the direction `sign` after Holm's adjustment."""
    if "p_holm" not in table or not len(table):
        return 0
    return int(((table.p_holm < 0.05) & (np.sign(table.delta) == sign)).sum())


def headline(results: dict[str, pd.DataFrame], verdicts: dict[str, dict]) -> dict:
    """The DVC metrics: the base's success with its interval, the gates' verdicts and their numbers (the chosen
    model's tested gain, the transfer diagonal, the worst retention bound, the best format per quadrant), and what
    this n can detect. No number here is the best of many picked after the fact."""
    overall, retention = results["overall_task_results"], results["retention_results"]
    base = overall[overall.model == "base"].iloc[0]
    trained = overall[overall.model != "base"]
    gain, diagonal = verdicts["end_to_end_gain"], verdicts["transfer_diagonal"]
    differentiation = verdicts["supervision_differentiation"]
    return {
        "base_success": float(base.success), "base_success_ci": [float(base.ci_low), float(base.ci_high)],
        "n_tasks": int(base.n_tasks), "n_rollouts": int(base.n_rollouts),
        "n_seeds": int(trained.n_seeds.max()) if len(trained) else 0, "n_models": int(overall.model.nunique()),
        "chosen_model": gain.get("chosen_model"), "chosen_model_test_delta": gain.get("value"),
        "chosen_model_test_delta_ci": gain.get("ci"),
        "diagonal_mean_delta": diagonal.get("diagonal_mean"), "off_diagonal_mean_delta": diagonal.get("off_diagonal_mean"),
        "worst_retention_lower_bound": verdicts["retention"].get("value"),
        "best_format_per_quadrant": {q: v["best_format"] for q, v in (differentiation.get("per_quadrant") or {}).items()},
        # paired against the base on the same tasks (Holm across the trained models, 0.05): what this n can see
        "median_min_detectable_delta": _median(trained, "min_detectable_delta"),
        "n_models_above_base_holm": _significant(trained, 1),
        "n_models_below_base_holm": _significant(trained, -1),
        "n_models_losing_retention_holm": _significant(retention[retention.model != "base"], -1),
        "headlines": {
            "base_success": {"value": float(base.success), "ci": [float(base.ci_low), float(base.ci_high)],
                             "n": int(base.n_tasks)},
            "chosen_model_test_delta": {"value": gain.get("value"), "ci": gain.get("ci"), "n": gain.get("n"),
                                        "min_detectable": gain.get("min_detectable")},
        },
        "gates": verdicts,
    }


def selection_gates(rows: pd.DataFrame, models: dict[str, str], g: GateParams) -> dict[str, dict]:
    """Phase 5's gates on the selection runs' rows (`models`: method -> model name): the ordering predictor >
    entropy > random on the held-out tasks as paired comparisons, and retention non-inferiority per method."""
    rows = normalise(rows)
    tasks, kept = rows[rows.panel == "task"], rows[rows.panel == "retention"]
    task_items, kept_items = panel_items(tasks), panel_items(kept)
    return {
        "selection_ordering": gates.ordering({m: outcomes(tasks[tasks.model == name], task_items)
                                              for m, name in models.items()},
                                             ["predictor", "entropy", "random"], g.alpha, g.min_effect),
        "selection_retention": gates.non_inferiority(
            {m: outcomes(kept[kept.model == name], kept_items) for m, name in models.items()},
            outcomes(kept[kept.model == "base"], kept_items) if kept_items else np.zeros((1, 0, 1)), g.alpha,
            g.retention_margin, "worst_retention_delta_lower_bound"),
    }
