"""The student: any HF causal LM, or the offline student this package builds when none is given."""

from __future__ import annotations

from teachable.config import StudentParams


def student_path(params: StudentParams) -> str:
    """Where the student's weights are: the given base model, or the offline student's directory."""
    return params.base_model or params.dir


def load_student(params: StudentParams):
    """The student as a scoring/generating policy, on the configured device and dtype."""
    from teachable.policy.hf import HFPolicy

    return HFPolicy.load(student_path(params), params.device, params.dtype, params.score_batch_size)
