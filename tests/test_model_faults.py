"""Faults around the models a fault probe found: a damaged student directory, a killed student
build, adapters loaded from elsewhere (now in tests/test_moved_workspace.py), double-logged
tracking, stale phase 2 cells, and selection inputs that cannot work. Each ends in one clear line
(exit code 2) or is handled, never a library traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from teachable import stage
from teachable.core.params import Params, TrainParams
from teachable.core.records import InputError, read_jsonl, write_jsonl
from teachable.policy.student import load_student, student_path
from tests.project_copy import load_stage
from tests.test_training import LABELED

TINY_STUDENT = {
    "n_train_tasks": 6,
    "max_train_steps": 12,
    "eval_every": 4,
    "n_eval_tasks": 2,
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 300,
    "batch_size": 4,
}
QUADRANT_NAMES = {
    "Q1": "Q1_highU_highL",
    "Q2": "Q2_highU_lowL",
    "Q3": "Q3_lowU_lowL",
    "Q4": "Q4_lowU_highL",
}


def run_stage(main, raw_params: dict, capsys) -> tuple[int | None, str]:
    """A stage's `main` through `teachable.stage.run`, params from a params.yaml in the working
    directory (the project's values, `raw_params` merged in): the exit code (None when it returned)
    and what it wrote on stderr."""
    Path("params.yaml").write_text(
        yaml.safe_dump(Params.defaults(**raw_params).model_dump(mode="json"))
    )
    capsys.readouterr()
    try:
        stage.run(main, "params.yaml")
        code = None
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. a damaged student directory ---------------------------------------------------------------
@pytest.fixture
def student_copy(tiny_student_dir, tmp_path):
    copy = tmp_path / "models" / "student"
    shutil.copytree(tiny_student_dir, copy)
    return copy


def test_an_intact_student_directory_passes_the_check(tiny_student_dir):
    from teachable.policy.student import check_model_dir

    check_model_dir(tiny_student_dir)
    assert student_path(Params.defaults(student={"dir": str(tiny_student_dir)}).student) == str(
        tiny_student_dir
    )


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.0001])
def test_a_truncated_weights_file_is_one_line_naming_it(student_copy, keep, monkeypatch, capsys):
    weights = student_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: max(1, int(len(data) * keep))])
    params = Params.defaults(student={"dir": str(student_copy)})
    with pytest.raises(
        InputError, match=r"model\.safetensors is damaged or truncated .*dvc repro student"
    ):
        load_student(params.student)
    with pytest.raises(InputError, match=r"model\.safetensors"):
        student_path(params.student)  # what `train` and `select_snapshots` hand to train_lora

    # a stage: one line on stderr, exit code 2, no traceback
    monkeypatch.chdir(student_copy.parent.parent)
    code, err = run_stage(
        lambda p: load_student(p.student), {"student": {"dir": "models/student"}}, capsys
    )
    assert code == 2 and err.count("\n") == 1 and "models/student/model.safetensors" in err
    assert "Traceback" not in err and "dvc repro student" in err


def test_a_missing_tokenizer_is_one_line_naming_it_not_a_sentencepiece_hint(
    student_copy, monkeypatch, capsys
):
    (student_copy / "tokenizer.json").unlink()
    monkeypatch.chdir(student_copy.parent.parent)
    code, err = run_stage(
        lambda p: load_student(p.student), {"student": {"dir": "models/student"}}, capsys
    )
    assert code == 2 and err.count("\n") == 1, err
    assert "models/student/tokenizer.json is missing" in err and "dvc repro student" in err
    assert "sentencepiece" not in err.lower()


def test_missing_weights_or_directory_are_named(student_copy):
    params = Params.defaults(student={"dir": str(student_copy)})
    (student_copy / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"model\.safetensors is missing"):
        load_student(params.student)
    shutil.rmtree(student_copy)
    with pytest.raises(InputError, match=r"does not exist: rebuild it with `dvc repro student`"):
        load_student(params.student)
    given = Params.defaults(student={"base_model": str(student_copy)})
    student_copy.mkdir()
    with pytest.raises(InputError, match=r"config\.json is missing.*student\.base_model"):
        load_student(given.student)


# --- 2. a killed student build resumes ------------------------------------------------------------
class Killed(Exception):
    """Stands in for a SIGKILL right after a checkpoint was written (what is on disk is the
    same)."""


def kill_after_checkpoint(monkeypatch, step: int) -> None:
    from teachable.training.student.build import _SuccessStop

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == step:
            raise Killed(step)
        return control

    monkeypatch.setattr(_SuccessStop, "on_save", on_save, raising=False)


def student_stage(tmp_path, monkeypatch, name: str, **student):
    where = tmp_path / name
    where.mkdir()
    monkeypatch.chdir(where)
    params = Params.defaults(
        env={"levels": ["GoToObj"], "max_steps": 8}, student={**TINY_STUDENT, **student}
    )
    return load_stage("student"), params, where


@pytest.mark.heavy
@pytest.mark.parametrize(
    "batching",
    [{}, {"group_by_length": True}, {"group_by_length": True, "shuffle_length_groups": True}],
    ids=["random", "length_groups", "shuffled_length_groups"],
)
def test_a_killed_student_build_resumes_to_the_same_model(tmp_path, monkeypatch, batching):
    """Killed after its checkpoint at step 8 (of 12, past an epoch boundary: 7 batches an epoch),
    the rerun resumes from step 8 and saves byte for byte the model of an uninterrupted build, with
    the same curves. Also with length-grouped batches, shuffled or not: the resumed second epoch
    must get the uninterrupted build's order, which transformers' sampler drew from the global RNG
    before the checkpoint's state was restored."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    module, params, a = student_stage(tmp_path, monkeypatch, "uninterrupted", **batching)
    module.main(params)
    card_a = json.loads((a / "models/student/card.json").read_text())
    assert card_a["resumed_from_step"] is None and card_a["train_steps"] == 12
    assert not list((a / ".scratch").iterdir())  # the checkpoints go once the model is saved

    module, params, b = student_stage(tmp_path, monkeypatch, "killed", **batching)
    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, 8)
        with pytest.raises(Killed):
            module.main(params)
    (scratch,) = (b / ".scratch").iterdir()
    assert sorted(p.name for p in scratch.glob("checkpoint-*")) == ["checkpoint-8"]
    (scratch / "checkpoint-10").mkdir()  # a checkpoint the kill cut short: no trainer_state.json
    (scratch / "checkpoint-10" / "model.safetensors").write_bytes(b"torn")
    module.main(params)
    card_b = json.loads((b / "models/student/card.json").read_text())
    assert card_b["resumed_from_step"] == 8 and card_b["train_steps"] == 12
    for name in ("model.safetensors", "tokenizer.json"):
        assert sha(a / "models/student" / name) == sha(b / "models/student" / name), name
    for key in ("loss_curve", "success_curve", "held_out_success", "n_parameters", "n_examples"):
        assert card_a[key] == card_b[key], key


