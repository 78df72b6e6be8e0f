"""A dry run of what a run costs before it runs (`python -m teachable plan`): per stage the
episodes, policy calls, tokens, training steps, teacher calls and dollars the params ask for, the
hours they take on a device profile, and whether the evaluation's n can decide each phase 3-5 gate
at `gates.min_effect`.

Why: a paper-scale run spends GPU-hours and API dollars, and an undersized panel spends them on
gates that end inconclusive; both can be seen from params alone. Nothing runs here. Counts are upper
bounds (every episode to its horizon, every labeling arm to its cap, quadrants balanced); hours
scale them by the share a pilot stage actually ran. On a GPU profile the hours are one model of cost
(`teachable.plan.flops`: FLOPs per scored state on the chosen engine, per generated token, per LoRA
record, from the student's shape) over the MFU, bandwidth and overheads of
`benchmarks/throughput.json`; each figure is named measured or assumed, and the assumed ones span a
range whose ends give the plan's low and high hours. `--calibrate benchmarks/gpu.json` folds a
measured GPU run into that file. Teacher calls are wall time, reported apart from the device's hours
(`--teacher-concurrency`).
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
from teachable.plan import flops
from teachable.plan.flops import Shape

THROUGHPUT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.json"
ESTIMATE, MEASURED, PARTLY = "estimate, not measured", "from measured throughput", "partly measured"
DEVICES, BACKENDS = ("cpu-2core", "h100", "h200"), ("hf", "sglang", "vllm")

# assumed per call: system + reply schema (+ the state's prompt); reply tokens
TEACHER_IN, TEACHER_OUT = 350, 150

# Planning variance of one item's paired success difference (model - base) from one training seed
# and one rollout, and the share of it that belongs to the item (more rollouts or seeds do not
# average it away). Cross-checked on the pilot (reports/phase3/episodes.csv, 2026-12-02): per-pair
# variance median 0.07 / max 0.33 over models on tasks, 0.09 / 0.34 on retention; the two seeds'
# differences correlate 0.91 (tasks) and 0.79 (retention).
ITEM_VARIANCE, BETWEEN_SHARE = 0.25, 0.8

# The seeds' full-scale run (../shared/seeds/v8-experimental-plan.md "Full-Scale Run", v8-readme.md
# "Configuration" and "Compute Budget") in this project's keys. The seeds label 2,000 snapshots
# (18,000 leverage episodes: 7 forced + 2 expert rollouts a state; 20,000 CPT episodes: 5 conditions
# x 2), so label.max_snapshots 2000 of the mined ones. A state's 19 episodes cannot be matched
# exactly here (the student and forced arms are paired, so they are equal and even): 6 student (the
# first 2 are CPT's base) + 6 forced + 1 expert (deterministic) + 4 CPT arms x 2 = 21.
# n_validation_rollouts 3 -> 4 (even); 1B's re-measured CPT arm at the validation's 4. Training:
# their recipe, 3 epochs (not params.yaml's fixed step count).
SEEDS = {
    "env": {"name": "shop", "levels": ["all"], "max_steps": 15},
    "student": {"base_model": "models/Qwen3-8B"},
    "rollouts": {"n_tasks": 1000},
    "snapshots": {"max_snapshots": 2000, "expert_tasks": 500, "expert_sample_rate": 0.5},
    "teacher": {"name": "openai", "model": "gpt-4o-mini", "max_usd": 30.0},
    "label": {
        "round_size": 6,
        "max_rollouts": 6,
        "cpt_rollouts": 2,
        "horizon": None,
        "max_snapshots": 2000,
    },
    "micro_train": {
        "n_per_quadrant": 50,
        "n_steps": 2,
        "learning_rate": 1e-3,
        "n_cpt_rollouts": 4,
        "n_validation_rollouts": 4,
    },
    "train": {
        "lora_r": 16,
        "num_train_epochs": 3,
        "max_steps": -1,
        "batch_size": 8,
        "learning_rate": 2e-5,
        "n_seeds": 1,
    },  # 3 epochs: max_steps -1 lets the epochs count
    "evaluate": {"n_tasks": 200, "n_snapshots_per_quadrant": 100, "temperature": 0.0},
    "select": {"budget": 500},
}
# GPU-hours per phase, v8-experimental-plan.md "Estimated Total Time"; totals of v8-readme.md
SEEDS_BUDGET = {
    "per_phase": {
        "0": [0.5, 1],
        "1": [1, 2],
        "1B": [1, 2],
        "2": [8, 12],
        "3": [2, 4],
        "4": [1, 2],
        "5": [2, 4],
    },
    "gpu_hours": [16, 27],
    "readme": {"gpu_hours": 31, "episodes": 80_000, "usd": 30},
    # v8-readme.md "Compute Budget" and the labeling configuration it prices (leverage 7 + 2, CPT 5
    # x 2)
    "counts": {
        "labeled snapshots": 2000,
        "labeling episodes a snapshot": 19,
        "labeling episodes": 38_000,
        "1B micro-runs": 200,
        "2 training runs": 14,
        "3 evaluation episodes": 40_000,
    },
    "source": (
        "../shared/seeds/v8-experimental-plan.md (Estimated Total Time); "
        "v8-readme.md (Compute Budget)"
    ),
}
PRESETS = {"seeds": SEEDS}


def load(
    path: str | Path = "params.yaml", overrides: list[str] = (), preset: str | None = None
) -> Params:
    """params.yaml, then a preset, then `-S key=value` overrides (values parsed as YAML, as `dvc exp
    run -S`), validated by the params models: an unknown key is an error naming it."""
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
                raise ParamsError(f"{key}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return parse_params(
        raw, f"{path}{f' + preset {preset}' if preset else ''}{' + -S' if overrides else ''}"
    )


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def sizes(p: Params) -> dict:
    """How many of each thing the params ask for (upper bounds: enough failures to fill
    max_snapshots, expert episodes to the horizon, quadrants of equal size)."""
    q, held = len(QUADRANTS), p.evaluate.holdout_fraction
    snaps = min(p.snapshots.max_snapshots, p.rollouts.n_tasks * p.env.max_steps) + round(
        p.snapshots.expert_tasks * p.env.max_steps * p.snapshots.expert_sample_rate
    )
    labeled = min(snaps, p.label.max_snapshots or snaps)
    train_side = round(labeled * (1 - held))
    per_quadrant = min(p.evaluate.n_snapshots_per_quadrant, (labeled - train_side) // q)
    retention = min(p.evaluate.retention_max, p.snapshots.retention_max, p.rollouts.n_tasks)
    return {
        "snapshots": snaps,
        "labeled": labeled,
        "train_side": train_side,
        "eval_per_quadrant": per_quadrant,
        "retention": retention,
        "items": p.evaluate.n_tasks + q * per_quadrant + retention,
    }


def lora_steps(records: float, t, runs: int = 1) -> int:
    """Optimizer steps of `runs` LoRA runs on `records` records each (transformers' count:
    max_steps, or batches per epoch times epochs)."""
    if t.max_steps > 0:
        return runs * t.max_steps
    return runs * math.ceil(
        math.ceil(records / (t.batch_size * t.gradient_accumulation_steps)) * t.num_train_epochs
    )


def workload(p: Params, path: Path = THROUGHPUT) -> list[dict]:
    """One row per stage: episodes, policy calls (states scored or generated), tokens, training
    steps and records, LoRA runs, teacher calls and dollars, and what the hours need (`mode`,
    `batch`, `processes`)."""
    s, t, tok, e = sizes(p), p.train, student_tokens(p, path), p.evaluate
    steps, horizon, q = p.env.max_steps, p.label.horizon or p.env.max_steps, len(QUADRANTS)
    record = tok["prompt"] + tok["candidate_tokens"]  # a training record: prompt + target action
    # sequences a step
    per_step = t.batch_size * t.gradient_accumulation_steps * (2 if t.method == "dpo" else 1)
    rows = []

    def row(
        stage,
        phase,
        episodes=0,
        calls=0,
        mode="score",
        batch=1,
        train_steps=0,
        train_records=0,
        runs=0,
        teacher=0,
        processes=1,
        build=False,
    ):
        rows.append(
            dict(
                stage=stage,
                phase=phase,
                episodes=int(episodes),
                calls=int(calls),
                mode=mode,
                batch=batch,
                train_steps=int(train_steps),
                train_records=int(train_records),
                train_tokens=int(train_records * record),
                runs=runs,
                teacher=int(teacher),
                processes=processes,
                build=build,
            )
        )

    st = p.student
    if st.base_model is None:
        row(
            "student",
            "-",
            train_steps=st.max_train_steps,
            train_records=st.max_train_steps * st.batch_size,
            build=True,
        )
    row(
        "rollouts",
        "0",
        p.rollouts.n_tasks,
        p.rollouts.n_tasks * steps,
        p.rollouts.action_mode,
        p.rollouts.batch_size,
    )
    row("snapshots", "0", p.snapshots.expert_tasks, processes=0)
    lab, lev, cpt = p.label, not p.label.skip_leverage, not p.label.skip_cpt
    student_n = lab.max_rollouts if lev else lab.cpt_rollouts
    per_snap_eps = student_n + lev * (lab.max_rollouts + 1) + cpt * len(CPT_ARMS) * lab.cpt_rollouts
    per_snap_calls = (
        1
        + student_n * horizon
        + lev * lab.max_rollouts * (horizon - 1)
        + cpt * len(CPT_ARMS) * lab.cpt_rollouts * horizon
    )
    teacher = s["labeled"] if p.teacher.name == "openai" else 0
    row(
        "label",
        "1",
        s["labeled"] * per_snap_eps,
        s["labeled"] * per_snap_calls,
        "score",
        lab.batch_size,
        teacher=teacher,
    )
    m = p.micro_train
    micro = q * min(m.n_per_quadrant, s["labeled"] // q)
    # base, trained; patch, placebo
    micro_eps = micro * 2 * (m.n_validation_rollouts + m.n_cpt_rollouts)
    row(
        "micro_train",
        "1B",
        micro_eps,
        micro_eps * horizon,
        "score",
        m.batch_size,
        micro * m.n_steps,
        micro * m.n_steps,
        micro,
    )  # a micro-run: one snapshot's record, n_steps steps
    quadrant = s["train_side"] // q  # balanced: `min` (the smallest quadrant) is at most this
    cell = quadrant if t.records_per_cell in ("min", None) else min(t.records_per_cell, quadrant)
    cells = len(t.quadrants) * len(t.formats)
    # `random` and the `self` control: a cell's size; `all`: every snapshot in all three formats
    runs = [
        (cells, cell),
        (int("random" in t.baselines), cell),
        (int("self" in t.baselines), cell),
        (int("all" in t.baselines), s["train_side"] * 3),
    ]
    n_runs = sum(n for n, _ in runs) * t.n_seeds
    train_steps = sum(lora_steps(r, t, n * t.n_seeds) for n, r in runs)
    row(
        "train (matrix + baselines)",
        "2",
        train_steps=train_steps,
        train_records=train_steps * per_step,
        runs=n_runs,
        processes=cells + len(t.baselines),
    )
    rec = s["train_side"] * _fractions(path)["recovery_records_per_snapshot"]
    rec_steps = lora_steps(rec, t, t.n_seeds)
    row(
        "recovery + train_recovery",
        "2",
        s["train_side"],
        train_steps=rec_steps,
        train_records=rec_steps * t.batch_size * t.gradient_accumulation_steps,
        runs=t.n_seeds,
    )
    models = 1 + (cells + len(t.baselines) + 1) * t.n_seeds
    row(
        "evaluate_models",
        "3",
        models * s["items"] * e.n_rollouts,
        models * s["items"] * e.n_rollouts * steps,
        p.rollouts.action_mode,
        e.batch_size,
    )
    row("predictor", "4", processes=0)
    methods = len(p.select.methods) * t.n_seeds
    sel_steps = lora_steps(p.select.budget, t, methods)
    row(
        "select_snapshots",
        "5",
        methods * s["items"] * e.n_rollouts,
        methods * s["items"] * e.n_rollouts * steps,
        p.rollouts.action_mode,
        e.batch_size,
        sel_steps,
        sel_steps * per_step,
        methods,
    )
    for r in rows:
        scored = r["calls"] if r["mode"] == "score" else 0
        r["prompt_tokens"] = r["calls"] * tok["prompt"]
        r["candidate_tokens"] = scored * tok["candidates"] * tok["candidate_tokens"]
        r["generated_tokens"] = (r["calls"] - scored) * tok["reply"]
        r["teacher_worst"] = r["teacher"] * (1 + p.teacher.retries)
        r["usd"] = (
            r["teacher"]
            * (
                (TEACHER_IN + tok["prompt"]) * p.teacher.usd_per_mtok_in
                + min(TEACHER_OUT, p.teacher.max_tokens) * p.teacher.usd_per_mtok_out
            )
            / 1e6
        )
    return rows


def env_tokens(name: str, path: Path = THROUGHPUT, vocabulary: str = "offline") -> dict:
    """Tokens per state for an environment (prompt, candidates, tokens a candidate, a generated
    reply) in the offline student's vocabulary or in Qwen3's (`qwen3`, measured by
    benchmarks/qwen_tokens.py), from benchmarks/throughput.json, each figure's source beside it
    there."""
    found = json.loads(Path(path).read_text())["env_tokens"][name]
    found = found.get(vocabulary, found) if vocabulary != "offline" else found
    return {k: found[k] for k in ("prompt", "candidates", "candidate_tokens", "reply")}


def vocabulary(p: Params) -> str:
    """The vocabulary the student's states are counted in: Qwen3's for a Qwen student (its name, or
    its config.json's model_type), else the offline student's."""
    if p.student.base_model is None:
        return "offline"
    path = Path(p.student.base_model)
    config = path / "config.json"
    kind = json.loads(config.read_text()).get("model_type", "") if config.is_file() else path.name
    return "qwen3" if str(kind).lower().startswith("qwen") else "offline"


def student_tokens(p: Params, path: Path = THROUGHPUT) -> dict:
    return env_tokens(p.env.name, path, vocabulary(p))


def _fractions(path: Path = THROUGHPUT) -> dict:
    return {
        k: v["value"]
        for k, v in json.loads(Path(path).read_text())["workload"].items()
        if k[0] != "_"
    }


def student_shape(p: Params, data: dict) -> tuple[Shape, str]:
    """The student's shape (teachable.plan.flops.Shape) and where it comes from: the offline
    student's config, the model directory's config.json where it is on disk, Qwen3-8B's published
    config for a "Qwen3-8B" name, else Qwen3-8B's shape with its layers scaled to the size in the
    name ("...-1.5B"; an assumption)."""
    if p.student.base_model is None:
        return Shape.from_config(
            data["profiles"]["cpu-2core"]["offline_student"]["config"]
        ), "the offline student"
    path = Path(p.student.base_model)
    if (path / "config.json").is_file():
        return Shape.from_config(
            json.loads((path / "config.json").read_text())
        ), f"{path / 'config.json'}"
    qwen = Shape.from_config(flops.QWEN3_8B)
    name = path.name.lower()
    if name.startswith("qwen3-8b"):
        return qwen, "Qwen3-8B's config (teachable/plan/flops.py)"
    found = re.search(r"(\d+(?:\.\d+)?)b(?![a-z])", name)
    if not found:
        return qwen, f"assumed Qwen3-8B's shape ({path.name}: no config.json, no size in the name)"
    layers = max(
        float(found.group(1)) * 1e9 - qwen.n_params + qwen.n_layer_params, 0.1 * qwen.n_layer_params
    )
    return (
        Shape(
            qwen.layers,
            qwen.heads,
            qwen.head_dim,
            qwen.hidden,
            qwen.vocab,
            int(layers),
            qwen.kv_heads,
            qwen.intermediate,
            qwen.tied,
        ),
        f"assumed: Qwen3-8B's shape with N scaled to {found.group(1)}B in "
        f"all ({path.name} has no config.json)",
    )


class Figures:
    """The figures an hours estimate reads, at one `corner` of their ranges: "value" (the figure),
    "low" (every assumed figure at the end that gives the fewest hours) or "high". Measured figures
    have no range. Records each figure it hands out (`used`) with its value, whether measured, its
    range and its source. A `time` figure (a duration) gives more hours at its high end, a rate at
    its low end."""

    def __init__(self, corner: str = "value"):
        self.corner, self.used = corner, {}

    def __call__(self, name: str, x, source: str = "", time: bool = False) -> float:
        entry = x if isinstance(x, dict) else {"value": x, "measured": True}
        value, rng = entry["value"], entry.get("range")
        if rng and not entry.get("measured") and self.corner != "value":
            value = max(rng) if (self.corner == "high") == time else min(rng)
        self.used[name] = {
            "value": entry["value"],
            "measured": bool(entry.get("measured")),
            "range": rng,
            "source": source or entry.get("source") or entry.get("formula", ""),
        }
        return value


def _by_batch(table: dict, batch: int) -> tuple[int, float]:
    """A calibrated table's entry at the largest measured batch not above `batch` (else the smallest
    measured)."""
    sizes_ = sorted(int(b) for b in table)
    at = max([b for b in sizes_ if b <= batch], default=sizes_[0])
    return at, table[str(at)]


def _mfu(fig: Figures, prof: dict, default: dict, name: str, table: str, batch: int) -> float:
    cal = (prof.get("calibrated") or {}).get(table) if table else None
    if cal:
        at, value = _by_batch(cal, batch)
        src = f"{prof['calibrated']['source']} ({prof['calibrated']['device']}, batch {at})"
        return fig(f"{name} @ batch {at}", {"value": value, "measured": True}, src)
    return fig(name, default)


def hours(
    p: Params,
    rows: list[dict],
    device: str,
    backend: str,
    path: Path = THROUGHPUT,
    teacher_concurrency: int = 1,
    corner: str = "value",
) -> dict:
    """Adds to each row the device's hours (`compute_h` + `overhead_h` = `hours`: the device held,
    busy or idle), the teacher's wall hours apart (`teacher_h`, calls over `teacher_concurrency`),
    the tokens the engine computes and the FLOPs, and `basis` (measured, partly measured, or an
    estimate). Returns the profile's description and the figures used. GPU hours are None for the
    offline student (a CPU model, overhead-bound on a GPU)."""
    data = json.loads(Path(path).read_text())
    prof, frac, fig = data["profiles"][device], _fractions(path), Figures(corner)
    shape, shape_source = student_shape(p, data)
    offline = Shape.from_config(
        prof.get("offline_student", data["profiles"]["cpu-2core"]["offline_student"])["config"]
    )
    tok, t = student_tokens(p, path), p.train
    P, n, c, reply = tok["prompt"], tok["candidates"], tok["candidate_tokens"], tok["reply"]
    record, lora_m = P + c, shape.lora_params(t.lora_r, t.target_modules)
    per_record = flops.lora_flops(shape, 1, record, c, lora_m)
    cpu, gpu_ok = device == "cpu-2core", p.student.base_model is not None
    engine = "hf" if cpu else backend
    s_call = fig("teacher s_per_call", data["teacher"]["s_per_call"], time=True)
    if cpu:
        # the measured rates are the offline student's; another student's are scaled by FLOPs (one
        # model of cost)
        score_scale = flops.scoring_flops(offline, P, n, c) / flops.scoring_flops(shape, P, n, c)
        train_scale = (
            flops.lora_flops(offline, 1, record, c, offline.lora_params(t.lora_r, t.target_modules))
            / per_record
        )
        score = fig("scoring_tokens_per_s", prof["scoring_tokens_per_s"]) * score_scale
        # nothing measured it: read only where needed
        decode = (
            fig("decode_tokens_per_s", prof["decode_tokens_per_s"]) * score_scale
            if any(r["generated_tokens"] for r in rows)
            else 1.0
        )
        train = fig("lora_train_tokens_per_s", prof["lora_train_tokens_per_s"]) * train_scale
        build = prof["student_build_s_per_step"][p.env.name]
    else:
        peak, hbm, b = (
            prof["peak_tflops"] * 1e12,
            prof["hbm_tb_s"] * 1e12,
            data["backends"][backend],
        )
    env_s = fig("env_s_per_state", prof["env_s_per_state"], time=True)
    start_s = fig("stage_start_s", prof["stage_start_s"], time=True)
    run_s = fig("lora_run_overhead_s", prof["lora_run_overhead_s"], time=True)
    work = flops.scoring_work(engine, P, n, c)
    for r in rows:
        share = frac.get(r["stage"].split()[0], 1.0)
        scored = share * r["calls"] if r["mode"] == "score" else 0.0
        generated = share * r["calls"] - scored
        r["computed_tokens"] = int(scored * work["tokens"] + generated * (P + reply))
        r["teacher_h"] = r["teacher"] * s_call / teacher_concurrency / 3600
        overhead = share * r["calls"] * env_s + r["runs"] * run_s + r["processes"] * start_s
        if cpu:
            compute = share * (r["prompt_tokens"] + r["candidate_tokens"]) / score
            compute += share * r["generated_tokens"] / decode
            if r["build"]:
                compute += r["train_steps"] * build[0] * p.student.batch_size / build[1]
            else:
                compute += r["train_tokens"] / train
            r["flops"] = None
        elif not gpu_ok:
            r.update(
                hours=None,
                compute_h=None,
                overhead_h=None,
                flops=None,
                basis="n/a: GPU figures need a base_model student",
            )
            continue
        else:
            mfu = (
                _mfu(
                    fig,
                    prof,
                    b["prefill_mfu"],
                    f"{backend} prefill_mfu",
                    "hf_prefill_mfu_by_batch" if backend == "hf" else None,
                    r["batch"],
                )
                * peak
            )
            f_score = scored * flops.scoring_flops(shape, P, n, c, engine)
            f_gen = generated * flops.generate_flops(shape, P, reply)
            compute = (f_score + f_gen) / mfu
            if generated:  # a decode step: compute-bound or reading every weight once for the batch
                bw = fig(f"{backend} decode_bw_util", b["decode_bw_util"]) * hbm
                step_flops = shape.flops(1, 1, P + reply / 2)
                memory = flops.decode_bytes(shape) / (r["batch"] * bw)
                compute += generated * reply * max(0.0, memory - step_flops / mfu)
            f_train = r["train_records"] * per_record
            if f_train:
                per_step = round(r["train_records"] / max(r["train_steps"], 1))
                compute += f_train / (
                    _mfu(fig, prof, prof["train_mfu"], "train_mfu", "train_mfu_by_batch", per_step)
                    * peak
                )
            r["flops"] = f_score + f_gen + f_train
        r["compute_h"], r["overhead_h"] = compute / 3600, overhead / 3600
        r["hours"] = r["compute_h"] + r["overhead_h"]
    measured = [v["measured"] for k, v in fig.used.items() if k != "teacher s_per_call"]
    basis = MEASURED if all(measured) else PARTLY if any(measured) else ESTIMATE
    if cpu and (shape != offline or any(r["generated_tokens"] for r in rows)):
        basis = ESTIMATE  # scaled to another student, or a decode rate nothing measured
    for r in rows:
        r.setdefault("basis", basis)
    return {
        "device": device,
        "backend": "hf (the only student backend on CPU)" if cpu else backend,
        "description": prof["device"],
        "measured": basis == MEASURED,
        "student_params": shape.n_params,
        "student_layer_params": shape.n_layer_params,
        "student_shape": shape_source,
        "teacher_concurrency": teacher_concurrency,
        "source": os.path.relpath(path),
        "check": prof.get("check"),
        "figures": fig.used,
        "calibrated": (prof.get("calibrated") or {}).get("source"),
    }


class CalibrationError(ValueError):
    pass


def calibrate(run_path: str | Path, path: Path = THROUGHPUT) -> dict:
    """Folds a GPU run of benchmarks/gpu.py (its --out JSON) into `path`: the profile of its device
    (H100 -> h100, H200 -> h200) gets `calibrated`, the hf engine's measured prefill MFU and the
    LoRA step's MFU by batch (the run's TFLOP/s over the profile's peak, so another SKU's run is not
    credited with the profile's peak). Returns what was written; the figures the run did not measure
    stay assumed."""
    run = json.loads(Path(run_path).read_text())
    if run.get("model", {}).get("shape") != "Qwen3-8B":
        raise CalibrationError(
            f"{run_path}: a run of the {run.get('model', {}).get('shape')!r} shape (a --tiny run "
            "measures the mechanics, not a GPU); calibrate with a Qwen3-8B-shape run"
        )
    device = run.get("device", "")
    profile = next((k for k in ("h200", "h100") if k.upper() in device.upper()), None)
    if profile is None:
        raise CalibrationError(f"{run_path}: device {device!r} has no profile here (h100, h200)")
    if not run.get("scoring_check", {}).get("finite", False):
        raise CalibrationError(
            f"{run_path}: its scoring check failed ({run.get('scoring_check')}): not folded in"
        )
    data = json.loads(Path(path).read_text())
    peak = data["profiles"][profile]["peak_tflops"]
    scoring = {
        str(r["batch"]): float(f"{r['tflops_per_s'] / peak:.4g}") for r in run.get("scoring", [])
    }
    lora = {str(r["batch"]): float(f"{r['tflops_per_s'] / peak:.4g}") for r in run.get("lora", [])}
    if not scoring and not lora:
        raise CalibrationError(
            f"{run_path}: no scoring or LoRA measurement in it (skipped: {run.get('skipped')})"
        )
    work = run.get("workload", {})
    cal = {
        "device": device,
        "source": os.path.relpath(run_path),
        "peak_tflops_of_run": run.get("peak_tflops"),
        "env": work.get("env"),
        "prompt_tokens": work.get("prompt"),
        "lora_seq_len": (run.get("lora") or [{}])[0].get("seq_len"),
        "hf_prefill_mfu_by_batch": scoring,
        "train_mfu_by_batch": lora,
        "scoring_check": run.get("scoring_check"),
        "elapsed_s": run.get("elapsed_s"),
        "_doc": (
            "measured by benchmarks/gpu.py (HFPolicy.score on a Qwen3-8B-shape model; "
            "LoRA SFT steps), MFU = its TFLOP/s / this profile's peak_tflops; the planner reads "
            "the largest batch at or below a stage's. sglang / vllm and decode stay assumed."
        ),
    }
    data["profiles"][profile]["calibrated"] = cal
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    return {"profile": profile, **cal}


def item_variance(rollouts: int, seeds: int, averaged: int = 1) -> float:
    """Variance of one item's paired difference when each side averages rollouts x seeds (x averaged
    models)."""
    return ITEM_VARIANCE * (BETWEEN_SHARE + (1 - BETWEEN_SHARE) / (rollouts * seeds * averaged))


def _gate(
    name: str,
    unit: str,
    n: int,
    var: float,
    effect: float,
    alpha: float,
    param: str,
    per=lambda k: k,
    power: float = POWER,
) -> dict:
    """A gate's n against the n its one-sided test needs for `effect` with `power`
    (teachable.gates.paired)."""
    need = n_needed(math.sqrt(var / max(n, 1)), max(n, 1), effect, alpha, power)
    mdd = min_detectable_difference(math.sqrt(var / n), alpha, power) if n else None
    verdict = (
        "decidable at min_effect" if n >= need else f"needs n = {need:,} ({param} = {per(need):,})"
    )
    return {
        "gate": name,
        "unit": unit,
        "n": n,
        "n_needed": need,
        "effect": effect,
        "min_detectable": None if mdd is None else round(mdd, 4),
        "verdict": verdict,
    }


def gates(p: Params) -> list[dict]:
    """Each phase 3-5 gate at this run's n per panel: decidable at `gates.min_effect` (power 0.8) or
    the n it needs. The variance is the planning assumption above, scaled by the rollouts and seeds
    each side averages."""
    s, g, e, t = sizes(p), p.gates, p.evaluate, p.train
    q, var = len(QUADRANTS), item_variance(e.n_rollouts, t.n_seeds)
    rows = [
        _gate(
            "3 end-to-end gain",
            "test tasks (odd half)",
            e.n_tasks // 2,
            var,
            g.min_effect,
            g.alpha,
            "evaluate.n_tasks",
            lambda k: 2 * k,
        ),
        _gate(
            "3 retention",
            "retention tasks",
            s["retention"],
            var,
            g.retention_margin,
            g.alpha,
            "evaluate.retention_max",
        ),
    ]
    k = len(t.quadrants) * (len(t.formats) - 1) if "demo" in t.formats else 0
    if k:
        rows.append(
            _gate(
                "3 supervision differentiation",
                "held-out snapshots a quadrant",
                s["eval_per_quadrant"],
                var,
                g.min_effect,
                g.alpha / k,
                "evaluate.n_snapshots_per_quadrant",
            )
        )
    if len(t.quadrants) > 1:
        rows.append(
            _gate(
                "3 transfer diagonal",
                "held-out snapshots",
                q * s["eval_per_quadrant"],
                item_variance(e.n_rollouts, t.n_seeds, len(t.formats)) * (1 + 1 / (q - 1)),
                g.min_effect,
                g.alpha,
                "evaluate.n_snapshots_per_quadrant",
                lambda n: math.ceil(n / q),
            )
        )
    pairs = len([m for m in ("predictor", "entropy", "random") if m in p.select.methods]) - 1
    if pairs > 0:
        rows.append(
            _gate(
                "5 selection ordering",
                "tasks",
                e.n_tasks,
                var,
                g.min_effect,
                g.alpha / pairs,
                "evaluate.n_tasks",
                power=POWER ** (1 / pairs),
            )
        )
    rows.append(
        _gate(
            "5 selection retention",
            "retention tasks",
            s["retention"],
            var,
            g.retention_margin,
            g.alpha,
            "evaluate.retention_max",
        )
    )
    return rows


def _sum(rows: list[dict], key: str) -> float | None:
    values = [r.get(key) for r in rows]
    return None if any(v is None for v in values) else sum(values)


def seeds_counts(p: Params, rows: list[dict]) -> list[dict]:
    """This plan's counts beside the seeds' (SEEDS_BUDGET["counts"]): snapshots labeled, labeling
    episodes (a snapshot and in all), 1B micro-runs, phase 2 runs, evaluation episodes."""
    by = {r["stage"].split()[0]: r for r in rows}
    labeled = sizes(p)["labeled"]
    ours = {
        "labeled snapshots": labeled,
        "labeling episodes a snapshot": by["label"]["episodes"] / max(labeled, 1),
        "labeling episodes": by["label"]["episodes"],
        "1B micro-runs": by["micro_train"]["runs"],
        # the matrix and baselines (recovery is a run more here)
        "2 training runs": by["train"]["runs"],
        "3 evaluation episodes": by["evaluate_models"]["episodes"],
    }
    return [
        {"count": k, "this plan": ours[k], "seeds": v, "ratio": round(ours[k] / v, 2)}
        for k, v in SEEDS_BUDGET["counts"].items()
    ]


def plan(
    p: Params,
    device: str = "cpu-2core",
    backend: str = "hf",
    preset: str | None = None,
    path: Path = THROUGHPUT,
    teacher_concurrency: int = 1,
) -> dict:
    """Everything the `plan` command prints, as one JSON-ready dict: the hours at the figures'
    values, and at the low and high ends of the assumed figures' ranges (`range`)."""
    rows = workload(p, path)
    profile = hours(p, rows, device, backend, path, teacher_concurrency)
    ends = {}
    for corner in ("low", "high"):
        other = workload(p, path)
        hours(p, other, device, backend, path, teacher_concurrency, corner)
        ends[corner] = other
    for i, r in enumerate(rows):
        r["hours_range"] = (
            None if r["hours"] is None else [ends["low"][i]["hours"], ends["high"][i]["hours"]]
        )
    totals = {
        k: sum(r[k] for r in rows)
        for k in (
            "episodes",
            "calls",
            "prompt_tokens",
            "candidate_tokens",
            "generated_tokens",
            "computed_tokens",
            "train_steps",
            "teacher",
            "usd",
            "teacher_h",
        )
    }
    for key in ("hours", "compute_h", "overhead_h", "flops"):
        totals[key] = _sum(rows, key)
    totals["hours_range"] = (
        None
        if totals["hours"] is None
        else [_sum(ends["low"], "hours"), _sum(ends["high"], "hours")]
    )
    totals["teacher_h_range"] = [_sum(ends["low"], "teacher_h"), _sum(ends["high"], "teacher_h")]
    totals["wall_h"] = None if totals["hours"] is None else totals["hours"] + totals["teacher_h"]
    warnings = []
    if totals["teacher"] > p.teacher.max_calls:
        warnings.append(
            f"teacher calls {totals['teacher']:,} exceed teacher.max_calls "
            f"{p.teacher.max_calls:,}: label stops there"
        )
    if totals["usd"] > p.teacher.max_usd:
        warnings.append(
            f"teacher ${totals['usd']:.2f} exceeds teacher.max_usd ${p.teacher.max_usd:.2f}: label "
            f"stops there"
        )
    out = {
        "params": {
            "env": p.env.name,
            "student": p.student.base_model or "offline student",
            "teacher": p.teacher.model if p.teacher.name == "openai" else "oracle",
        },
        "sizes": sizes(p),
        "profile": profile,
        "stages": rows,
        "totals": totals,
        "warnings": warnings,
        "gates": gates(p),
        "assumptions": {
            "env_tokens": student_tokens(p, path),
            "vocabulary": vocabulary(p),
            "teacher_tokens_in": TEACHER_IN,
            "teacher_tokens_out": TEACHER_OUT,
            "item_variance": ITEM_VARIANCE,
            "between_share": BETWEEN_SHARE,
        },
    }
    if preset == "seeds":
        out["seeds_budget"] = {**SEEDS_BUDGET, "compared": seeds_counts(p, rows)}
    return out


