"""What a teacher returns at a state, the protocol every teacher implements, and how a teacher
fails."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

# the paid-model errors live with the client the teacher and the retail LLM user share (re-exported
# here)
from teachable.core.openai_client import (  # noqa: F401
    BudgetExceeded,
    TeacherConfigError,
    TeacherStopped,
    TeacherUnavailable,
)


class Advice(BaseModel):
    suggested_action: str
    diagnosis: str  # what is going on at the state (1-2 sentences)
    hint: str  # a diagnosis that does not name the action
    contrast: str  # why the student's action is wrong and the suggested one right
    source: str  # oracle | openai:<model>
    valid: bool = True  # suggested_action is one of the state's valid actions


class Teacher(Protocol):
    name: str

    def advise(self, env, student_action: str | None) -> Advice: ...


class TooManyFallbacks(TeacherStopped):
    """More than `max_fallback_fraction` of the answers so far were unusable (after a minimum number
    of answers)."""


class UnusableAnswer(RuntimeError):
    """The teacher's answer could not be used after every retry: the caller falls back (counted)."""