@pytest.mark.heavy
def test_a_build_killed_after_reaching_its_target_does_not_train_on(tmp_path, monkeypatch):
    """Target 0: the first evaluation (step 4) stops training. Killed right after that checkpoint,
    the rerun takes its weights as they are instead of training from step 5 on."""
    from teachable.training.student.build import build_student

    monkeypatch.chdir(tmp_path)
    params = Params.defaults(
        env={"levels": ["GoToObj"], "max_steps": 8}, student={**TINY_STUDENT, "target_success": 0.0}
    )
    plain = build_student(params.student, params.env, 0, tmp_path / "plain")
    assert plain["train_steps"] == 4
    with monkeypatch.context() as patch:
        kill_after_checkpoint(patch, 4)
        with pytest.raises(Killed):
            build_student(params.student, params.env, 0, tmp_path / "out", scratch_key={"k": 1})
    card = build_student(params.student, params.env, 0, tmp_path / "out", scratch_key={"k": 1})
    assert card["train_steps"] == 4 and card["resumed_from_step"] == 4
    assert (
        card["success_curve"] == plain["success_curve"]
        and card["loss_curve"] == plain["loss_curve"]
    )
    assert sha(tmp_path / "out/model.safetensors") == sha(tmp_path / "plain/model.safetensors")


# --- 3. adapters load from anywhere: tests/test_moved_workspace.py --------------------------------


