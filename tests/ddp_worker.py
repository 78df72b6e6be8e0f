"""One LoRA run through `train_lora`, started by `tests/test_ddp.py` under `accelerate launch`
(several CPU processes joined by gloo) or alone: `python tests/ddp_worker.py BASE_MODEL OUT_DIR
SCRATCH_DIR`. Every process writes what it saw to SCRATCH_DIR/rank-<i>.json; the adapter goes to
OUT_DIR."""

import json
import sys
from pathlib import Path

from teachable.core.params import TrainParams
from teachable.training.lora import train_lora, training_processes
from teachable.training.supervision import EXAMPLE_LABELED, supervision_record

GLOBAL_BATCH, STEPS = 4, 6


def main(base: str, out: Path, scratch: Path) -> None:
    processes = training_processes()
    # one record, repeated: every batch has the same gradient however it is split, so the run's
    # adapter must not depend on the number of processes (the gradients of the processes are
    # averaged, not summed)
    records = [supervision_record(EXAMPLE_LABELED, "demo")] * 16
    params = TrainParams.defaults(
        max_steps=STEPS, learning_rate=0.03, batch_size=GLOBAL_BATCH, save_steps=STEPS
    )
    metrics = train_lora(
        base, records, params, out, report=False, checkpoint_dir=scratch / "checkpoints"
    )
    state = json.loads(
        (scratch / "checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text()
    )
    (scratch / f"rank-{processes.process_index}.json").write_text(
        json.dumps(
            {
                "processes": processes.num_processes,
                "main": processes.is_main_process,
                "distributed_type": str(processes.distributed_type),
                "steps": metrics["steps"],
                "per_device_batch": state["train_batch_size"],
                "loss_curve": metrics["loss_curve"],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
