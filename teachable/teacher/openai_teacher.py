"""A teacher behind the OpenAI API (or any OpenAI-compatible server, via `base_url`).

Structured outputs: the reply schema restricts `suggested_action` to the state's valid actions. Replies are cached
on disk by a hash of the request, so a rerun costs nothing.

What can go wrong, and what happens:
- Errors that asking again will not cure (a wrong key: 401/403, an unknown model or a wrong base_url: 404, an
  exhausted quota, a server that cannot be reached) stop the stage: found by a pre-flight check when the teacher is
  made, before any work, and raised (never a fallback) if they happen mid-run.
- A call that gets no answer (timeout, connection or server error, rate limit, after the client's own retries) is
  asked again; `max_consecutive_failures` of them in a row stop the stage. Never a fallback: it says nothing
  about the state.
- An answer that is unusable (an action outside the valid ones, malformed JSON, a refusal, a request the server
  rejects) is asked again up to `retries` times, then raises `UnusableAnswer`: the caller falls back (counted,
  capped by `max_fallback_fraction`, see `teachable.teacher.FallbackTeacher`).
- A ledger on disk beside the cache (calls, tokens, dollars; per model and server, over every run) is counted
  against `max_calls` / `max_usd`, a hard budget. Every paid call is charged the usage its reply reports, an
  unusable answer too.

The API key is read from OPENAI_API_KEY and never written anywhere: not in the cache, the ledger, logs or messages
(server text quoted in a message is scrubbed of it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

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

log = logging.getLogger(__name__)

SYSTEM = (
    "You are a teacher for an agent acting in a text environment. Given the mission, what the agent sees and the "
    "action it chose, return the best next action (one of the valid actions), a 1-2 sentence diagnosis of the "
    "situation, a hint that helps without naming the action, and a one-sentence contrast between the agent's action "
    "and yours. No step-by-step reasoning."
)
LEDGER_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "usd")
_SECRET_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}|(?<=Bearer )\S+")


def redact(text: str) -> str:
    """`text` without the API key (nor anything shaped like one): for server text quoted in messages and logs."""
    key = os.environ.get("OPENAI_API_KEY") or ""
    if len(key) >= 4:
        text = text.replace(key, "***")
    return _SECRET_LIKE.sub("***", text)


def public_url(url: str) -> str:
    """A base URL fit for messages and files: no user:password@, no query (some servers take a key there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def server_says(err: Exception) -> str:
    """The server's own words for an error (its `message` / `detail`), scrubbed, short."""
    body = getattr(err, "body", None)
    text = ""
    if isinstance(body, dict):
        text = str(body.get("message") or body.get("detail") or body.get("error") or "")
    elif body:
        text = str(body)
    text = text or getattr(err, "message", "") or str(err)
    return redact(" ".join(text.split()))[:160]


def no_answer(err: Exception) -> bool:
    """A call that got no answer: timeout, connection, server error, rate limit (after the client's retries)."""
    if isinstance(err, openai.APIConnectionError):
        return True
    if isinstance(err, openai.RateLimitError):
        return not quota_exhausted(err)
    return isinstance(err, openai.APIStatusError) and (err.status_code in (408, 409) or err.status_code >= 500)


def quota_exhausted(err: Exception) -> bool:
    return isinstance(err, openai.RateLimitError) and "insufficient_quota" in f"{err.code} {err.type} {err.message}"


def permanent(err: Exception) -> bool:
    """An error that asking again will not cure."""
    return isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)) \
        or quota_exhausted(err)


def reported_usage(reply) -> tuple[int, int] | None:
    """(prompt, completion) tokens a reply reports: a completion's `usage`, or for a raw response (metered before
    its content is parsed, which may fail) the `usage` of its JSON body. None where it reports none."""
    usage = getattr(reply, "usage", None)
    if usage is not None:
        return int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
    http = getattr(reply, "http_response", None)
    try:
        usage = http.json()["usage"]
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (AttributeError, ValueError, KeyError, TypeError):
        return None


def action_type(valid_actions: list[str]):
    """The valid actions as a schema type: an enum, and for an open action (`search[...]`, or a call template such
    as `respond(content="...")`) a string pattern."""
    concrete = [a for a in valid_actions if not is_open(a)]
    kinds = sorted({a.split("[", 1)[0] for a in valid_actions if is_open(a) and not is_call(a)})
    patterns = [rf"({'|'.join(kinds)})\[[^\]]+\]"] if kinds else []
    patterns += [re.escape(a).replace(re.escape('"..."'), '".*\\S.*"') for a in valid_actions
                 if is_open(a) and is_call(a)]
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


