"""Stage `train_summary` (phase 2): every cell's metrics (means over its training seeds) in
`reports/phase2/training_summary.json`.

Exactly the cells the params define (`teachable.training.matrix.phase2_cells`); a directory under
models/phase2 from earlier params is left out, a defined cell that was not trained is an error
naming it.
"""

from __future__ import annotations

from pathlib import Path

from teachable import stage
from teachable.core.params import Params
from teachable.core.records import write_json
from teachable.training.matrix import cell_metrics, phase2_cells

PHASE2 = Path("models/phase2")


def main(params: Params) -> None:
    runs = []
    for name in sorted(phase2_cells(params.train)):
        cell, metrics = PHASE2 / name, cell_metrics(PHASE2, name)
        runs.append(
            {
                "run_id": cell.name,
                "n_records": metrics["n_records"],
                "small": metrics["small"],
                "trained": metrics["trained"],
                "train_loss": metrics["train_loss"],
                "final_loss": metrics["final_loss"],
                "steps": metrics["steps"],
                "seconds": metrics["seconds"],
                "n_seeds": metrics.get("n_seeds", 1),
                "adapter_path": str(cell) if metrics["trained"] else None,
            }
        )  # seed-<k>/ inside
    write_json("reports/phase2/training_summary.json", {"n_runs": len(runs), "runs": runs})


if __name__ == "__main__":
    stage.run(main)
