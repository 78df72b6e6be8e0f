"""Stage `student`: the student every later stage loads, as `models/student/` (HF directory) and its
`card.json`.

- `student.base_model` given: the card records which model is used.
- Else the pinned offline student (`student.pinned`, committed to git) when its build params equal
  the current ones: every file checked against its SHA-256, then copied. Every machine labels the
  same student this way; a pin is what downloaded weights are at paper scale.
- Else (no pin, a pin for other params, or `student.rebuild: true`) the offline student is built.
  Resumable: training checkpoints (one at every held-out evaluation) go to `.scratch/`, keyed by
  these params and the training data, so a killed build restarted resumes from its last checkpoint
  and saves the same model an uninterrupted build would (`teachable.training.student.build`).
  `python -m teachable pin` pins a build.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from teachable import stage
from teachable.core.params import Params
from teachable.core.records import write_json
from teachable.core.tracking import stage_run
from teachable.training.student import pin

log = logging.getLogger("student")


def pinned_card(params: Params, out: Path) -> dict | None:
    """The card of the pinned student copied to `out`, or None when the params ask for a build."""
    s = params.student
    record = pin.read_pin(s.pinned) if s.pinned else None
    if record is None or s.rebuild:
        return None
    differ = pin.key_differences(record["build_key"], pin.build_key(params))
    if differ:
        log.warning(
            "the pinned student in %s was built with other params (%s): building a new one",
            s.pinned,
            ", ".join(differ[:5]),
        )
        return None
    pin.restore(s.pinned, out)
    card = json.loads((out / "card.json").read_text()) if (out / "card.json").is_file() else {}
    return {
        **card,
        "pinned": {"dir": s.pinned, "files": record["files"], "built_with": record["built_with"]},
    }


def main(params: Params) -> None:
    out = Path(params.student.dir)
    out.mkdir(parents=True, exist_ok=True)
    key = params.model_dump(mode="json", include={"seed", "env", "student"})
    with stage_run("student", key) as mlflow:
        if params.student.base_model:
            card = {"base_model": params.student.base_model, "offline": False}
        elif (card := pinned_card(params, out)) is not None:
            log.info(
                "the pinned student %s (built on %s), every file checked",
                params.student.pinned,
                card["pinned"]["built_with"]["processor"],
            )
            mlflow.set_tag("student.pinned", params.student.pinned)
        else:
            from teachable.training.student.build import build_student

            card = build_student(params.student, params.env, params.seed, out, scratch_key=key)
            # what `python -m teachable pin` checks before pinning
            card["build_key"] = pin.build_key(params)
            for point in card["loss_curve"]:
                mlflow.log_metric("train_loss", point["loss"], step=point["step"])
            for point in card["success_curve"]:
                mlflow.log_metric(
                    "held_out_success_curve", point["held_out_success"], step=point["step"]
                )
            mlflow.log_metrics(
                {k: card[k] for k in ("held_out_success", "train_steps", "build_seconds")}
            )
        write_json(out / "card.json", card)
        mlflow.log_artifact(str(out / "card.json"))


if __name__ == "__main__":
    stage.run(main)
