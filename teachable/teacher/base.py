"""What a teacher returns at a state, and the protocol every teacher implements."""

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