# --- 4. tracking ----------------------------------------------------------------------------------
def matrix_records():
    quadrants = ["Q1"] * 2 + ["Q2"] * 2 + ["Q3"] * 2 + ["Q4"] * 2
    return [
        {**LABELED, "snapshot_id": f"s{i}", "quadrant": QUADRANT_NAMES[q]}
        for i, q in enumerate(quadrants)
    ]


@pytest.mark.heavy
def test_a_cell_logs_train_loss_once_and_the_whole_runs_after_a_resume(
    tiny_student_dir, tmp_path, monkeypatch
):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = Params.defaults(
        student={"dir": str(tiny_student_dir)},
        train={"max_steps": 3, "batch_size": 1, "n_seeds": 1, "save_steps": 1},
    )
    module = load_stage("train")
    first = module.train_seed(params, "Q1-demo", 0, matrix_records(), tmp_path / "out")
    first_adapter = sha(tmp_path / "out/adapter_model.safetensors")
    # resumes: no step left
    again = module.train_seed(params, "Q1-demo", 0, matrix_records(), tmp_path / "out")
    mlflow.flush_async_logging()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for metrics in (first, again):
        history = client.get_metric_history(metrics["mlflow_run_id"], "train_loss")
        assert len(history) == 1, [(m.step, m.value) for m in history]
        assert history[0].value == pytest.approx(metrics["train_loss"], abs=1e-4)
    assert len(client.get_metric_history(first["mlflow_run_id"], "loss")) == 3  # the per-step curve
    # 2 records, batch 1: step 3 of 3 ends mid-epoch, where transformers would resume with a 4th
    # step
    assert again["resumed_from"].endswith("checkpoint-3") and again["steps"] == 3
    # the run's, not a resume's 0.0
    assert again["train_loss"] == pytest.approx(first["train_loss"], abs=1e-3)
    assert again["loss_curve"] == first["loss_curve"]
    # the checkpoint's weights, no step on
    assert sha(tmp_path / "out/adapter_model.safetensors") == first_adapter


def micro_records() -> list[dict]:
    from teachable.envs import make_env

    out = []
    for i, q in enumerate(QUADRANT_NAMES.values()):
        env = make_env("babyai", "GoToLocal", 8)
        env.reset(3 + i)
        env.step("turn left")
        out.append(
            {
                **LABELED,
                "snapshot_id": f"m{i}",
                "quadrant": q,
                "seed": 3 + i,
                "state": env.state(),
                "state_hash": env.state_hash(),
                "split": "train",
                "patches": {
                    c: f"Teacher: {c} patch." for c in ("placebo", "demo", "contrast", "hint")
                },
                "cpt": {"route_net": "hint", "ELP_net": i / 4, "ELP_net_halves": [i / 4, i / 4]},
            }
        )
    return out


@pytest.mark.heavy
def test_micro_train_logs_every_micro_runs_loss_curve_as_one_artifact(
    tiny_student_dir, tmp_path, monkeypatch
):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    write_jsonl("data/quadrant_snapshots.jsonl", micro_records())
    params = Params.defaults(
        env={"levels": ["GoToLocal"], "max_steps": 8},
        student={"dir": str(tiny_student_dir)},
        label={"horizon": 4},
        micro_train={
            "n_per_quadrant": 1,
            "n_steps": 2,
            "n_cpt_rollouts": 2,
            "n_validation_rollouts": 2,
        },
    )
    load_stage("micro_train").main(params)
    mlflow.set_tracking_uri(uri)
    (run,) = MlflowClient(uri).search_runs(
        [mlflow.get_experiment_by_name("teachable-moments").experiment_id],
        "tags.stage = 'micro_train'",
    )
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/micro_train/loss_curves.csv")
    lines = text.strip().splitlines()
    assert lines[0] == "snapshot_id,quadrant,format,step,loss" and len(lines) == 1 + 4 * 2
    assert {line.split(",")[0] for line in lines[1:]} == {"m0", "m1", "m2", "m3"}
    results = json.loads(Path("reports/phase1b/micro_training_results.json").read_text())["results"]
    # the report keeps its shape
    assert len(results) == 4 and not any("loss_curve" in r for r in results)


