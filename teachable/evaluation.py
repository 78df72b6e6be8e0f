"""Phase 3 evaluation: the same held-out episodes for the base student and every trained model.

Each model runs three panels, greedy by default: `n_tasks` held-out tasks (a seed range no stage trains on),
held-out snapshots per quadrant (snapshot tasks the split keeps out of training), and the retention panel (tasks
the base student solved in phase 0). Every model sees exactly the same episode specs, so differences are paired.
The tables below are pure functions of the episodes, so they are unit-testable without a model.
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
from scipy.stats import binomtest, norm
from tqdm.auto import tqdm

from teachable.labeling.estimates import paired_difference, rate
from teachable.labeling.quadrants import QUADRANTS
from teachable.policy.hf import HFPolicy
from teachable.config import Params
from teachable.envs import make_env
from teachable.records import Episode
from teachable.rollout import RolloutEngine, RolloutSpec
from teachable.stage import ScratchLog
from teachable.supervision import FORMATS
from teachable.tasks import make_tasks

SHORT = {q: q.split("_")[0] for q in QUADRANTS}  # Q1_highU_highL -> Q1
PANELS = ("task", "snapshot", "retention")
MODEL_COLUMNS = ["model", "kind", "train_quadrant", "format"]
MDE_Z = norm.ppf(0.975) + norm.ppf(0.8)  # two-sided 0.05, power 0.8


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate: the base student (`adapter` None) or the student with one trained LoRA adapter."""

    model: str
    kind: str  # base | cell | baseline | recovery | selection
    adapter: str | None = None
    train_quadrant: str = ""
    format: str = ""
    mlflow_run_id: str | None = None  # the training run, which gets the headline numbers too

    @property
    def columns(self) -> dict:
        return {"model": self.model, "kind": self.kind, "train_quadrant": self.train_quadrant, "format": self.format}


