"""The scripted user: deterministic replies, from per-task seeded templates, to the agent's fixed
messages.

The agent's `respond` messages form a small fixed set the environment enumerates: ask who the user
is, ask which order, ask whether there is anything else, refuse, one confirmation per candidate
write (`confirm_text`) and one "tell" per refund amount (`tell_text`). The user answers the identity
request with their email or name + zip, "which order" with the order of their first wanted write not
yet made when they know its id (`Task.known_orders`: a loaded task's user knows only the ids its
instruction names; else they name its items and the agent looks the order up from the user's
details), a confirmation with yes exactly when it is one of their wanted writes not yet made (it
regenerates its goals' confirmation texts), "anything else" with a goodbye once everything is done
(ending the conversation) or with what is still wanted, and a refusal by leaving.
"""

from __future__ import annotations

import random
import re
from typing import NamedTuple

from teachable.envs.retail.database import DBView
from teachable.envs.retail.tasks import Task, _and, want_text
from teachable.envs.retail.tools import describe_write
from teachable.envs.toolcall import parse_call

ASK_IDENTITY = "Your email, or name and zip?"
ASK_ORDER = "Which order?"
ASK_MORE = "Anything else?"
REFUSE = "Policy forbids that."
FIXED_MESSAGES = (ASK_IDENTITY, ASK_ORDER, ASK_MORE, REFUSE)
CONFIRM = "Confirm: "
_TELL = re.compile(r"^Refund: \$(\d+\.\d\d)\.$")

_EMAIL = ("Sure, my email is {email}.", "It's {email}.", "My email address is {email}.")
_NAME_ZIP = (
    "I'm {first} {last}, zip {zip}.",
    "My name is {first} {last}, zip {zip}.",
    "{first} {last}, zip {zip}.",
)
_ORDER = ("It's order {order_id}.", "The order id is {order_id}.", "Order {order_id}.")
_YES = ("Yes, please go ahead.", "Yes, that's right.", "Yes.")
_BYE = (
    "No, that's all. Thanks, bye!",
    "That's everything, thank you. Goodbye!",
    "Nothing else, thanks. Bye!",
)
_STILL = ("Yes, I still need to {want}.", "Yes: I also want to {want}.")
NO = "No, that is not what I want."
_NO_ID = "I don't have the order number. It's the order with {items}; can you look it up?"
THANKS = "Thanks, good to know."
OKAY = "Okay."
NOTHING_LEFT = "There is nothing else I need changed."
LEAVE = "Alright then, I'll go elsewhere. Bye."
UNCLEAR = "Sorry, I don't follow."


def confirm_text(action: str) -> str:
    """The agent's confirmation message for a write (call notation), e.g. "Confirm: return
    4439180443 from #W3474651, refund to paypal_2948708?"."""
    name, args = parse_call(action)
    return f"{CONFIRM}{describe_write(name, args)}?"


def tell_text(amount: float) -> str:
    return f"Refund: ${amount:.2f}."


class Reply(NamedTuple):
    text: str
    ends: bool = False  # the user ends the conversation
    identity: bool = False  # the user gave their identity
    order_id: str | None = None  # the user named an order
    confirmed: str | None = None  # the write the user said yes to
    # a yes to a confirmation message (the LLM user; the environment finds its write)
    agreed: bool = False


class ScriptedUser:
    def __init__(self, task: Task, user: dict):
        rng = random.Random(f"retail-user:{task.key}")
        self.task = task
        name = user["name"]
        self.identity_text = (
            rng.choice(_EMAIL).format(email=user["email"])
            if task.identity == "email"
            else rng.choice(_NAME_ZIP).format(
                first=name["first_name"], last=name["last_name"], zip=user["address"]["zip"]
            )
        )
        self.order_template, self.yes, self.bye, self.still = (
            rng.choice(_ORDER),
            rng.choice(_YES),
            rng.choice(_BYE),
            rng.choice(_STILL),
        )

    def pending(self, done) -> list:
        """The wanted writes not made yet, in the task's order."""
        return [g for g in self.task.goals if g.action not in done]

    def reply(self, content: str, db: DBView, done) -> Reply:
        """The user's answer to the agent's message, given the writes made so far (`done`, call
        notation)."""
        todo = self.pending(done)
        if content == ASK_IDENTITY:
            return Reply(self.identity_text, identity=True)
        if content == ASK_ORDER:
            if not todo:
                return Reply(NOTHING_LEFT)
            # its instruction withholds the id: never given
            if todo[0].order_id not in self.task.known_orders:
                return Reply(
                    _NO_ID.format(
                        items=_and([f"the {n}" for n in todo[0].item_names] or ["my items"])
                    )
                )
            return Reply(
                self.order_template.format(order_id=todo[0].order_id), order_id=todo[0].order_id
            )
        if content == ASK_MORE:
            if not todo:
                return Reply(self.bye, ends=True)
            return Reply(self.still.format(want=want_text(todo[0])))
        if content == REFUSE:
            return Reply(LEAVE, ends=True)
        if content.startswith(CONFIRM):
            for goal in todo:
                if content == confirm_text(goal.action):
                    return Reply(self.yes, confirmed=goal.action)
            return Reply(NO)
        match = _TELL.match(content)
        if match:
            return Reply(THANKS if match.group(1) in self.task.outputs else OKAY)
        return Reply(UNCLEAR)