# --- 5. exactly the cells the params define -------------------------------------------------------
def make_cell(root: Path, name: str) -> None:
    seed_dir = root / name / "seed-0"
    seed_dir.mkdir(parents=True)
    (seed_dir / "adapter_config.json").write_text("{}")
    (root / name / "metrics.json").write_text(
        json.dumps(
            {
                "run_id": name,
                "n_records": 3,
                "small": False,
                "trained": True,
                "train_loss": 1.0,
                "final_loss": 1.0,
                "steps": 2,
                "seconds": 0.1,
                "n_seeds": 1,
                "seeds": [{"seed_index": 0, "dir": str(seed_dir), "mlflow_run_id": None}],
            }
        )
    )


Q1_ONLY = {"quadrants": ["Q1"], "formats": ["demo", "hint"], "baselines": ["random"]}


def test_stale_cells_from_earlier_params_are_not_evaluated(tmp_path):
    from teachable.evaluation.panels import matrix_models
    from teachable.training.matrix import phase2_cells

    cells = phase2_cells(TrainParams.defaults(**Q1_ONLY))
    assert cells == ["Q1-demo", "Q1-hint", "random", "recovery"]
    for name in cells + ["Q2-demo", "Q4-hint", "all"]:  # the last three: left by earlier params
        make_cell(tmp_path, name)
    assert {m.model for m in matrix_models(tmp_path, cells)} == {"base", *cells}
    shutil.rmtree(tmp_path / "Q1-hint")
    with pytest.raises(InputError, match=r"Q1-hint does not exist.*`dvc repro train@Q1-hint`"):
        matrix_models(tmp_path, cells)
    make_cell(tmp_path, "Q1-hint")
    shutil.rmtree(tmp_path / "recovery" / "seed-0")
    with pytest.raises(
        InputError, match=r"recovery/seed-0 has no adapter.*`dvc repro train_recovery`"
    ):
        matrix_models(tmp_path, cells)


def test_evaluate_and_train_summary_take_exactly_the_defined_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    phase2 = Path("models/phase2")
    for name in ["Q1-demo", "Q1-hint", "random", "recovery", "Q2-demo", "Q3-contrast", "all"]:
        make_cell(phase2, name)
    raw = {"train": Q1_ONLY}
    code, err = run_stage(load_stage("train_summary").main, raw, capsys)
    assert code is None, err
    summary = json.loads(Path("reports/phase2/training_summary.json").read_text())
    assert [r["run_id"] for r in summary["runs"]] == ["Q1-demo", "Q1-hint", "random", "recovery"]

    shutil.rmtree(phase2 / "Q1-hint")
    # evaluate checks its models before loading anything
    for name in ("train_summary", "evaluate_models"):
        code, err = run_stage(load_stage(name).main, raw, capsys)
        assert code == 2 and err.count("\n") == 1, (name, err)
        assert "models/phase2/Q1-hint does not exist" in err and "dvc repro train@Q1-hint" in err


# --- 6. selection inputs --------------------------------------------------------------------------
def selection_inputs(n: int, predicted: int) -> None:
    records = [
        {
            "snapshot_id": f"s{i:02d}",
            "U": i / 10,
            "split": "train",
            "quadrant": QUADRANT_NAMES["Q1"],
            "cpt": {"ELP_net": 0.1, "ELP_net_halves": [0.1, 0.1]},
        }
        for i in range(n)
    ]
    records.append({**records[0], "snapshot_id": "held", "split": "eval"})  # never a candidate
    write_jsonl("data/quadrant_snapshots.jsonl", records)
    Path("reports/phase4").mkdir(parents=True)
    Path("reports/phase4/oof_predictions.csv").write_text(
        "snapshot_id,ELP_pred\n" + "".join(f"s{i:02d},0.{i}\n" for i in range(predicted))
    )
    assert len(read_jsonl("data/quadrant_snapshots.jsonl")) == n + 1


def test_a_budget_beyond_the_training_pool_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    selection_inputs(n=6, predicted=6)
    code, err = run_stage(load_stage("select_snapshots").main, {"select": {"budget": 7}}, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "select.budget is 7 but the training pool has only 6 snapshots" in err


def test_a_snapshot_without_a_prediction_names_it_and_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    selection_inputs(n=6, predicted=4)
    code, err = run_stage(load_stage("select_snapshots").main, {"select": {"budget": 3}}, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert (
        "reports/phase4/oof_predictions.csv has no predicted ELP for "
        "2 training snapshot(s): s04, s05" in err
    )
    assert "Traceback" not in err
