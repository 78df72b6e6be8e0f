"""The offline, deterministic teacher: the environment's expert action, with text written from the
true state."""

from __future__ import annotations

from teachable.teacher.base import Advice


class OracleTeacher:
    name = "oracle"

    def advise(self, env, student_action: str | None) -> Advice:
        action = env.expert_action()
        where = env.target_hint()
        if student_action and student_action != action:
            contrast = (
                f"'{student_action}' does not bring you closer to the mission; '{action}' does."
            )
            diagnosis = f"{where} Choosing '{student_action}' here delays the mission."
        else:
            contrast = f"'{action}' is the step that brings you closer to the mission."
            diagnosis = where
        return Advice(
            suggested_action=action,
            diagnosis=diagnosis,
            hint=where,
            contrast=contrast,
            source="oracle",
        )