def _si(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.1f}{unit}"
    return f"{x:,.0f}"


def _hours(h: float | None, basis: str, rng=None) -> str:
    if h is None:
        return basis
    span = f" [{rng[0]:,.2f}-{rng[1]:,.2f}]" if rng and abs(rng[1] - rng[0]) > 0.005 else ""
    return f"{h:,.2f} h{span} ({basis})"


def _figure(name: str, f: dict) -> str:
    rng = (
        f" (range {f['range'][0]:g}-{f['range'][1]:g})" if f["range"] and not f["measured"] else ""
    )
    return f"{name} {f['value']:g}{rng}"


def to_text(out: dict) -> str:
    """The plan as readable tables: stages, totals, the figures (measured, assumed), the seeds'
    budget (with the preset), gates, assumptions."""
    import pandas as pd

    prof, rows, tot = out["profile"], out["stages"], out["totals"]
    gpu = prof["device"] != "cpu-2core"
    unit = "GPU-hours" if gpu else "hours"
    bases = {r["basis"] for r in rows}
    basis = ESTIMATE if ESTIMATE in bases else PARTLY if PARTLY in bases else next(iter(bases))
    head = [
        f"Plan for {out['params']['env']}, student {out['params']['student']} "
        f"({prof['student_params']:.3g} parameters, N = {prof['student_layer_params']:.3g} in the "
        f"decoder layers; shape: {prof['student_shape']}), teacher {out['params']['teacher']}",
        f"Device {prof['device']}: {prof['description']}; "
        f"engine {prof['backend']}; figures from {prof['source']}"
        f"{' (calibrated by ' + prof['calibrated'] + ')' if prof['calibrated'] else ''}",
        "Counts are upper bounds (episodes to the horizon, labeling arms to their "
        "cap, balanced quadrants); hours scale them by the share a pilot stage ran; "
        "[low-high] spans the assumed figures' ranges.",
    ]
    head += [f"Check: {prof['check']}."] if prof["check"] else []
    col = f"{unit} ({prof['device']})"
    table = [
        {
            "stage": r["stage"],
            "phase": r["phase"],
            "episodes": f"{r['episodes']:,}",
            "policy calls": _si(r["calls"]),
            "prompt tok": _si(r["prompt_tokens"]),
            "cand tok": _si(r["candidate_tokens"]),
            "gen tok": _si(r["generated_tokens"]),
            "computed tok": _si(r["computed_tokens"]),
            "train steps": f"{r['train_steps']:,}",
            "teacher calls": f"{r['teacher']:,}",
            "USD": f"{r['usd']:.2f}",
            col: _hours(r["hours"], r["basis"], r["hours_range"]),
        }
        for r in rows
    ]
    table.append(
        {
            "stage": "total",
            "phase": "",
            "episodes": f"{tot['episodes']:,}",
            "policy calls": _si(tot["calls"]),
            "prompt tok": _si(tot["prompt_tokens"]),
            "cand tok": _si(tot["candidate_tokens"]),
            "gen tok": _si(tot["generated_tokens"]),
            "computed tok": _si(tot["computed_tokens"]),
            "train steps": f"{tot['train_steps']:,}",
            "teacher calls": f"{tot['teacher']:,}",
            "USD": f"{tot['usd']:.2f}",
            col: _hours(tot["hours"], basis, tot["hours_range"]),
        }
    )
    parts = ["\n".join(head), pd.DataFrame(table).to_string(index=False)]
    if tot["hours"] is not None:
        lo, hi = tot["hours_range"]
        span = f"{lo:,.1f}-{hi:,.1f} over the assumed ranges; " if hi - lo > 0.05 else ""
        parts.append(
            f"{unit}: {tot['hours']:,.1f} ({span}{basis}): "
            f"compute {tot['compute_h']:,.1f}, overheads {tot['overhead_h']:,.1f} (model "
            "loads, LoRA set-up, env stepping: the device held, idle)"
            + (f"; {tot['flops']:.3g} FLOPs" if tot["flops"] else "")
        )
    if tot["teacher"]:
        tlo, thi = tot["teacher_h_range"]
        parts.append(
            f"Teacher: {tot['teacher']:,} calls, ${tot['usd']:.2f} at {TEACHER_IN} + prompt tokens "
            f"in and {TEACHER_OUT} out a call; at most {sum(r['teacher_worst'] for r in rows):,} "
            f"calls with every retry. Wall time {tot['teacher_h']:,.1f} h ({tlo:,.1f}-{thi:,.1f}) "
            f"at {prof['teacher_concurrency']} call(s) in flight (label calls one at a time: "
            f"--teacher-concurrency prices more), not in the {unit}"
            + (
                f"; the run's wall clock {tot['wall_h']:,.1f} h if the device waits for it"
                if tot["wall_h"] is not None
                else ""
            )
            + "."
        )
    figs = prof["figures"]
    measured = [_figure(k, f) for k, f in figs.items() if f["measured"]]
    assumed = [_figure(k, f) for k, f in figs.items() if not f["measured"]]
    parts.append(
        "Figures measured: "
        + ("; ".join(measured) or "none")
        + "\nFigures assumed: "
        + ("; ".join(assumed) or "none")
    )
    parts += [f"warning: {w}" for w in out["warnings"]]
    if "seeds_budget" in out and tot["hours"] is not None:
        b = out["seeds_budget"]
        per_phase = [
            {
                "phase": ph,
                f"this plan {unit}": _hours(
                    sum(r["hours"] for r in rows if r["phase"] == ph),
                    basis,
                    [sum(r["hours_range"][i] for r in rows if r["phase"] == ph) for i in (0, 1)],
                ),
                "seeds GPU-hours": f"{lo}-{hi}",
            }
            for ph, (lo, hi) in b["per_phase"].items()
        ]
        counts = pd.DataFrame(
            [
                {
                    "count": c["count"],
                    "this plan": f"{c['this plan']:,.4g}"
                    if c["this plan"] % 1
                    else f"{c['this plan']:,.0f}",
                    "seeds": f"{c['seeds']:,}",
                    "ratio": c["ratio"],
                }
                for c in b["compared"]
            ]
        )
        parts += [
            "Against the seeds' budget (" + b["source"] + "):",
            pd.DataFrame(per_phase).to_string(index=False),
            f"this plan: {tot['hours']:,.1f} {unit} ({basis}), {tot['episodes']:,} episodes, "
            f"${tot['usd']:.2f} teacher\nseeds:     {b['gpu_hours'][0]}-{b['gpu_hours'][1]} "
            f"GPU-hours (plan table); readme: ~{b['readme']['gpu_hours']} GPU-hours, "
            f"~{b['readme']['episodes']:,} episodes, ~${b['readme']['usd']} teacher",
            "Counts against the seeds' (v8-readme.md Compute Budget; "
            "the evaluation's 40,000 names no rollouts per item):",
            counts.to_string(index=False),
        ]
    gates_table = pd.DataFrame(
        [
            {
                "gate": g["gate"],
                "unit": g["unit"],
                "n": f"{g['n']:,}",
                "n needed": f"{g['n_needed']:,}",
                "effect": g["effect"],
                "min detectable": g["min_detectable"],
                "verdict": g["verdict"],
            }
            for g in out["gates"]
        ]
    )
    a = out["assumptions"]
    parts += [
        f"Gates (one-sided, power {POWER}; an item's paired variance {a['item_variance']} "
        f"per seed and rollout, {a['between_share']:.0%} of it the item's):",
        gates_table.to_string(index=False),
        "4 predictor gates: not planned (teachable/gates/predictor.py extrapolates no n: "
        "cluster bootstrap over tasks)",
        f"Tokens per state ({a['vocabulary']} vocabulary; benchmarks/throughput.json env_tokens): "
        f"{a['env_tokens']}; teacher {a['teacher_tokens_in']} + prompt tokens in, "
        f"{a['teacher_tokens_out']} out per call.",
    ]
    return "\n\n".join(parts) + "\n"
