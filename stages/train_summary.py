"""Stage `train_summary` (phase 2): every cell's metrics (means over its training seeds) in
`reports/phase2/training_summary.json`."""

from __future__ import annotations

import json
from pathlib import Path

from teachable import stage
from teachable.config import Params
from teachable.records import write_json


def main(params: Params) -> None:
    runs = []
    for path in sorted(Path("models/phase2").glob("*/metrics.json")):
        cell, metrics = path.parent, json.loads(path.read_text())
        runs.append({"run_id": cell.name, "n_records": metrics["n_records"], "small": metrics["small"],
                     "trained": metrics["trained"], "train_loss": metrics["train_loss"],
                     "final_loss": metrics["final_loss"], "steps": metrics["steps"], "seconds": metrics["seconds"],
                     "n_seeds": metrics.get("n_seeds", 1),
                     "adapter_path": str(cell) if metrics["trained"] else None})  # seed-<k>/ inside
    write_json("reports/phase2/training_summary.json", {"n_runs": len(runs), "runs": runs})


if __name__ == "__main__":
    stage.run(main)
