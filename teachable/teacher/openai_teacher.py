"""A teacher behind the OpenAI API (or any OpenAI-compatible server, via `base_url`).

Structured outputs: the reply schema restricts `suggested_action` to the state's valid actions.
Replies are cached on disk by a hash of the request, so a rerun costs nothing.

What can go wrong, and what happens:
- Errors that asking again will not cure (a wrong key: 401/403, an unknown model or a wrong
  base_url: 404, an exhausted quota, a server that cannot be reached) stop the stage: found by a
  pre-flight check when the teacher is made, before any work, and raised (never a fallback) if they
  happen mid-run.
- A call that gets no answer (timeout, connection or server error, rate limit, after the client's
  own retries) is asked again; `max_consecutive_failures` of them in a row stop the stage. Never a
  fallback: it says nothing about the state.
- An answer that is unusable (an action outside the valid ones, malformed JSON, a refusal, a request
  the server rejects) is asked again up to `retries` times, then raises `UnusableAnswer`: the caller
  falls back (counted, capped by `max_fallback_fraction`, see `teachable.teacher.FallbackTeacher`).
- A ledger on disk beside the cache (calls, tokens, dollars; per model and server, over every run)
  is counted against `max_calls` / `max_usd`, a hard budget. Every paid call is charged the usage
  its reply reports, an unusable answer too.

The API key is read from OPENAI_API_KEY and never written anywhere: not in the cache, the ledger,
logs or messages (server text quoted in a message is scrubbed of it).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Literal

import openai
from pydantic import BaseModel, StringConstraints, ValidationError, create_model

from teachable.envs.toolcall import is_call
from teachable.policy.candidates import is_open
from teachable.teacher.base import (  # noqa: F401  (re-exported: stages import them from here)
    Advice,
    BudgetExceeded,
    TeacherConfigError,
    TeacherStopped,
    TeacherUnavailable,
    TooManyFallbacks,
    UnusableAnswer,
)
from teachable.core.openai_client import (  # noqa: F401  (re-exported)
    LEDGER_FIELDS,
    OpenAIClient,
    no_answer,
    permanent,
    public_url,
    quota_exhausted,
    redact,
    reported_usage,
    server_says,
    write_atomic,
)

log = logging.getLogger(__name__)

SYSTEM = (
    "You are a teacher for an agent acting in a text environment. Given the mission, what the "
    "agent sees and the action it chose, return the best next action (one of the valid actions), "
    "a 1-2 sentence diagnosis of the situation, a hint that helps without naming the action, and "
    "a one-sentence contrast between the agent's action and yours. No step-by-step reasoning."
)


def action_type(valid_actions: list[str]):
    """The valid actions as a schema type: an enum, and for an open action (`search[...]`, or a call
    template such as `respond(content="...")`) a string pattern."""
    concrete = [a for a in valid_actions if not is_open(a)]
    kinds = sorted({a.split("[", 1)[0] for a in valid_actions if is_open(a) and not is_call(a)})
    patterns = [rf"({'|'.join(kinds)})\[[^\]]+\]"] if kinds else []
    patterns += [
        re.escape(a).replace(re.escape('"..."'), '".*\\S.*"')
        for a in valid_actions
        if is_open(a) and is_call(a)
    ]
    if not patterns:
        return Literal[tuple(valid_actions)]
    filled = Annotated[str, StringConstraints(pattern=rf"^({'|'.join(patterns)})$")]
    return filled if not concrete else Literal[tuple(concrete)] | filled


def reply_model(valid_actions: list[str]) -> type[BaseModel]:
    return create_model(
        "TeacherReply",
        suggested_action=(action_type(valid_actions), ...),
        diagnosis=(str, ...),
        hint=(str, ...),
        contrast=(str, ...),
    )


class OpenAITeacher(OpenAIClient):
    role, section = "teacher", "teacher"
    missing_key = (
        "teacher.name is 'openai' but OPENAI_API_KEY is not set; "
        "export it (or choose teacher.name: oracle)"
    )

    # --- advice -----------------------------------------------------------------------------------

    def _request(self, env, student_action: str | None) -> dict:
        user = (
            f"Mission: {env.mission}\nThe agent sees: {env.observation}\n"
            f"Valid actions: {', '.join(env.valid_actions())}\n"
            f"The agent chose: {student_action or 'nothing yet'}"
        )
        return {
            "model": self.params.model,
            "temperature": self.params.temperature,
            "max_tokens": self.params.max_tokens,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        }

    def _call(self, request: dict, schema: type[BaseModel]) -> dict:
        """One paid call. The raw reply is metered before it is parsed: parsing an unusable answer
        (garbage, malformed JSON, an action outside the valid ones) raises, and it was once charged
        nothing (issue 33)."""
        raw = self._metered(
            lambda: self.client.chat.completions.with_raw_response.parse(
                response_format=schema, **request
            )
        )
        completion = raw.parse()
        message = completion.choices[0].message
        if message.refusal or message.parsed is None:
            raise UnusableAnswer(f"refusal: {message.refusal}")
        return message.parsed.model_dump()

    def advise(self, env, student_action: str | None) -> Advice:
        p = self.params
        schema = reply_model(env.valid_actions())
        request = self._request(env, student_action)
        cached = self._cache_file(request, schema=schema.model_json_schema())
        if cached.exists():
            self.counts["cached"] += 1
            return Advice.model_validate_json(cached.read_text())
        asks_left, error = 1 + p.retries, None
        while asks_left:
            try:
                advice = Advice(**self._call(request, schema), source=self.name, valid=True)
            except (ValidationError, ValueError, UnusableAnswer, openai.OpenAIError) as err:
                if permanent(err):
                    raise TeacherUnavailable(self._stop_message(err)) from None
                # asked again, without using up a re-ask: it said nothing about the state
                if no_answer(err):
                    self._count_no_answer(err)
                    self.counts["retries"] += 1
                    continue
                self.failures_in_a_row = 0  # an answer came, if not a usable one
                error, asks_left = err, asks_left - 1
                log.warning(
                    "teacher answer unusable (%s: %s)", type(err).__name__, redact(str(err))[:120]
                )
                # the server rejects the request: the same again
                if isinstance(err, openai.APIStatusError):
                    break
                self.counts["retries"] += asks_left > 0
                continue
            self.failures_in_a_row = 0
            self.counts["answers"] += 1
            write_atomic(cached, advice.model_dump_json())
            return advice
        self.counts["answers"] += 1
        self.counts["invalid"] += 1
        raise UnusableAnswer(f"{type(error).__name__}: {redact(str(error))[:200]}")
