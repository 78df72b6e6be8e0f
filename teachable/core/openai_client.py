"""A model behind the OpenAI API (or any OpenAI-compatible server, via `base_url`): the client, a
spend ledger and budget, a pre-flight check and the key kept out of everything written. Shared by
the OpenAI teacher (`teachable.teacher.openai_teacher`) and the retail environment's LLM user
(`teachable.envs.retail.llm_user`).

The API key is read from OPENAI_API_KEY and never written anywhere: not in a cache, the ledger, logs
or messages (server text quoted in a message is scrubbed of it). In `core` because both an
environment and a teacher use it; the errors a paid model raises live here too
(`teachable.teacher.base` re-exports them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import openai

log = logging.getLogger(__name__)


class TeacherConfigError(RuntimeError):
    """The teacher cannot be used as configured: no key, a wrong key, an unreachable server, an
    unknown model (raised when the teacher is made, before any work), or a stop mid-run
    (`TeacherStopped`). `teachable.stage.run` ends the stage with the one-line message and exit
    code 2. Messages never hold the API key."""


class TeacherStopped(TeacherConfigError):
    """The teacher cannot go on mid-run; finished work (scratch log, response cache, spend ledger)
    is kept."""


class BudgetExceeded(TeacherStopped):
    """The next call would pass `max_calls` or `max_usd`, counted over every run (the ledger on
    disk)."""


class TeacherUnavailable(TeacherStopped):
    """Asking again will not help: authentication, permission, an unknown model, an exhausted quota,
    or `max_consecutive_failures` calls in a row that got no answer (timeouts, connection or server
    errors)."""


LEDGER_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "usd")
_SECRET_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}|(?<=Bearer )\S+")


def redact(text: str) -> str:
    """`text` without the API key (nor anything shaped like one): for server text quoted in messages
    and logs."""
    key = os.environ.get("OPENAI_API_KEY") or ""
    if len(key) >= 4:
        text = text.replace(key, "***")
    return _SECRET_LIKE.sub("***", text)


def public_url(url: str) -> str:
    """A base URL fit for messages and files: no user:password@, no query (some servers take a key
    there)."""
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
    """A call that got no answer: timeout, connection, server error, rate limit (after the client's
    retries)."""
    if isinstance(err, openai.APIConnectionError):
        return True
    if isinstance(err, openai.RateLimitError):
        return not quota_exhausted(err)
    return isinstance(err, openai.APIStatusError) and (
        err.status_code in (408, 409) or err.status_code >= 500
    )


def quota_exhausted(err: Exception) -> bool:
    return (
        isinstance(err, openai.RateLimitError)
        and "insufficient_quota" in f"{err.code} {err.type} {err.message}"
    )


def permanent(err: Exception) -> bool:
    """An error that asking again will not cure."""
    return isinstance(
        err, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
    ) or quota_exhausted(err)


def reported_usage(reply) -> tuple[int, int] | None:
    """(prompt, completion) tokens a reply reports: a completion's `usage`, or for a raw response
    (metered before its content is parsed, which may fail) the `usage` of its JSON body. None where
    it reports none."""
    usage = getattr(reply, "usage", None)
    if usage is not None:
        return int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
    http = getattr(reply, "http_response", None)
    try:
        usage = http.json()["usage"]
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (AttributeError, ValueError, KeyError, TypeError):
        return None


def write_atomic(path: Path, text: str) -> None:
    """A kill mid-write leaves the old file (or none), never a torn one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class OpenAIClient:
    """A model behind the OpenAI-compatible client, with a spend ledger, a budget and a pre-flight
    check. `role` names it in messages and logs ("teacher"), `section` the params section its
    settings are in ("teacher"); `missing_key` is the message when OPENAI_API_KEY is not set (raised
    before anything else)."""

    role, section = "teacher", "teacher"
    missing_key = "OPENAI_API_KEY is not set"

    def __init__(self, params, cache_dir: str | Path = ".cache/teacher", preflight: bool = True):
        if not os.environ.get("OPENAI_API_KEY"):
            raise TeacherConfigError(self.missing_key)
        self.params = params
        self.name = f"openai:{params.model}"
        self.client = openai.OpenAI(
            base_url=params.base_url, max_retries=params.client_retries, timeout=params.timeout_s
        )
        self.where = public_url(str(self.client.base_url))
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # This run's counts (answers: fresh answers, usable or not; invalid: the unusable ones)
        self.counts = {
            "calls": 0,
            "cached": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "usd": 0.0,
            "retries": 0,
            "invalid": 0,
            "answers": 0,
            "no_answer": 0,
        }
        # What every run against this model and server has spent: the budget counts this
        digest = hashlib.sha256(json.dumps([params.model, self.where]).encode()).hexdigest()[:16]
        self.ledger_path = self.cache_dir / f"ledger-{digest}.json"
        self.spent = self._load_ledger()
        self.failures_in_a_row = 0
        log.info(
            "%s %s at %s: %d calls, $%.4f spent over earlier runs (max_calls=%d, max_usd=%s; %s)",
            self.role,
            params.model,
            self.where,
            self.spent["calls"],
            self.spent["usd"],
            params.max_calls,
            params.max_usd,
            self.ledger_path,
        )
        if preflight:
            self.preflight()

    @property
    def ledger(self) -> dict:
        return {
            **self.counts,
            "spent_calls": self.spent["calls"],
            "spent_usd": round(self.spent["usd"], 6),
        }

    # --- the spend ledger -------------------------------------------------------------------------

    def _load_ledger(self) -> dict:
        ledger = {
            "model": self.params.model,
            "base_url": self.where,
            **dict.fromkeys(LEDGER_FIELDS, 0),
        }
        ledger["usd"] = 0.0
        if not self.ledger_path.exists():
            return ledger
        try:
            stored = json.loads(self.ledger_path.read_text())
            return {**ledger, **{k: type(ledger[k])(stored[k]) for k in LEDGER_FIELDS}}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise TeacherConfigError(
                f"{self.role}: the spend ledger {self.ledger_path} is unreadable "
                f"({type(err).__name__}); it holds the budget spent over earlier runs: "
                "repair or delete it"
            ) from None

    def _save_ledger(self) -> None:
        write_atomic(self.ledger_path, json.dumps(self.spent, indent=1))

    # --- the response cache and calls that got no answer ------------------------------------------

    def _cache_file(self, request: dict, **extra) -> Path:
        """Where the answer to `request` sent to this server is kept (`extra`: whatever else decides
        the answer, e.g. the reply schema)."""
        key = json.dumps(
            {**request, "base_url": str(self.params.base_url), **extra}, sort_keys=True
        )
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def _count_no_answer(self, err: Exception) -> None:
        """A call that got no answer (timeout, connection or server error): counted, and the stage
        stops once `max_consecutive_failures` calls in a row got none."""
        p = self.params
        self.counts["no_answer"] += 1
        self.failures_in_a_row += 1
        log.warning(
            "%s: no answer (%s), %d call(s) in a row",
            self.role,
            type(err).__name__,
            self.failures_in_a_row,
        )
        if self.failures_in_a_row >= p.max_consecutive_failures:
            raise TeacherUnavailable(
                f"{self._stop_message(err)} ({self.failures_in_a_row} calls in a row got no "
                f"answer: {self.section}.max_consecutive_failures={p.max_consecutive_failures})"
            ) from None

    def _metered(self, send):
        """One call to the server, within the budget; counted in the ledger (on disk) whatever its
        outcome."""
        p = self.params
        if self.spent["calls"] >= p.max_calls or self.spent["usd"] >= p.max_usd:
            raise BudgetExceeded(
                f"{self.role} budget reached: {self.spent['calls']} calls, "
                f"${self.spent['usd']:.4f} spent on {p.model} at {self.where} "
                f"over all runs (max_calls={p.max_calls}, max_usd={p.max_usd}); "
                f"raise {self.section}.max_calls / {self.section}.max_usd to go on (the "
                f"ledger is {self.ledger_path}; deleting it resets the count)"
            )
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
                log.warning(
                    "%s: %s reported no token usage for a call: counted, but not its cost",
                    self.role,
                    self.where,
                )
            self._save_ledger()

    # --- errors that stop the stage ---------------------------------------------------------------

    def _stop_message(self, err: Exception) -> str:
        """One line naming the cause of an error asking again will not cure (or of calls that got no
        answer)."""
        p, where, r, sec = self.params, self.where, self.role, self.section
        if isinstance(err, openai.AuthenticationError):
            return f"{r}: authentication failed at {where} (401): check OPENAI_API_KEY"
        if isinstance(err, openai.PermissionDeniedError):
            return (
                f"{r}: permission denied at {where} (403) for model '{p.model}': "
                f"check that OPENAI_API_KEY may use it ({server_says(err)})"
            )
        if isinstance(err, openai.NotFoundError):
            return (
                f"{r}: {where} answered 404 for model '{p.model}' ({server_says(err)}): an unknown "
                f"model, or a base_url without its /v1; check {sec}.model and {sec}.base_url"
            )
        if quota_exhausted(err):
            return (
                f"{r}: the quota at {where} is exhausted (429 insufficient_quota): "
                "check the account's billing"
            )
        if isinstance(err, openai.APITimeoutError):
            return (
                f"{r}: no answer from {where} within timeout_s={p.timeout_s:g}s "
                f"({1 + p.client_retries} tries a call): is the server up and serving '{p.model}'?"
            )
        if isinstance(err, openai.APIConnectionError):
            cause = redact(str(err.__cause__ or err))[:120]
            return (
                f"{r}: cannot connect to {where} ({cause}): is the server up? check {sec}.base_url"
            )
        if isinstance(err, openai.APIStatusError):
            return f"{r}: {where} answered {err.status_code} ({server_says(err)})"
        return f"{r}: {type(err).__name__} at {where}: {redact(str(err))[:160]}"

    def preflight(self) -> None:
        """A cheap check before any work: the key is accepted, the server reachable, the model
        known.

        `GET /models/{model}` first. A 404 that names the model means an unknown model; a 404 that
        does not may be a server without that route (vLLM, llama.cpp): then the model list, and if
        the model is not in it (or there is no list), a one-token chat request (counted in the
        ledger) decides. Server errors and rate limits here only warn: the run's own calls decide
        (`max_consecutive_failures`)."""
        p = self.params
        try:
            self.client.models.retrieve(p.model)
            return
        except openai.NotFoundError as err:
            said = server_says(err)
            if (
                getattr(err, "code", None) == "model_not_found"
                or getattr(err, "param", None) == "model"
                or (p.model in said and "/models/" not in said)
            ):
                raise TeacherConfigError(
                    f"{self.role}: unknown model '{p.model}' at {self.where} (404: {said}); "
                    f"check {self.section}.model"
                ) from None
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
            self._metered(
                lambda: self.client.chat.completions.create(
                    model=p.model,
                    max_tokens=1,
                    messages=[{"role": "user", "content": "Reply with OK."}],
                )
            )
        except openai.NotFoundError as err:
            if available is None:
                raise TeacherConfigError(
                    f"{self.role}: {self.where} answered 404 to model '{p.model}', "
                    f"to the model list and to a chat request ({server_says(err)}): "
                    f"check {self.section}.base_url (does it end in /v1?) and {self.section}.model"
                ) from None
            raise TeacherConfigError(
                f"{self.role}: unknown model '{p.model}' at {self.where} (404); it serves: "
                f"{', '.join(available[:10]) or 'nothing'}; check {self.section}.model"
            ) from None
        except openai.OpenAIError as err:
            self._preflight_failed(err)
            return
        log.info(
            "%s: %s serves '%s' (checked with a one-token request: it lists no such model)",
            self.role,
            self.where,
            p.model,
        )

    def _preflight_failed(self, err: Exception) -> None:
        if permanent(err) or isinstance(err, openai.APIConnectionError):
            raise TeacherConfigError(self._stop_message(err)) from None
        log.warning(
            "%s pre-flight check at %s inconclusive (%s: %s); going on",
            self.role,
            self.where,
            type(err).__name__,
            server_says(err),
        )
