"""Supervision formats: training records whose prompt is exactly what the student sees at a labeled
state.

Records are tokenizer-agnostic (chat messages + the target action); `training.to_text` renders them
with the student's own chat template, the same way the policy scores actions, so training and
scoring agree.
- demo: the plain prompt; target = the teacher's action.
- hint: the teacher's hint added to the prompt; target = the action.
- contrast: the student's wrong action vs the teacher's added to the prompt; target = the action.
- pairs (DPO): the plain prompt, chosen = the teacher's action, rejected = the student's action.
"""

from __future__ import annotations

from teachable.policy.patches import contrast_patch, hint_patch
from teachable.policy.prompts import build_messages

FORMATS = ("demo", "hint", "contrast")

# The fields of a labeled snapshot (a line of data/labels.jsonl) that every format is made from: a
# fixed BabyAI example for runs that train without a pipeline (tests/ddp_worker.py,
# benchmarks/fsdp_step.py).
EXAMPLE_LABELED = {
    "snapshot_id": "s1",
    "mission": "go to the red ball",
    "obs": "You see: red ball 2 forward. You carry nothing.",
    "valid_actions": ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"],
    "history": [{"obs": "x", "action": "turn left"}],
    "student_action": "turn left",
    "contrast_action": "turn left",
    "teacher": {
        "suggested_action": "go forward",
        "hint": "",
        "diagnosis": "",
        "contrast": "",
        "source": "oracle",
        "valid": True,
    },
}


def supervision_record(record: dict, fmt: str) -> dict:
    """One prompt-completion record for a labeled snapshot in format `fmt`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown supervision format {fmt!r}; known: {FORMATS}")
    teacher = record["teacher"]
    action = teacher["suggested_action"]
    patch = {
        "demo": None,
        "hint": hint_patch(teacher["hint"]),
        "contrast": contrast_patch(record["contrast_action"], action),
    }[fmt]
    messages = build_messages(
        record["mission"], record["obs"], record["valid_actions"], record["history"], patch
    )
    return {
        "snapshot_id": record["snapshot_id"],
        "format": fmt,
        "messages": messages,
        "action": action,
    }


def preference_pair(record: dict, fmt: str = "demo") -> dict:
    """Chosen = the teacher's action, rejected = the student's wrong one (never the same: see
    labeling), on the prompt of format `fmt` (so DPO trains the same matrix cells as SFT)."""
    sft = supervision_record(record, fmt)
    return {
        "snapshot_id": record["snapshot_id"],
        "format": fmt,
        "messages": sft["messages"],
        "chosen": sft["action"],
        "rejected": record["contrast_action"],
    }
