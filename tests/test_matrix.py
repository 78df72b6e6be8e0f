import subprocess
import sys
from pathlib import Path

import pytest

from teachable.matrix import baseline_records, cell_records
from tests.test_training import LABELED

ROOT = Path(__file__).resolve().parents[1]


def records():
    quadrants = ["Q1_highU_highL"] * 3 + ["Q2_highU_lowL"] * 2 + ["Q3_lowU_lowL"] * 4 + ["Q4_lowU_highL"] * 3
    return [{**LABELED, "snapshot_id": f"s{i}", "quadrant": q} for i, q in enumerate(quadrants)]


def test_the_matrix_expands_to_exactly_14_training_runs():
    listed = subprocess.run([str(Path(sys.executable).parent / "dvc"), "stage", "list", "--name-only"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    cells = [name for name in listed if name.startswith(("train@", "train_baseline@"))]
    assert len(cells) == 14 and "train@Q1-demo" in cells and "train_baseline@random" in cells


def test_cells_hold_their_quadrant_in_their_format():
    q1_hint = cell_records(records(), "Q1", "hint")
    assert len(q1_hint) == 3 and {r["format"] for r in q1_hint} == {"hint"}
    assert len(cell_records(records(), "Q3", "contrast")) == 4


def test_baselines_come_from_the_pool_of_all_cells():
    pool = baseline_records(records(), "all", seed=0)
    assert len(pool) == 12 * 3
    sample = baseline_records(records(), "random", seed=0)
    assert len(sample) == 3 and sample == baseline_records(records(), "random", seed=0)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_records(records(), "best", seed=0)