class OpenAITeacher:
    def __init__(self, params, cache_dir: str | Path = ".cache/teacher", preflight: bool = True):
        if not os.environ.get("OPENAI_API_KEY"):
            raise TeacherConfigError(
                "teacher.name is 'openai' but OPENAI_API_KEY is not set; export it (or choose teacher.name: oracle)"
            )
        self.params = params
        self.name = f"openai:{params.model}"
        self.client = openai.OpenAI(base_url=params.base_url, max_retries=params.client_retries,
                                    timeout=params.timeout_s)
        self.where = public_url(str(self.client.base_url))
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # This run's counts (answers: fresh answers, usable or not; invalid: the unusable ones)
        self.counts = {"calls": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "usd": 0.0,
                       "retries": 0, "invalid": 0, "answers": 0, "no_answer": 0}
        # What every run against this model and server has spent: the budget counts this
        digest = hashlib.sha256(json.dumps([params.model, self.where]).encode()).hexdigest()[:16]
        self.ledger_path = self.cache_dir / f"ledger-{digest}.json"
        self.spent = self._load_ledger()
        self.failures_in_a_row = 0
        log.info("teacher %s at %s: %d calls, $%.4f spent over earlier runs (max_calls=%d, max_usd=%s; %s)",
                 params.model, self.where, self.spent["calls"], self.spent["usd"], params.max_calls,
                 params.max_usd, self.ledger_path)
        if preflight:
            self.preflight()

    @property
    def ledger(self) -> dict:
        return {**self.counts, "spent_calls": self.spent["calls"], "spent_usd": round(self.spent["usd"], 6)}

    # --- the spend ledger ------------------------------------------------------------------------------------

    def _load_ledger(self) -> dict:
        ledger = {"model": self.params.model, "base_url": self.where, **dict.fromkeys(LEDGER_FIELDS, 0)}
        ledger["usd"] = 0.0
        if not self.ledger_path.exists():
            return ledger
        try:
            stored = json.loads(self.ledger_path.read_text())
            return {**ledger, **{k: type(ledger[k])(stored[k]) for k in LEDGER_FIELDS}}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise TeacherConfigError(f"teacher: the spend ledger {self.ledger_path} is unreadable "
                                     f"({type(err).__name__}); it holds the budget spent over earlier runs: "
                                     "repair or delete it") from None

    def _save_ledger(self) -> None:
        """Atomically: a kill mid-write leaves the old ledger, never a torn one."""
        tmp = self.ledger_path.with_name(f"{self.ledger_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.spent, indent=1))
        os.replace(tmp, self.ledger_path)

    def _metered(self, send):
        """One call to the server, within the budget; counted in the ledger (on disk) whatever its outcome."""
        p = self.params
        if self.spent["calls"] >= p.max_calls or self.spent["usd"] >= p.max_usd:
            raise BudgetExceeded(
                f"teacher budget reached: {self.spent['calls']} calls, ${self.spent['usd']:.4f} spent on {p.model} at "
                f"{self.where} over all runs (max_calls={p.max_calls}, max_usd={p.max_usd}); raise teacher.max_calls "
                f"/ teacher.max_usd to go on (the ledger is {self.ledger_path}; deleting it resets the count)")
        self.spent["calls"] += 1
        self.counts["calls"] += 1
        reply = None
        try:
            reply = send()
            return reply
        finally:
            tokens = reported_usage(reply)
            if tokens is not None:
                usd = (tokens[0] * p.usd_per_mtok_in + tokens[1] * p.usd_per_mtok_out) / 1e6
                for ledger in (self.spent, self.counts):
                    ledger["prompt_tokens"] += tokens[0]
                    ledger["completion_tokens"] += tokens[1]
                    ledger["usd"] += usd
            elif reply is not None:
                log.warning("teacher: %s reported no token usage for a call: counted, but not its cost", self.where)
            self._save_ledger()

    # --- errors that stop the stage ------------------------------------------------------------------------------

    def _stop_message(self, err: Exception) -> str:
        """One line naming the cause of an error asking again will not cure (or of calls that got no answer)."""
        p, where = self.params, self.where
        if isinstance(err, openai.AuthenticationError):
            return f"teacher: authentication failed at {where} (401): check OPENAI_API_KEY"
        if isinstance(err, openai.PermissionDeniedError):
            return (f"teacher: permission denied at {where} (403) for model '{p.model}': check that OPENAI_API_KEY "
                    f"may use it ({server_says(err)})")
        if isinstance(err, openai.NotFoundError):
            return (f"teacher: {where} answered 404 for model '{p.model}' ({server_says(err)}): an unknown model, "
                    "or a base_url without its /v1; check teacher.model and teacher.base_url")
        if quota_exhausted(err):
            return f"teacher: the quota at {where} is exhausted (429 insufficient_quota): check the account's billing"
        if isinstance(err, openai.APITimeoutError):
            return (f"teacher: no answer from {where} within timeout_s={p.timeout_s:g}s "
                    f"({1 + p.client_retries} tries a call): is the server up and serving '{p.model}'?")
        if isinstance(err, openai.APIConnectionError):
            cause = redact(str(err.__cause__ or err))[:120]
            return f"teacher: cannot connect to {where} ({cause}): is the server up? check teacher.base_url"
        if isinstance(err, openai.APIStatusError):
            return f"teacher: {where} answered {err.status_code} ({server_says(err)})"
        return f"teacher: {type(err).__name__} at {where}: {redact(str(err))[:160]}"

    def preflight(self) -> None:
        """A cheap check before any work: the key is accepted, the server reachable, the model known.

        `GET /models/{model}` first. A 404 that names the model means an unknown model; a 404 that does not may be
        a server without that route (vLLM, llama.cpp): then the model list, and if the model is not in it (or
        there is no list), a one-token chat request (counted in the ledger) decides. Server errors and rate
        limits here only warn: the run's own calls decide (`max_consecutive_failures`)."""
        p = self.params
        try:
            self.client.models.retrieve(p.model)
            return
        except openai.NotFoundError as err:
            said = server_says(err)
            if getattr(err, "code", None) == "model_not_found" or getattr(err, "param", None) == "model" \
                    or (p.model in said and "/models/" not in said):
                raise TeacherConfigError(f"teacher: unknown model '{p.model}' at {self.where} (404: {said}); "
                                         "check teacher.model") from None
        except openai.OpenAIError as err:
            self._preflight_failed(err)
            return
        available = None
        try:
            available = [m.id for m in self.client.models.list()]
        except openai.NotFoundError:
            pass
        except openai.OpenAIError as err:
            self._preflight_failed(err)
        if available is not None and p.model in available:
            return
        try:
            self._metered(lambda: self.client.chat.completions.create(
                model=p.model, max_tokens=1, messages=[{"role": "user", "content": "Reply with OK."}]))
        except openai.NotFoundError as err:
            if available is None:
                raise TeacherConfigError(
                    f"teacher: {self.where} answered 404 to model '{p.model}', to the model list and to a chat "
                    f"request ({server_says(err)}): check teacher.base_url (does it end in /v1?) and teacher.model"
                ) from None
            raise TeacherConfigError(f"teacher: unknown model '{p.model}' at {self.where} (404); it serves: "
                                     f"{', '.join(available[:10]) or 'nothing'}; check teacher.model") from None
        except openai.OpenAIError as err:
            self._preflight_failed(err)
            return
        log.info("teacher: %s serves '%s' (checked with a one-token request: it lists no such model)",
                 self.where, p.model)

    def _preflight_failed(self, err: Exception) -> None:
        if permanent(err) or isinstance(err, openai.APIConnectionError):
            raise TeacherConfigError(self._stop_message(err)) from None
        log.warning("teacher pre-flight check at %s inconclusive (%s: %s); going on", self.where,
                    type(err).__name__, server_says(err))

    # --- advice --------------------------------------------------------------------------------------------------

    def _request(self, env, student_action: str | None) -> dict:
        user = (f"Mission: {env.mission}\nThe agent sees: {env.observation}\n"
                f"Valid actions: {', '.join(env.valid_actions())}\nThe agent chose: {student_action or 'nothing yet'}")
        return {"model": self.params.model, "temperature": self.params.temperature,
                "max_tokens": self.params.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}

    def _call(self, request: dict, schema: type[BaseModel]) -> dict:
        """One paid call. The raw reply is metered before it is parsed: parsing an unusable answer (garbage,
        malformed JSON, an action outside the valid ones) raises, and it was once charged nothing (issue 33)."""
        raw = self._metered(lambda: self.client.chat.completions.with_raw_response.parse(response_format=schema,
                                                                                         **request))
        completion = raw.parse()
        message = completion.choices[0].message
        if message.refusal or message.parsed is None:
            raise UnusableAnswer(f"refusal: {message.refusal}")
        return message.parsed.model_dump()

    def advise(self, env, student_action: str | None) -> Advice:
        p = self.params
        schema = reply_model(env.valid_actions())
        request = self._request(env, student_action)
        key = hashlib.sha256(json.dumps({**request, "base_url": str(p.base_url),
                                         "schema": schema.model_json_schema()}, sort_keys=True).encode()).hexdigest()
        cached = self.cache_dir / f"{key}.json"
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
                if no_answer(err):  # asked again, without using up a re-ask: it said nothing about the state
                    self.counts["no_answer"] += 1
                    self.failures_in_a_row += 1
                    log.warning("teacher: no answer (%s), %d call(s) in a row", type(err).__name__,
                                self.failures_in_a_row)
                    if self.failures_in_a_row >= p.max_consecutive_failures:
                        raise TeacherUnavailable(
                            f"{self._stop_message(err)} ({self.failures_in_a_row} calls in a row got no answer: "
                            f"teacher.max_consecutive_failures={p.max_consecutive_failures})") from None
                    self.counts["retries"] += 1
                    continue
                self.failures_in_a_row = 0  # an answer came, if not a usable one
                error, asks_left = err, asks_left - 1
                log.warning("teacher answer unusable (%s: %s)", type(err).__name__, redact(str(err))[:120])
                if isinstance(err, openai.APIStatusError):  # the server rejects the request: the same again
                    break
                self.counts["retries"] += asks_left > 0
                continue
            self.failures_in_a_row = 0
            self.counts["answers"] += 1
            tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            tmp.write_text(advice.model_dump_json())
            os.replace(tmp, cached)
            return advice
        self.counts["answers"] += 1
        self.counts["invalid"] += 1
        raise UnusableAnswer(f"{type(error).__name__}: {redact(str(error))[:200]}")
