"""Teachers: advice at a state (suggested action, diagnosis, hint, contrast). `oracle` is
offline."""

from __future__ import annotations

from teachable.teacher.base import Advice, Teacher, TooManyFallbacks, UnusableAnswer
from teachable.teacher.oracle import OracleTeacher

# fresh answers before `max_fallback_fraction` is enforced: one early failure never stops a run
MIN_ANSWERS = 10


class FallbackTeacher:
    """Asks the primary teacher; an unusable answer becomes oracle advice marked `valid: false`, or
    None (drop).

    Fallbacks are capped: once more than `max_fallback_fraction` of the primary's fresh answers so
    far (cached ones left out, at least `min_answers` of them) were unusable, `TooManyFallbacks`
    stops the stage, so that a paid run never silently becomes an oracle run."""

    def __init__(
        self,
        primary,
        on_invalid: str,
        max_fallback_fraction: float = 1.0,
        min_answers: int = MIN_ANSWERS,
    ):
        self.primary, self.on_invalid, self.name = primary, on_invalid, primary.name
        self.max_fallback_fraction, self.min_answers = max_fallback_fraction, min_answers
        self.oracle = OracleTeacher()

    @property
    def ledger(self) -> dict:
        return getattr(self.primary, "ledger", {})

    def _check_fallbacks(self, last: str | None) -> None:
        n, bad = self.ledger.get("answers", 0), self.ledger.get("invalid", 0)
        if n >= self.min_answers and bad > self.max_fallback_fraction * n:
            raise TooManyFallbacks(
                f"teacher: {bad} of the {n} answers so far from {self.name} ({bad / n:.0%}) "
                "were unusable (an action outside the valid ones, malformed JSON, a refusal), "
                f"more than teacher.max_fallback_fraction={self.max_fallback_fraction:g}"
                + (f"; the last: {last[:120]}" if last else "")
                + "; check the model and its server, or raise teacher.max_fallback_fraction"
            )

    def advise(self, env, student_action):
        try:
            advice = self.primary.advise(env, student_action)
        except UnusableAnswer as err:
            self._check_fallbacks(str(err))
            if self.on_invalid == "drop":
                return None
            fallback = self.oracle.advise(env, student_action)
            return fallback.model_copy(update={"valid": False, "source": f"{self.name}->oracle"})
        self._check_fallbacks(None)
        return advice


def make_teacher(params) -> Teacher:
    """The teacher named by `teacher.name`. The OpenAI one checks its key, the server and the model
    here (a pre-flight request), before any work: a `TeacherConfigError` names the cause."""
    if params.name == "oracle":
        return OracleTeacher()
    from teachable.teacher.openai_teacher import OpenAITeacher

    return FallbackTeacher(OpenAITeacher(params), params.on_invalid, params.max_fallback_fraction)


__all__ = ["Advice", "FallbackTeacher", "OracleTeacher", "Teacher", "make_teacher"]