def matrix_models(phase2: str | Path) -> list[EvalModel]:
    """The base student plus every phase 2 model directory. An untrained (empty) cell is evaluated as the base
    model it is, so every row of the matrix exists."""
    out = [EvalModel("base", "base")]
    for metrics_path in sorted(Path(phase2).glob("*/metrics.json")):
        name, metrics = metrics_path.parent.name, json.loads(metrics_path.read_text())
        adapter = str(metrics_path.parent) if metrics.get("trained", True) else None
        run_id = metrics.get("mlflow_run_id")
        if "-" in name:
            quadrant, fmt = name.split("-", 1)
            out.append(EvalModel(name, "cell", adapter, quadrant, fmt, run_id))
        else:
            out.append(EvalModel(name, "recovery" if name == "recovery" else "baseline", adapter, mlflow_run_id=run_id))
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
    specs = [RolloutSpec(f"task|{t.task_id}|0", t.level, t.seed) for t in make_tasks(levels, n_tasks, "heldout")]
    for r in snapshots:
        specs += [RolloutSpec(f"snapshot|{r['snapshot_id']}|{i}", r["state"]["level"], r["seed"],
                              start_actions=tuple(r["state"]["actions"]), start_hash=r["state_hash"])
                  for i in range(n_rollouts)]
    specs += [RolloutSpec(f"retention|{t['task_id']}|0", t["level"], t["seed"]) for t in retention]
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
        "specs": panel_specs(env.levels, e.n_tasks, chosen, retention[: e.retention_max], e.n_rollouts_per_snapshot,
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
    for model in tqdm([m for m in models if m.model not in done], desc="models", unit="model"):
        with adapted(policy, model.adapter) as p:
            episodes = RolloutEngine(p, record_steps=True, stop_cycles=engine_kwargs["temperature"] == 0,
                                     **engine_kwargs).run(specs)
        done[model.model] = episode_rows(model, episodes, quadrant_of, horizon)
        scratch.append({"model": model.model, "rows": done[model.model]})
    return pd.DataFrame([row for m in models for row in done[m.model]])


def episode_rows(model: EvalModel, episodes: list[Episode], quadrant_of: dict[str, str],
                 horizon: dict[str, int]) -> list[dict]:
    """One flat row per episode: which panel and item (and the item's quadrant, Q1..Q4, for snapshots), success,
    steps, and whether it looped or ran out of steps (`horizon`: each level's step limit)."""
    rows = []
    for ep in episodes:
        panel, item, _ = ep.episode_id.split("|")
        seen, looped = set(), ep.cycled
        for step in ep.steps:
            key = (step.state_hash, step.action)
            looped = looped or key in seen
            seen.add(key)
        level = ep.task_id.rsplit("-", 1)[0]
        rows.append({**model.columns, "panel": panel, "item": item, "eval_quadrant": SHORT.get(quadrant_of.get(item), ""),
                     "success": ep.success, "n_steps": ep.n_steps, "looped": looped,
                     "hit_max_steps": (not ep.success) and (ep.cycled or ep.n_steps >= horizon.get(level, 10**9))})
    return rows


# -- the tables ------------------------------------------------------------------------------------------------------
def _rate_columns(group: pd.DataFrame) -> pd.Series:
    r = rate(int(group.success.sum()), len(group))
    return pd.Series({"n": r["n"], "successes": r["k"], "success": r["p"], "ci_low": r["ci"][0], "ci_high": r["ci"][1]})


def _rates(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    if rows.empty:  # a panel with nothing in it (e.g. no held-out snapshots): an empty table, not an error
        return pd.DataFrame(columns=by + ["n", "successes", "success", "ci_low", "ci_high"], dtype=float)
    return rows.groupby(by, sort=False)[["success"]].apply(_rate_columns).reset_index()


def _with_delta(table: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    base = table[table.model == "base"][on + ["success"]].rename(columns={"success": "base_success"})
    if on:
        out = table.merge(base, on=on, how="left")
    else:
        out = table.assign(base_success=base.base_success.iloc[0] if len(base) else float("nan"))
    out["delta"] = (out.success - out.base_success).round(6)
    return out


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: each p-value times the number of hypotheses not yet rejected, kept monotone."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_against_base(rows: pd.DataFrame) -> pd.DataFrame:
    """Every model against the base student on one panel's episodes, paired: each model ran the same specs in
    the same order, so the k-th episode of a model and of the base share item and seed. The delta's 95% interval
    (Tango, paired), the exact McNemar p-value (binomial on the discordant pairs), Holm's adjustment across the
    models, and the minimum detectable difference at this n (two-sided 0.05, power 0.8; from the pair's
    discordance, at least one pair in n)."""
    frame = rows.assign(pair=rows.groupby("model").cumcount())
    base = frame[frame.model == "base"].set_index("pair").success.astype(bool)
    out = []
    for model, part in frame[frame.model != "base"].groupby("model", sort=False):
        x = part.set_index("pair").success.astype(bool).reindex(base.index)
        diff = paired_difference(x.to_numpy(), base.to_numpy())
        b, c = int((x & ~base).sum()), int((~x & base).sum())
        discordance = max(b + c, 1) / len(base)
        out.append({"model": model, "delta_ci_low": diff["ci"][0], "delta_ci_high": diff["ci"][1],
                    "p_value": binomtest(b, b + c).pvalue if b + c else 1.0,
                    "min_detectable_delta": round(MDE_Z * (discordance / len(base)) ** 0.5, 6)})
    table = pd.DataFrame(out, columns=["model", "delta_ci_low", "delta_ci_high", "p_value", "min_detectable_delta"])
    table["p_holm"] = holm(table.p_value.tolist()) if len(table) else []
    return table.round({"p_value": 6, "p_holm": 6})


def _with_paired(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    return table.merge(paired_against_base(rows), on="model", how="left") if len(table) else table


def overall_task_results(rows: pd.DataFrame) -> pd.DataFrame:
    tasks = rows[rows.panel == "task"]
    table = _with_delta(_rates(tasks, MODEL_COLUMNS), [])
    return _with_paired(table.rename(columns={"n": "n_tasks"}).drop(columns="base_success"), tasks)


def per_quadrant_results(rows: pd.DataFrame) -> pd.DataFrame:
    table = _with_delta(_rates(rows[rows.panel == "snapshot"], MODEL_COLUMNS + ["eval_quadrant"]), ["eval_quadrant"])
    return table.rename(columns={"n": "n_snapshots"}).drop(columns="base_success")


def transfer_matrix(per_quadrant: pd.DataFrame) -> pd.DataFrame:
    """Trained-on quadrant x evaluated-on quadrant: mean success (over the formats trained on that quadrant) and
    its change vs the base student on the same held-out snapshots."""
    cells = per_quadrant[per_quadrant.kind == "cell"]
    base = per_quadrant[per_quadrant.model == "base"].set_index("eval_quadrant").success
    table = cells.groupby(["train_quadrant", "eval_quadrant"], as_index=False).success.mean()
    table["success"] = table.success.round(6)
    table["base_success"] = table.eval_quadrant.map(base)
    table["delta"] = (table.success - table.base_success).round(6) + 0.0  # + 0.0: no "-0.0"
    return table.sort_values(["train_quadrant", "eval_quadrant"]).reset_index(drop=True)


def retention_results(rows: pd.DataFrame) -> pd.DataFrame:
    kept = rows[rows.panel == "retention"]
    return _with_paired(_with_delta(_rates(kept, MODEL_COLUMNS), []).rename(columns={"n": "n_tasks"}), kept)


def stuckness_results(rows: pd.DataFrame) -> pd.DataFrame:
    """On the held-out task panel: loop rate (a repeated state hash + action within an episode), mean steps of the
    successful episodes, and the share that ran out of steps."""
    tasks = rows[rows.panel == "task"]
    return tasks.groupby(MODEL_COLUMNS, sort=False).apply(lambda g: pd.Series({
        "n_episodes": len(g), "loop_rate": round(g.looped.mean(), 6),
        "mean_steps_to_success": round(g[g.success].n_steps.mean(), 3) if g.success.any() else None,
        "max_steps_rate": round(g.hit_max_steps.mean(), 6)}), include_groups=False).reset_index()


def _best_format(cells: pd.DataFrame) -> str:
    """The format with the highest in-quadrant success; a tie keeps the earlier of demo, hint, contrast, so another
    format is "best" only when it strictly beats demo (what the supervision-differentiation gate asks)."""
    order = {fmt: i for i, fmt in enumerate(FORMATS)}
    ranked = cells.assign(order=cells.format.map(order)).sort_values(["success", "order"], ascending=[False, True])
    return str(ranked.format.iloc[0])


def tables(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every phase 3 table (named as its CSV file) from the per-episode rows."""
    per_quadrant = per_quadrant_results(rows)
    return {"overall_task_results": overall_task_results(rows), "per_quadrant_results": per_quadrant,
            "transfer_matrix": transfer_matrix(per_quadrant), "retention_results": retention_results(rows),
            "stuckness_results": stuckness_results(rows)}


def _median(table: pd.DataFrame, column: str) -> float | None:
    return round(float(table[column].median()), 6) if column in table and len(table) else None


def _significant(table: pd.DataFrame, sign: int) -> int:
    """Models whose paired delta differs from the base in the direction `sign` after Holm's adjustment."""
    if "p_holm" not in table or not len(table):
        return 0
    return int(((table.p_holm < 0.05) & (np.sign(table.delta) == sign)).sum())


def headline(overall: pd.DataFrame, per_quadrant: pd.DataFrame, transfer: pd.DataFrame,
             retention: pd.DataFrame) -> dict:
    """The DVC metrics: base success, the best model, transfer diagonal vs off-diagonal, worst retention change,
    and the best supervision format per quadrant (by in-quadrant success on held-out snapshots)."""
    trained = overall[overall.model != "base"]
    best = trained.loc[trained.delta.idxmax()] if len(trained) else None
    diagonal = transfer[transfer.train_quadrant == transfer.eval_quadrant]
    off = transfer[transfer.train_quadrant != transfer.eval_quadrant]
    cells = per_quadrant[(per_quadrant.kind == "cell") & (per_quadrant.train_quadrant == per_quadrant.eval_quadrant)]
    best_format = {q: _best_format(cells[cells.train_quadrant == q]) for q in sorted(set(cells.train_quadrant))}
    mean = lambda s: round(float(s.mean()), 6) if len(s) else None  # noqa: E731
    return {
        "base_success": float(overall[overall.model == "base"].success.iloc[0]),
        "best_model": None if best is None else str(best.model),
        "best_delta": None if best is None else float(best.delta),
        "diagonal_mean_delta": mean(diagonal.delta),
        "off_diagonal_mean_delta": mean(off.delta),
        "diagonal_dominates": bool(len(diagonal) and len(off) and diagonal.delta.mean() > off.delta.mean()),
        "min_retention_delta": float(retention[retention.model != "base"].delta.min()) if len(retention) > 1 else None,
        "best_format_per_quadrant": best_format,
        "n_models": int(overall.model.nunique()),
        # paired against the base on the same tasks (Holm across the trained models, 0.05): what this n can see
        "n_tasks": int(overall.n_tasks.iloc[0]) if len(overall) else 0,
        "median_min_detectable_delta": _median(trained, "min_detectable_delta"),
        "n_models_above_base_holm": _significant(trained, 1),
        "n_models_below_base_holm": _significant(trained, -1),
        "n_models_losing_retention_holm": _significant(retention[retention.model != "base"], -1),
    }
