"""retail.user: llm, tau-bench's way of playing the customer: a model behind the OpenAI-compatible
client plays the task's instruction, one message per agent message, and ends the conversation by
writing ###STOP###.

The model sees a system prompt (below, this project's own wording) with the instruction: play this
customer, say only what is asked for or needed, never invent facts, follow the instruction's
conditions and changes of mind, and write ###STOP### once done. The agent's messages are its "user"
turns, its own replies its "assistant" turns; tool calls are never shown to it. Its opening message
(to the agent's greeting) is the episode's mission.

The environment reads from each reply the facts it tracks: the identity (the user's email, or last
name and zip, as the task identifies the user), an order id of the database ("#W1234567", with or
without the '#'), a yes to a confirmation ("yes", "sure", "ok", "correct", "go ahead" at its start)
and the end (###STOP###).

Every call goes through `LLMUserClient`, the OpenAI teacher's client
(`teachable.core.openai_client`): its pre-flight check when the environment is configured, its spend
ledger and budget (section retail.user_llm), and a disk cache keyed by the whole request, which also
makes a conversation replay (a state restored by its actions) get the same replies. A missing
OPENAI_API_KEY fails when the environment is configured, before any work.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import openai

from teachable.envs.retail.tasks import Task
from teachable.envs.retail.user import CONFIRM, Reply
from teachable.core.openai_client import TeacherUnavailable
from teachable.core.openai_client import OpenAIClient, no_answer, permanent, write_atomic

log = logging.getLogger(__name__)

GREETING = "Hi! How can I help you today?"
STOP = "###STOP###"
PROMPT = (
    "You are role-playing a customer chatting with an online shop's support agent. "
    "This is who you are and what you want:\n\n{instruction}\n\n"
    "How to play:\n"
    "- Write only the customer's next chat message: short, plain, in the first person.\n"
    "- Do not volunteer details. Give your name, zip code, email, order ids or other facts only "
    "when the agent asks for them or the request cannot go on without them, and never make up "
    "a fact the description above does not give (if you do not know something, say so).\n"
    "- Ask for what you want a step at a time, and keep to the description: "
    "its conditions, preferences and changes of mind.\n"
    "- When what you came for is done, or cannot be done, write {stop} "
    "(alone, or at the end of your message)."
)
_ORDER_ID = re.compile(r"#?\bW(\d{7})\b")
_YES = re.compile(
    r"^\W*(yes|yeah|yep|sure|ok|okay|correct|right|please do|please proceed|go ahead)\b", re.I
)


class LLMUserClient(OpenAIClient):
    role, section = "retail user", "retail.user_llm"
    missing_key = (
        "retail.user is 'llm' but OPENAI_API_KEY is not set; export it (or choose retail.user: "
        "scripted)"
    )

    def __init__(
        self, params, cache_dir: str | Path = ".cache/retail_user", preflight: bool = True
    ):
        super().__init__(params, cache_dir, preflight)

    def say(self, messages: list[dict]) -> str:
        """The model's next message after these (cached on disk by the whole request)."""
        p = self.params
        request = {
            "model": p.model,
            "temperature": p.temperature,
            "max_tokens": p.max_tokens,
            "messages": messages,
        }
        cached = self._cache_file(request)
        if cached.exists():
            self.counts["cached"] += 1
            return json.loads(cached.read_text())["content"]
        while True:
            try:
                completion = self._metered(lambda: self.client.chat.completions.create(**request))
                content = completion.choices[0].message.content or ""
            except openai.OpenAIError as err:
                if permanent(err) or not no_answer(err):
                    raise TeacherUnavailable(self._stop_message(err)) from None
                self._count_no_answer(err)
                continue
            self.failures_in_a_row = 0
            self.counts["answers"] += 1
            write_atomic(cached, json.dumps({"content": content}))
            return content


def instruction_of(task: Task, user: dict) -> str:
    """What the model plays: a loaded task's own instruction; for a generated task, who the user is,
    its request and the order ids it knows."""
    if task.instruction:
        return task.instruction
    name = user["name"]
    text = (
        f"Your name is {name['first_name']} {name['last_name']}, your zip code is "
        f"{user['address']['zip']} and your email is {user['email']}. {task.request}"
    )
    if task.known_orders:
        text += (
            f" Your order id{'s are' if len(task.known_orders) > 1 else ' is'} "
            f"{', '.join(task.known_orders)}."
        )
    return text


class LLMUser:
    """The customer, played by a model; `reply` has `ScriptedUser.reply`'s signature and answer
    type."""

    def __init__(self, task: Task, user: dict, client: LLMUserClient):
        self.task, self.user, self.client = task, user, client
        self.messages = [
            {
                "role": "system",
                "content": PROMPT.format(instruction=instruction_of(task, user), stop=STOP),
            }
        ]
        self.opening = self._turn(GREETING).replace(STOP, "").strip()

    def _turn(self, agent_says: str) -> str:
        self.messages.append({"role": "user", "content": agent_says})
        text = self.client.say(self.messages)
        self.messages.append({"role": "assistant", "content": text})
        return text

    def fork(self) -> LLMUser:
        twin = object.__new__(LLMUser)
        twin.__dict__.update(self.__dict__, messages=list(self.messages))
        return twin

    def _identity(self, text: str) -> bool:
        low = text.lower()
        if self.task.identity == "email":
            return self.user["email"].lower() in low
        return self.user["address"]["zip"] in text and self.user["name"]["last_name"].lower() in low

    def reply(self, content: str, db, done) -> Reply:
        text = self._turn(content)
        ends = STOP in text
        shown = text.replace(STOP, "").strip() or "(leaves)"
        order_id = next(
            (f"#W{m}" for m in _ORDER_ID.findall(text) if db.get("orders", f"#W{m}") is not None),
            None,
        )
        return Reply(
            shown,
            ends=ends,
            identity=self._identity(text),
            order_id=order_id,
            agreed=content.startswith(CONFIRM) and bool(_YES.search(text)),
        )
