"""Teachers: advice at a state (suggested action, diagnosis, hint, contrast). `oracle` is offline."""

from __future__ import annotations

from teachable.teacher.base import Advice, Teacher
from teachable.teacher.oracle import OracleTeacher


class FallbackTeacher:
    """Asks the primary teacher; an unusable answer becomes oracle advice marked `valid: false`, or None (drop)."""

    def __init__(self, primary, on_invalid: str):
        self.primary, self.on_invalid, self.name = primary, on_invalid, primary.name
        self.oracle = OracleTeacher()

    @property
    def ledger(self) -> dict:
        return getattr(self.primary, "ledger", {})

    def advise(self, env, student_action):
        from teachable.teacher.openai_teacher import UnusableAnswer

        try:
            return self.primary.advise(env, student_action)
        except UnusableAnswer:
            if self.on_invalid == "drop":
                return None
            fallback = self.oracle.advise(env, student_action)
            return fallback.model_copy(update={"valid": False, "source": f"{self.name}->oracle"})


def make_teacher(params) -> Teacher:
    """The teacher named by `teacher.name`; the OpenAI one checks its key here, before any work."""
    if params.name == "oracle":
        return OracleTeacher()
    from teachable.teacher.openai_teacher import OpenAITeacher

    return FallbackTeacher(OpenAITeacher(params), params.on_invalid)


__all__ = ["Advice", "FallbackTeacher", "OracleTeacher", "Teacher", "make_teacher"]
