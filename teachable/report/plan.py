"""A dry run of what a run costs before it runs (`python -m teachable plan`): per stage the episodes, policy calls,
tokens, training steps, teacher calls and dollars the params ask for, the hours they take on a device profile, and
whether the evaluation's n can decide each phase 3-5 gate at `gates.min_effect`.

Why: a paper-scale run spends GPU-hours and API dollars, and an undersized panel spends them on gates that end
inconclusive; both can be seen from params alone. Nothing runs here. Counts are upper bounds (every episode to its
horizon, every labeling arm to its cap, quadrants balanced); hours scale them by the share a pilot stage actually
ran and divide by `benchmarks/throughput.json` (measured on cpu-2core; every GPU figure a formula, printed with
"estimate, not measured").
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path

import yaml

from teachable.core.params import Params, ParamsError, parse_params
from teachable.gates.core import POWER, min_detectable_difference
from teachable.gates.paired import n_needed
from teachable.labeling.estimates import CPT_ARMS
from teachable.labeling.quadrants import QUADRANTS

THROUGHPUT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.json"
ESTIMATE, MEASURED = "estimate, not measured", "from measured throughput"
DEVICES, BACKENDS = ("cpu-2core", "h100", "h200"), ("hf", "sglang", "vllm")

TEACHER_IN, TEACHER_OUT = 350, 150  # assumed per call: system + reply schema (+ the state's prompt); reply tokens

# Planning variance of one item's paired success difference (model - base) from one training seed and one rollout,
# and the share of it that belongs to the item (more rollouts or seeds do not average it away). Cross-checked on
# the pilot (reports/phase3/episodes.csv, 2026-12-02): per-pair variance median 0.07 / max 0.33 over models on
# tasks, 0.09 / 0.34 on retention; the two seeds' differences correlate 0.91 (tasks) and 0.79 (retention).
ITEM_VARIANCE, BETWEEN_SHARE = 0.25, 0.8

# The seeds' full-scale run (../shared/seeds/v8-experimental-plan.md "Full-Scale Run", v8-readme.md
# "Configuration" and "Compute Budget") in this project's keys. Departures forced by validation: CPT 2 a
# condition and 7 forced rollouts -> cpt_rollouts 2, one round of 8; n_validation_rollouts 3 -> 4 (even); 1B's
# re-measured CPT arm (ours: the seeds correlate the labeling's ELP_net) at the validation's 4.
SEEDS_FULL = {
    "env": {"name": "shop", "levels": ["all"], "max_steps": 15},
    "student": {"base_model": "models/Qwen3-8B"},
    "rollouts": {"n_tasks": 1000},
    "snapshots": {"max_snapshots": 2000, "expert_tasks": 500, "expert_sample_rate": 0.5},
    "teacher": {"name": "openai", "model": "gpt-4o-mini", "max_usd": 30.0},
    "label": {"round_size": 8, "max_rollouts": 8, "cpt_rollouts": 2, "horizon": None},
    "micro_train": {"n_per_quadrant": 50, "n_steps": 2, "learning_rate": 1e-3, "n_cpt_rollouts": 4,
                    "n_validation_rollouts": 4},
    "train": {"lora_r": 16, "num_train_epochs": 3, "batch_size": 8, "learning_rate": 2e-5, "n_seeds": 1},
    "evaluate": {"n_tasks": 200, "n_snapshots_per_quadrant": 100, "temperature": 0.0},
    "select": {"budget": 500},
}
SEEDS_BUDGET = {  # GPU-hours per phase, v8-experimental-plan.md "Estimated Total Time"; totals of v8-readme.md
    "per_phase": {"0": [0.5, 1], "1": [1, 2], "1B": [1, 2], "2": [8, 12], "3": [2, 4], "4": [1, 2], "5": [2, 4]},
    "gpu_hours": [16, 27], "readme": {"gpu_hours": 31, "episodes": 80_000, "usd": 30},
    "source": "../shared/seeds/v8-experimental-plan.md (Estimated Total Time); v8-readme.md (Compute Budget)"}
PRESETS = {"seeds-full": SEEDS_FULL}


def load(path: str | Path = "params.yaml", overrides: list[str] = (), preset: str | None = None) -> Params:
    """params.yaml, then a preset, then `-S key=value` overrides (values parsed as YAML, as `dvc exp run -S`),
    validated by the params models: an unknown key is an error naming it."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if preset:
        raw = _merge(raw, PRESETS[preset])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"-S {item!r}: expected key=value")
        node, parts = raw, key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamsError(f"{key}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return parse_params(raw, f"{path}{f' + preset {preset}' if preset else ''}{' + -S' if overrides else ''}")


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def sizes(p: Params) -> dict:
    """How many of each thing the params ask for (upper bounds: enough failures to fill max_snapshots, expert
    episodes to the horizon, quadrants of equal size)."""
    q, held = len(QUADRANTS), p.evaluate.holdout_fraction
    snaps = min(p.snapshots.max_snapshots, p.rollouts.n_tasks * p.env.max_steps) + round(
        p.snapshots.expert_tasks * p.env.max_steps * p.snapshots.expert_sample_rate)
    labeled = min(snaps, p.label.max_snapshots or snaps)
    train_side = round(labeled * (1 - held))
    per_quadrant = min(p.evaluate.n_snapshots_per_quadrant, (labeled - train_side) // q)
    retention = min(p.evaluate.retention_max, p.snapshots.retention_max, p.rollouts.n_tasks)
    return {"snapshots": snaps, "labeled": labeled, "train_side": train_side, "eval_per_quadrant": per_quadrant,
            "retention": retention, "items": p.evaluate.n_tasks + q * per_quadrant + retention}


def lora_steps(records: float, t, runs: int = 1) -> int:
    """Optimizer steps of `runs` LoRA runs on `records` records each (transformers' count: max_steps, or batches
    per epoch times epochs)."""
    if t.max_steps > 0:
        return runs * t.max_steps
    return runs * math.ceil(math.ceil(records / (t.batch_size * t.gradient_accumulation_steps)) * t.num_train_epochs)


def workload(p: Params, path: Path = THROUGHPUT) -> list[dict]:
    """One row per stage: episodes, policy calls (states scored or generated), tokens, training steps, LoRA
    runs, teacher calls and dollars, and what the hours need (`mode`, `batch`, `processes`)."""
    s, t, tok, e = sizes(p), p.train, env_tokens(p.env.name, path), p.evaluate
    steps, horizon, q = p.env.max_steps, p.label.horizon or p.env.max_steps, len(QUADRANTS)
    record = tok["prompt"] + tok["candidate_tokens"]  # a training record: prompt + target action
    pair = 2 if t.method == "dpo" else 1
    rows = []

    def row(stage, phase, episodes=0, calls=0, mode="score", batch=1, train_steps=0, train_tokens=0, runs=0,
            teacher=0, processes=1, build=False):
        rows.append(dict(stage=stage, phase=phase, episodes=int(episodes), calls=int(calls), mode=mode,
                         batch=batch, train_steps=int(train_steps), train_tokens=int(train_tokens), runs=runs,
                         teacher=int(teacher), processes=processes, build=build))

    st = p.student
    if st.base_model is None:
        row("student", "-", train_steps=st.max_train_steps,
            train_tokens=st.max_train_steps * st.batch_size * record, build=True)
    row("rollouts", "0", p.rollouts.n_tasks, p.rollouts.n_tasks * steps, p.rollouts.action_mode,
        p.rollouts.batch_size)
    row("snapshots", "0", p.snapshots.expert_tasks, processes=0)
    lab, lev, cpt = p.label, not p.label.skip_leverage, not p.label.skip_cpt
    student_n = lab.max_rollouts if lev else lab.cpt_rollouts
    per_snap_eps = student_n + lev * (lab.max_rollouts + 1) + cpt * len(CPT_ARMS) * lab.cpt_rollouts
    per_snap_calls = 1 + student_n * horizon + lev * lab.max_rollouts * (horizon - 1) \
        + cpt * len(CPT_ARMS) * lab.cpt_rollouts * horizon
    teacher = s["labeled"] if p.teacher.name == "openai" else 0
    row("label", "1", s["labeled"] * per_snap_eps, s["labeled"] * per_snap_calls, "score", lab.batch_size,
        teacher=teacher)
    m = p.micro_train
    micro = q * min(m.n_per_quadrant, s["labeled"] // q)
    micro_eps = micro * 2 * (m.n_validation_rollouts + m.n_cpt_rollouts)  # base, trained; patch, placebo
    row("micro_train", "1B", micro_eps, micro_eps * horizon, "score", m.batch_size, micro * m.n_steps, micro * m.n_steps * record, micro)
    quadrant = s["train_side"] // q  # balanced: `min` (the smallest quadrant) is at most this
    cell = quadrant if t.records_per_cell in ("min", None) else min(t.records_per_cell, quadrant)
    cells = len(t.quadrants) * len(t.formats)
    runs = [(cells, cell), (int("random" in t.baselines), cell),
            (int("all" in t.baselines), s["train_side"] * 3)]  # `all`: every snapshot in all three formats
    n_runs = sum(n for n, _ in runs) * t.n_seeds
    train_steps = sum(lora_steps(r, t, n * t.n_seeds) for n, r in runs)
    row("train (matrix + baselines)", "2", train_steps=train_steps,
        train_tokens=train_steps * t.batch_size * t.gradient_accumulation_steps * record * pair, runs=n_runs,
        processes=cells + len(t.baselines))
    rec = s["train_side"] * _fractions(path)["recovery_records_per_snapshot"]
    rec_steps = lora_steps(rec, t, t.n_seeds)
    row("recovery + train_recovery", "2", s["train_side"], train_steps=rec_steps,
        train_tokens=rec_steps * t.batch_size * t.gradient_accumulation_steps * record, runs=t.n_seeds)
    models = 1 + (cells + len(t.baselines) + 1) * t.n_seeds
    row("evaluate", "3", models * s["items"] * e.n_rollouts, models * s["items"] * e.n_rollouts * steps,
        p.rollouts.action_mode, e.batch_size)
    row("predictor", "4", processes=0)
    methods = len(p.select.methods) * t.n_seeds
    sel_steps = lora_steps(p.select.budget, t, methods)
    row("select", "5", methods * s["items"] * e.n_rollouts, methods * s["items"] * e.n_rollouts * steps,
        p.rollouts.action_mode, e.batch_size, sel_steps,
        sel_steps * t.batch_size * t.gradient_accumulation_steps * record * pair, methods)
    for r in rows:
        scored = r["calls"] if r["mode"] == "score" else 0
        r["prompt_tokens"] = r["calls"] * tok["prompt"]
        r["candidate_tokens"] = scored * tok["candidates"] * tok["candidate_tokens"]
        r["generated_tokens"] = (r["calls"] - scored) * tok["reply"]
        r["teacher_worst"] = r["teacher"] * (1 + p.teacher.retries)
        r["usd"] = r["teacher"] * ((TEACHER_IN + tok["prompt"]) * p.teacher.usd_per_mtok_in
                                   + min(TEACHER_OUT, p.teacher.max_tokens) * p.teacher.usd_per_mtok_out) / 1e6
    return rows


def _value(x):
    return x["value"] if isinstance(x, dict) else x


def env_tokens(name: str, path: Path = THROUGHPUT) -> dict:
    """Tokens per state for an environment (prompt, candidates, tokens a candidate, a generated reply), as measured
    or assumed in benchmarks/throughput.json, each figure's source beside it there."""
    found = json.loads(Path(path).read_text())["env_tokens"][name]
    return {k: found[k] for k in ("prompt", "candidates", "candidate_tokens", "reply")}


def _fractions(path: Path = THROUGHPUT) -> dict:
    return {k: v["value"] for k, v in json.loads(Path(path).read_text())["workload"].items() if k[0] != "_"}


def student_params(p: Params, offline: float) -> float:
    """Parameters of the student: the offline student's, or read from the model's name ("Qwen3-8B" -> 8.2e9,
    "...-1.5B" -> 1.5e9), else 8.2e9 assumed."""
    if p.student.base_model is None:
        return offline
    name = Path(p.student.base_model).name.lower()
    if name.startswith("qwen3-8b"):
        return 8.2e9
    found = re.search(r"(\d+(?:\.\d+)?)b(?![a-z])", name)
    return float(found.group(1)) * 1e9 if found else 8.2e9


def hours(p: Params, rows: list[dict], device: str, backend: str, path: Path = THROUGHPUT) -> dict:
    """Adds `hours` and `basis` (measured or estimate) to each row; returns the profile's description. GPU hours
    are None for the offline student (a CPU model, overhead-bound on a GPU: no formula applies)."""
    data = json.loads(Path(path).read_text())
    prof, frac = data["profiles"][device], _fractions(path)
    offline = prof.get("offline_student_params", data["profiles"]["cpu-2core"]["offline_student_params"])
    n = student_params(p, offline)
    cpu = device == "cpu-2core"
    if cpu:
        scale = offline / n  # an 8B student on the CPU: the measured rates scaled by parameter count
        score, train = _value(prof["scoring_tokens_per_s"]) * scale, _value(prof["lora_train_tokens_per_s"]) * scale
        decode = lambda batch: _value(prof["decode_tokens_per_s"]) * scale  # noqa: E731
        build = prof["student_build_s_per_step"][p.env.name]
    else:
        b, peak = data["backends"][backend], prof["peak_tflops"] * 1e12
        score, train = b["prefill_mfu"] * peak / (2 * n), prof["train_mfu"] * peak / (4 * n)
        decode = lambda batch: min(score, batch * b["decode_bw_util"] * prof["hbm_tb_s"] * 1e12 / (2 * n))  # noqa
    for r in rows:
        if not cpu and p.student.base_model is None:
            r["hours"], r["basis"] = None, "n/a: GPU figures need a base_model student"
            continue
        share = frac.get(r["stage"].split()[0], 1.0)
        sec = share * r["calls"] * _value(prof["env_s_per_state"])
        sec += share * (r["prompt_tokens"] + r["candidate_tokens"]) / score
        sec += share * r["generated_tokens"] / decode(r["batch"]) if r["generated_tokens"] else 0
        if r["build"]:
            sec += r["train_steps"] * build[0] * p.student.batch_size / build[1]
        else:
            sec += r["train_tokens"] / train + r["runs"] * _value(prof["lora_run_overhead_s"])
        sec += r["teacher"] * data["teacher"]["s_per_call"] + r["processes"] * _value(prof["stage_start_s"])
        estimate = not prof["measured"] or n != offline or r["generated_tokens"] or r["teacher"]
        r["hours"], r["basis"] = sec / 3600, ESTIMATE if estimate else MEASURED
    return {"device": device, "backend": backend if not cpu else "hf (the only student backend on CPU)",
            "description": prof["device"], "measured": prof["measured"], "student_params": n,
            "source": os.path.relpath(path), "check": prof.get("check")}


def item_variance(rollouts: int, seeds: int, averaged: int = 1) -> float:
    """Variance of one item's paired difference when each side averages rollouts x seeds (x averaged models)."""
    return ITEM_VARIANCE * (BETWEEN_SHARE + (1 - BETWEEN_SHARE) / (rollouts * seeds * averaged))


def _gate(name: str, unit: str, n: int, var: float, effect: float, alpha: float, param: str, per=lambda k: k,
          power: float = POWER) -> dict:
    """A gate's n against the n its one-sided test needs for `effect` with `power` (teachable.gates.paired)."""
    need = n_needed(math.sqrt(var / max(n, 1)), max(n, 1), effect, alpha, power)
    mdd = min_detectable_difference(math.sqrt(var / n), alpha, power) if n else None
    verdict = "decidable at min_effect" if n >= need else f"needs n = {need:,} ({param} = {per(need):,})"
    return {"gate": name, "unit": unit, "n": n, "n_needed": need, "effect": effect,
            "min_detectable": None if mdd is None else round(mdd, 4), "verdict": verdict}


def gates(p: Params) -> list[dict]:
    """Each phase 3-5 gate at this run's n per panel: decidable at `gates.min_effect` (power 0.8) or the n it
    needs. The variance is the planning assumption above, scaled by the rollouts and seeds each side averages."""
    s, g, e, t = sizes(p), p.gates, p.evaluate, p.train
    q, var = len(QUADRANTS), item_variance(e.n_rollouts, t.n_seeds)
    rows = [_gate("3 end-to-end gain", "test tasks (odd half)", e.n_tasks // 2, var, g.min_effect, g.alpha,
                  "evaluate.n_tasks", lambda k: 2 * k),
            _gate("3 retention", "retention tasks", s["retention"], var, g.retention_margin, g.alpha,
                  "evaluate.retention_max")]
    k = len(t.quadrants) * (len(t.formats) - 1) if "demo" in t.formats else 0
    if k:
        rows.append(_gate("3 supervision differentiation", "held-out snapshots a quadrant", s["eval_per_quadrant"],
                          var, g.min_effect, g.alpha / k, "evaluate.n_snapshots_per_quadrant"))
    if len(t.quadrants) > 1:
        rows.append(_gate("3 transfer diagonal", "held-out snapshots", q * s["eval_per_quadrant"],
                          item_variance(e.n_rollouts, t.n_seeds, len(t.formats)) * (1 + 1 / (q - 1)),
                          g.min_effect, g.alpha, "evaluate.n_snapshots_per_quadrant", lambda n: math.ceil(n / q)))
    pairs = len([m for m in ("predictor", "entropy", "random") if m in p.select.methods]) - 1
    if pairs > 0:
        rows.append(_gate("5 selection ordering", "tasks", e.n_tasks, var, g.min_effect, g.alpha / pairs,
                          "evaluate.n_tasks", power=POWER ** (1 / pairs)))
    rows.append(_gate("5 selection retention", "retention tasks", s["retention"], var, g.retention_margin,
                      g.alpha, "evaluate.retention_max"))
    return rows


def plan(p: Params, device: str = "cpu-2core", backend: str = "hf", preset: str | None = None,
         path: Path = THROUGHPUT) -> dict:
    """Everything the `plan` command prints, as one JSON-ready dict."""
    rows = workload(p, path)
    profile = hours(p, rows, device, backend, path)
    known = [r["hours"] for r in rows if r["hours"] is not None]
    totals = {k: sum(r[k] for r in rows) for k in ("episodes", "calls", "prompt_tokens", "candidate_tokens",
                                                   "generated_tokens", "train_steps", "teacher", "usd")}
    totals["hours"] = sum(known) if len(known) == len(rows) else None
    warnings = []
    if totals["teacher"] > p.teacher.max_calls:
        warnings.append(f"teacher calls {totals['teacher']:,} exceed teacher.max_calls {p.teacher.max_calls:,}: "
                        f"label stops there")
    if totals["usd"] > p.teacher.max_usd:
        warnings.append(f"teacher ${totals['usd']:.2f} exceeds teacher.max_usd ${p.teacher.max_usd:.2f}: label "
                        f"stops there")
    out = {"params": {"env": p.env.name, "student": p.student.base_model or "offline student",
                      "teacher": p.teacher.model if p.teacher.name == "openai" else "oracle"},
           "sizes": sizes(p), "profile": profile, "stages": rows, "totals": totals, "warnings": warnings,
           "gates": gates(p), "assumptions": {"env_tokens": env_tokens(p.env.name, path), "teacher_tokens_in":
                                              TEACHER_IN, "teacher_tokens_out": TEACHER_OUT,
                                              "item_variance": ITEM_VARIANCE, "between_share": BETWEEN_SHARE}}
    if preset == "seeds-full":
        out["seeds_budget"] = SEEDS_BUDGET
    return out


def _si(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.1f}{unit}"
    return f"{x:,.0f}"


def _hours(h: float | None, basis: str) -> str:
    return basis if h is None else f"{h:,.2f} h ({basis})"


def to_text(out: dict) -> str:
    """The plan as readable tables: stages, totals, the seeds' budget (with the preset), gates, assumptions."""
    import pandas as pd

    prof, rows, tot = out["profile"], out["stages"], out["totals"]
    gpu = "" if prof["device"] == "cpu-2core" else " GPU"
    basis = ESTIMATE if any(r["basis"] == ESTIMATE for r in rows) else MEASURED
    head = [f"Plan for {out['params']['env']}, student {out['params']['student']} "
            f"({prof['student_params']:.3g} parameters), teacher {out['params']['teacher']}",
            f"Device {prof['device']}: {prof['description']}; backend {prof['backend']}"
            f"{'' if prof['measured'] else ' (' + ESTIMATE + ')'}; figures from {prof['source']}",
            "Counts are upper bounds (episodes to the horizon, labeling arms to their cap, balanced quadrants); "
            "hours scale them by the share a pilot stage ran."]
    head += [f"Check: {prof['check']}."] if prof["check"] else []
    table = [{"stage": r["stage"], "phase": r["phase"], "episodes": f"{r['episodes']:,}",
              "policy calls": _si(r["calls"]), "prompt tok": _si(r["prompt_tokens"]),
              "cand tok": _si(r["candidate_tokens"]), "gen tok": _si(r["generated_tokens"]),
              "train steps": f"{r['train_steps']:,}", "teacher calls": f"{r['teacher']:,}",
              "USD": f"{r['usd']:.2f}", f"hours ({prof['device']})": _hours(r["hours"], r["basis"])} for r in rows]
    table.append({"stage": "total", "phase": "", "episodes": f"{tot['episodes']:,}", "policy calls":
                  _si(tot["calls"]), "prompt tok": _si(tot["prompt_tokens"]), "cand tok": _si(tot["candidate_tokens"]),
                  "gen tok": _si(tot["generated_tokens"]), "train steps": f"{tot['train_steps']:,}",
                  "teacher calls": f"{tot['teacher']:,}", "USD": f"{tot['usd']:.2f}",
                  f"hours ({prof['device']})": _hours(tot["hours"], basis)})
    parts = ["\n".join(head), pd.DataFrame(table).to_string(index=False)]
    if tot["teacher"]:
        parts.append(f"Teacher: {tot['teacher']:,} calls, ${tot['usd']:.2f} at {TEACHER_IN} + prompt tokens in and "
                     f"{TEACHER_OUT} out a call; at most {sum(r['teacher_worst'] for r in rows):,} calls with every "
                     f"retry. Its latency counts in the hours (calls are sequential).")
    parts += [f"warning: {w}" for w in out["warnings"]]
    if "seeds_budget" in out and tot["hours"] is not None:
        b = out["seeds_budget"]
        per_phase = [{"phase": ph, f"this plan{gpu} hours": _hours(sum(r["hours"] for r in rows if r["phase"] == ph),
                                                                    basis),
                      "seeds GPU-hours": f"{lo}-{hi}"} for ph, (lo, hi) in b["per_phase"].items()]
        parts += ["Against the seeds' budget (" + b["source"] + "):", pd.DataFrame(per_phase).to_string(index=False),
                  f"this plan: {tot['hours']:,.1f}{gpu} hours ({basis}), {tot['episodes']:,} episodes, "
                  f"${tot['usd']:.2f} teacher\nseeds:     {b['gpu_hours'][0]}-{b['gpu_hours'][1]} GPU-hours "
                  f"(plan table); readme: ~{b['readme']['gpu_hours']} GPU-hours, ~{b['readme']['episodes']:,} "
                  f"episodes, ~${b['readme']['usd']} teacher"]
    gates_table = pd.DataFrame([{"gate": g["gate"], "unit": g["unit"], "n": f"{g['n']:,}",
                                 "n needed": f"{g['n_needed']:,}", "effect": g["effect"],
                                 "min detectable": g["min_detectable"], "verdict": g["verdict"]}
                                for g in out["gates"]])
    a = out["assumptions"]
    parts += [f"Gates (one-sided, power {POWER}; an item's paired variance {a['item_variance']} per seed and rollout, "
              f"{a['between_share']:.0%} of it the item's):", gates_table.to_string(index=False),
              "4 predictor gates: not planned (teachable/gates/predictor.py extrapolates no n: cluster bootstrap "
              "over tasks)",
              f"Assumed per state: {a['env_tokens']}; teacher {a['teacher_tokens_in']} + prompt tokens in, "
              f"{a['teacher_tokens_out']} out per call."]
    return "\n\n".join(parts) + "\n"
