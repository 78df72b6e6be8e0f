"""Stage `train_summary` (phase 2): every cell's metrics (means over its training seeds) in
`reports/phase2/training_summary.json`.

Exactly the cells the params define (`train.quadrants` x `train.formats`, `train.baselines`, `recovery`, as in
`teachable.evaluation.panels.phase2_cells`, which this stage's deps do not include); a directory under models/phase2 from
earlier params is left out, a defined cell that was not trained is an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

from teachable import stage
from teachable.core.params import Params, TrainParams
from teachable.core.records import InputError, write_json

PHASE2 = Path("models/phase2")


def defined_cells(train: TrainParams) -> list[str]:
    """What dvc.yaml trains: every quadrant x format cell (`train@<cell>`), the baselines (`train_baseline@<name>`)
    and `recovery` (`train_recovery`)."""
    return [f"{q}-{f}" for q in train.quadrants for f in train.formats] + list(train.baselines) + ["recovery"]


def cell_metrics(cell: str) -> dict:
    path = PHASE2 / cell / "metrics.json"
    if not path.is_file():
        what = "has no metrics.json" if path.parent.is_dir() else "does not exist"
        stage_name = "train_recovery" if cell == "recovery" else f"train@{cell}" if "-" in cell else \
            f"train_baseline@{cell}"
        raise InputError(f"{path.parent} {what}: the params define cell {cell} but it has not been trained; "
                         f"run `dvc repro {stage_name}`")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise InputError(f"{path}: malformed JSON ({err})") from None


def main(params: Params) -> None:
    runs = []
    for name in sorted(defined_cells(params.train)):
        cell, metrics = PHASE2 / name, cell_metrics(name)
        runs.append({"run_id": cell.name, "n_records": metrics["n_records"], "small": metrics["small"],
                     "trained": metrics["trained"], "train_loss": metrics["train_loss"],
                     "final_loss": metrics["final_loss"], "steps": metrics["steps"], "seconds": metrics["seconds"],
                     "n_seeds": metrics.get("n_seeds", 1),
                     "adapter_path": str(cell) if metrics["trained"] else None})  # seed-<k>/ inside
    write_json("reports/phase2/training_summary.json", {"n_runs": len(runs), "runs": runs})


if __name__ == "__main__":
    stage.run(main)
