"""A teacher behind the OpenAI API (or any OpenAI-compatible server, via `base_url`).

Structured outputs: the reply schema restricts `suggested_action` to the state's valid actions. Replies are cached
on disk by a hash of the request, so a rerun costs nothing; a ledger counts calls, tokens and dollars against a
hard budget. An answer that is unusable (an action outside the valid ones, malformed JSON, a refusal, a server
error after the client's own retries) is retried, then recorded `valid: false` and handled by the caller.
The API key is read from OPENAI_API_KEY and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Literal

import openai
from pydantic import BaseModel, StringConstraints, ValidationError, create_model

from teachable.policy.candidates import is_open
from teachable.teacher.base import Advice

log = logging.getLogger(__name__)

SYSTEM = (
    "You are a teacher for an agent acting in a text environment. Given the mission, what the agent sees and the "
    "action it chose, return the best next action (one of the valid actions), a 1-2 sentence diagnosis of the "
    "situation, a hint that helps without naming the action, and a one-sentence contrast between the agent's action "
    "and yours. No step-by-step reasoning."
)


class TeacherConfigError(RuntimeError):
    """The teacher cannot start (e.g. no API key); raised before any work."""


class BudgetExceeded(RuntimeError):
    """The next call would pass `max_calls` or `max_usd`; finished work is kept, the stage stops."""


class UnusableAnswer(RuntimeError):
    """The teacher's answer could not be used after every retry."""


def action_type(valid_actions: list[str]):
    """The valid actions as a schema type: an enum, and for an open action (`search[...]`) a string pattern."""
    concrete = [a for a in valid_actions if not is_open(a)]
    kinds = sorted({a.split("[", 1)[0] for a in valid_actions if is_open(a)})
    if not kinds:
        return Literal[tuple(valid_actions)]
    filled = Annotated[str, StringConstraints(pattern=rf"^({'|'.join(kinds)})\[[^\]]+\]$")]
    return filled if not concrete else Literal[tuple(concrete)] | filled


def reply_model(valid_actions: list[str]) -> type[BaseModel]:
    return create_model(
        "TeacherReply",
        suggested_action=(action_type(valid_actions), ...),
        diagnosis=(str, ...),
        hint=(str, ...),
        contrast=(str, ...),
    )


class OpenAITeacher:
    def __init__(self, params, cache_dir: str | Path = ".cache/teacher"):
        if not os.environ.get("OPENAI_API_KEY"):
            raise TeacherConfigError(
                "teacher.name is 'openai' but OPENAI_API_KEY is not set; export it (or choose teacher.name: oracle)"
            )
        self.params = params
        self.name = f"openai:{params.model}"
        self.client = openai.OpenAI(base_url=params.base_url, max_retries=params.client_retries,
                                    timeout=params.timeout_s)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = {"calls": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0,
                       "retries": 0, "invalid": 0}

    def _request(self, env, student_action: str | None) -> dict:
        user = (f"Mission: {env.mission}\nThe agent sees: {env.observation}\n"
                f"Valid actions: {', '.join(env.valid_actions())}\nThe agent chose: {student_action or 'nothing yet'}")
        return {"model": self.params.model, "temperature": self.params.temperature,
                "max_tokens": self.params.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}

    def _call(self, request: dict, schema: type[BaseModel]) -> dict:
        p = self.params
        if self.ledger["calls"] >= p.max_calls or self.ledger["usd"] >= p.max_usd:
            raise BudgetExceeded(f"teacher budget reached: {self.ledger['calls']} calls, ${self.ledger['usd']:.4f} "
                                 f"(max_calls={p.max_calls}, max_usd={p.max_usd})")
        self.ledger["calls"] += 1
        completion = self.client.chat.completions.parse(response_format=schema, **request)
        usage = completion.usage
        if usage is not None:
            self.ledger["prompt_tokens"] += usage.prompt_tokens
            self.ledger["completion_tokens"] += usage.completion_tokens
            self.ledger["usd"] += (usage.prompt_tokens * p.usd_per_mtok_in + usage.completion_tokens
                                   * p.usd_per_mtok_out) / 1e6
        message = completion.choices[0].message
        if message.refusal or message.parsed is None:
            raise UnusableAnswer(f"refusal: {message.refusal}")
        return message.parsed.model_dump()

    def advise(self, env, student_action: str | None) -> Advice:
        schema = reply_model(env.valid_actions())
        request = self._request(env, student_action)
        key = hashlib.sha256(json.dumps({**request, "base_url": str(self.params.base_url),
                                         "schema": schema.model_json_schema()}, sort_keys=True).encode()).hexdigest()
        cached = self.cache_dir / f"{key}.json"
        if cached.exists():
            self.ledger["cached"] += 1
            return Advice.model_validate_json(cached.read_text())
        error = None
        for attempt in range(1 + self.params.retries):
            self.ledger["retries"] += attempt > 0
            try:
                advice = Advice(**self._call(request, schema), source=self.name, valid=True)
                cached.write_text(advice.model_dump_json())
                return advice
            except (ValidationError, ValueError, UnusableAnswer, openai.OpenAIError) as err:
                error = err
                log.warning("teacher answer unusable (attempt %d): %s", attempt + 1, type(err).__name__)
        self.ledger["invalid"] += 1
        raise UnusableAnswer(str(error)[:200])
