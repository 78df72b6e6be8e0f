"""What a teacher returns at a state, the protocol every teacher implements, and how a teacher fails."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel


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


class TeacherConfigError(RuntimeError):
    """The teacher cannot be used as configured: no key, a wrong key, an unreachable server, an unknown model (raised
    when the teacher is made, before any work), or a stop mid-run (`TeacherStopped`). `teachable.stage.run` ends
    the stage with the one-line message and exit code 2. Messages never hold the API key."""


class TeacherStopped(TeacherConfigError):
    """The teacher cannot go on mid-run; finished work (scratch log, response cache, spend ledger) is kept."""


class BudgetExceeded(TeacherStopped):
    """The next call would pass `max_calls` or `max_usd`, counted over every run (the ledger on disk)."""


class TeacherUnavailable(TeacherStopped):
    """Asking again will not help: authentication, permission, an unknown model, an exhausted quota, or
    `max_consecutive_failures` calls in a row that got no answer (timeouts, connection or server errors)."""


class TooManyFallbacks(TeacherStopped):
    """More than `max_fallback_fraction` of the answers so far were unusable (after a minimum number of answers)."""


class UnusableAnswer(RuntimeError):
    """The teacher's answer could not be used after every retry: the caller falls back (counted)."""
