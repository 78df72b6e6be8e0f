"""Stage `student`: build the offline student (no `student.base_model`) or record which model is used.

Outputs `models/student/` (HF directory: safetensors, tokenizer, chat template) and `models/student/card.json`.
Resumable: training checkpoints (one at every held-out evaluation) go to `.scratch/`, keyed by these params and the
training data, so a killed build restarted with the same params resumes from its last checkpoint and saves the same
model an uninterrupted build would (`teachable.training.student.build`).
"""

from __future__ import annotations

from pathlib import Path

from teachable import stage
from teachable.core.params import Params
from teachable.core.records import write_json
from teachable.core.tracking import stage_run


def main(params: Params) -> None:
    out = Path(params.student.dir)
    out.mkdir(parents=True, exist_ok=True)
    key = params.model_dump(mode="json", include={"seed", "env", "student"})
    with stage_run("student", key) as mlflow:
        if params.student.base_model:
            card = {"base_model": params.student.base_model, "offline": False}
        else:
            from teachable.training.student.build import build_student

            card = build_student(params.student, params.env, params.seed, out, scratch_key=key)
            for point in card["loss_curve"]:
                mlflow.log_metric("train_loss", point["loss"], step=point["step"])
            for point in card["success_curve"]:
                mlflow.log_metric("held_out_success_curve", point["held_out_success"], step=point["step"])
            mlflow.log_metrics({k: card[k] for k in ("held_out_success", "train_steps", "build_seconds")})
        write_json(out / "card.json", card)
        mlflow.log_artifact(str(out / "card.json"))


if __name__ == "__main__":
    stage.run(main)
