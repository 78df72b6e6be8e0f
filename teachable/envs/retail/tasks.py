"""Retail tasks: a user, how they identify themselves, the writes they want (the ground truth) and
what they say.

`make_task(db, level, seed)` draws one deterministically from a database: a user with an order that
suits the family (pending for cancel / modify, delivered for return / exchange, another available
variant for exchange / modify_items), one ground-truth write per wanted change (single-item lists,
paid or refunded with the order's original payment method), the opening request (seeded templates;
no ids), the outputs the agent must say (a return's refund amount) and the target database hash (the
ground-truth writes replayed on a fresh view). A generated user knows its orders' ids
(`known_orders`: it says one when asked which order); a loaded tau-bench user knows only those its
instruction names.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from teachable.envs.retail.database import DBView, random_address
from teachable.envs.retail.tools import (
    CANCEL_REASONS,
    KIND_TOOLS,
    TOOLS,
    WRITE_KINDS,
    address_text,
    call_tool,
)
from teachable.envs.toolcall import format_call

KINDS = ("cancel", "return", "exchange", "modify_items", "modify_address")
FAMILIES = (*KINDS, "two_writes")
LEVELS = (*FAMILIES, "all")
IDENTITY_MODES = ("email", "name_zip")

OPENINGS = (
    "I'd like to {want}.",
    "Could you help me {want}?",
    "Hi! I want to {want}.",
    "I need to {want}.",
)
ALSO = ("I'd also like to {want}.", "And I also want to {want}.", "Also, I need to {want}.")
REASON_TEXT = {
    "no longer needed": "I no longer need it",
    "ordered by mistake": "I ordered it by mistake",
}


@dataclass(frozen=True)
class Goal:
    """One write the user wants, and what they say about it (no ids)."""

    kind: str  # cancel | return | exchange | modify_items | modify_address
    order_id: str
    action: str  # the ground-truth call, in call notation (tool-signature argument order)
    name: str  # the tool
    args: dict
    # the items the user talks about (the named item of a cancel / address change)
    item_names: tuple[str, ...]
    # per item: the options the new variant changes {option: new value}
    changes: tuple[dict, ...] = ()
    reason: str = ""
    address: dict = field(default_factory=dict)
    outputs: tuple[str, ...] = ()  # what the agent must say for it (a return's refund amount)


@dataclass(frozen=True)
class Task:
    key: str  # "level:seed" (generated) or "taubench:<index>"
    family: str
    user_id: str
    identity: str  # email | name_zip
    goals: tuple[Goal, ...]
    request: str  # the opening request: the mission
    outputs: tuple[str, ...]
    target_hash: str
    instruction: str = ""  # tau-bench's instruction, for loaded tasks
    # the order ids the user may say (loaded: those its instruction names)
    known_orders: tuple[str, ...] = ()
    # loaded: the word of its instruction the scripted user cannot play ("" = playable)
    unplayable: str = ""

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(g.action for g in self.goals)


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _changes_text(changes: dict) -> str:
    if not changes:
        return "the same options"
    return _and([f"{option} {value}" for option, value in changes.items()]) + " (rest the same)"


def want_text(goal: Goal) -> str:
    """What the user says they want (an infinitive phrase; names and options, never ids)."""
    names = [f"the {n}" for n in goal.item_names]
    if goal.kind == "cancel":
        return (
            f"cancel my pending order with {_and(names)}, as "
            f"{REASON_TEXT.get(goal.reason, goal.reason)}"
        )
    if goal.kind == "return":
        return f"return {_and(names)} I received"
    if goal.kind == "modify_address":
        return f"ship my pending order with {_and(names)} to {address_text(goal.address)} instead"
    swaps = _and([f"{n} for one with {_changes_text(c)}" for n, c in zip(names, goal.changes)])
    if goal.kind == "exchange":
        return f"exchange {swaps}"
    return f"change {swaps} in a pending order"


def opening_request(goals: tuple[Goal, ...], rng: random.Random) -> str:
    text = rng.choice(OPENINGS).format(want=want_text(goals[0]))
    for goal in goals[1:]:
        text += " " + rng.choice(ALSO).format(want=want_text(goal))
    return text


def goal_from_write(
    db: DBView, name: str, args: dict, named_item: str | None = None, outputs=None
) -> Goal:
    """The user's side of a ground-truth write: which items (by name), which new options, reason,
    address."""
    order = db.get("orders", args["order_id"])
    by_id = {item["item_id"]: item for item in order["items"]}
    kind = WRITE_KINDS[name]
    item_ids = list(args.get("item_ids", []))
    if kind in ("cancel", "modify_address"):
        item_ids = [named_item or order["items"][0]["item_id"]]
    names = tuple(by_id[i]["name"] for i in item_ids if i in by_id)
    changes = []
    for old, new in zip(args.get("item_ids", []), args.get("new_item_ids", [])):
        product = db.get("products", by_id[old]["product_id"])
        new_options = product["variants"][new]["options"]
        changes.append({k: v for k, v in new_options.items() if by_id[old]["options"].get(k) != v})
    address = (
        {k: args[k] for k in ("address1", "address2", "city", "state", "country", "zip")}
        if kind == "modify_address"
        else {}
    )
    if outputs is None:
        outputs = (f"{sum(by_id[i]['price'] for i in item_ids):.2f}",) if kind == "return" else ()
    return Goal(
        kind=kind,
        order_id=args["order_id"],
        action=format_call(name, args),
        name=name,
        args=dict(args),
        item_names=names,
        changes=tuple(changes),
        reason=args.get("reason", ""),
        address=address,
        outputs=tuple(outputs),
    )


def outputs_said(outputs, said) -> bool:
    """tau-bench's output check: every required output, lower-cased, is inside some message the
    agent said, lower-cased with its commas removed."""
    texts = [s.lower().replace(",", "") for s in said]
    return all(any(o.lower() in t for t in texts) for o in outputs)


def replay_hash(base: dict, actions) -> str | None:
    """The database hash after running the writes on a fresh view, or None when one of them
    fails."""
    from teachable.envs.toolcall import parse_call

    view = DBView(base)
    for action in actions:
        name, args = parse_call(action)
        if call_tool(view, name, args).startswith("Error"):
            return None
    return view.hash()


# -- drawing a task --------------------------------------------------------------------------------
def _original_pm(order: dict) -> str:
    return order["payment_history"][0]["payment_method_id"]


def _writes(db: DBView, user: dict, kind: str) -> list[tuple[dict, dict]]:
    """Every suitable (order, write args) of this kind for a user, in database order (single-item
    writes)."""
    out = []
    for order_id in user["orders"]:
        order = db.get("orders", order_id)
        if order is None:
            continue
        status, pm = order["status"], _original_pm(order)
        if kind in ("cancel", "modify_address", "modify_items") and status != "pending":
            continue
        if kind in ("return", "exchange") and status != "delivered":
            continue
        if kind == "cancel":
            out.append((order, {"order_id": order_id, "reason": None}))
        elif kind == "modify_address":
            out.append((order, {"order_id": order_id, "address": None}))
        elif kind == "return":
            for item in order["items"]:
                out.append(
                    (
                        order,
                        {
                            "order_id": order_id,
                            "item_ids": [item["item_id"]],
                            "payment_method_id": pm,
                        },
                    )
                )
        else:
            for item in order["items"]:
                variants = db.get("products", item["product_id"])["variants"]
                for new_id, variant in variants.items():
                    if new_id != item["item_id"] and variant["available"]:
                        out.append(
                            (
                                order,
                                {
                                    "order_id": order_id,
                                    "item_ids": [item["item_id"]],
                                    "new_item_ids": [new_id],
                                    "payment_method_id": pm,
                                },
                            )
                        )
    return out


def _finish(kind: str, order: dict, partial: dict, rng: random.Random) -> tuple[str, dict, str]:
    """(tool, full args in signature order, the item the user names) for a drawn write."""
    name = KIND_TOOLS[kind]
    named = rng.choice(order["items"])["item_id"]
    if kind == "cancel":
        args = {"order_id": partial["order_id"], "reason": rng.choice(CANCEL_REASONS)}
    elif kind == "modify_address":
        address = random_address(rng)
        while address == order["address"]:
            address = random_address(rng)
        args = {"order_id": partial["order_id"], **{k: address[k] for k in TOOLS[name].params[1:]}}
    else:
        args = {p: partial[p] for p in TOOLS[name].params}
        named = args["item_ids"][0]
    return name, args, named


def _draw_goals(db: DBView, user: dict, family: str, rng: random.Random) -> list[Goal] | None:
    if family != "two_writes":
        options = _writes(db, user, family)
        if not options:
            return None
        order, partial = rng.choice(options)
        name, args, named = _finish(family, order, partial, rng)
        return [goal_from_write(db, name, args, named)]
    by_order: dict[str, list[tuple[str, dict, dict]]] = {}
    for kind in KINDS:
        for order, partial in _writes(db, user, kind):
            by_order.setdefault(order["order_id"], []).append((kind, order, partial))
    if len(by_order) < 2:
        return None
    goals = []
    for order_id in rng.sample(sorted(by_order), 2):
        kinds = sorted({kind for kind, _, _ in by_order[order_id]}, key=KINDS.index)
        kind = rng.choice(kinds)
        _, order, partial = rng.choice([o for o in by_order[order_id] if o[0] == kind])
        name, args, named = _finish(kind, order, partial, rng)
        goals.append(goal_from_write(db, name, args, named))
    return goals


def make_task(db: dict, level: str, seed: int) -> Task:
    """A task of this level (task family; "all": a family drawn by seed), a pure function of (db,
    level, seed)."""
    if level not in LEVELS:
        raise ValueError(f"unknown retail level {level!r}; known: {list(LEVELS)}")
    rng = random.Random(f"retail-task:{level}:{seed}")
    family = rng.choice(FAMILIES) if level == "all" else level
    view = DBView(db)
    user_ids = list(db["users"])
    for attempt in range(200 + len(user_ids)):
        # random users first; then every user in turn, so a rare family is still found
        user_id = rng.choice(user_ids) if attempt < 200 else user_ids[attempt - 200]
        goals = _draw_goals(view, db["users"][user_id], family, rng)
        if not goals:
            continue
        target = replay_hash(db, [g.action for g in goals])
        if target is None:  # e.g. a gift card that cannot pay the difference
            continue
        identity = rng.choice(IDENTITY_MODES)
        request = opening_request(tuple(goals), rng)
        outputs = tuple(o for g in goals for o in g.outputs)
        return Task(
            key=f"{level}:{seed}",
            family=family,
            user_id=user_id,
            identity=identity,
            goals=tuple(goals),
            request=request,
            outputs=outputs,
            target_hash=target,
            known_orders=tuple(dict.fromkeys(g.order_id for g in goals)),
        )
    raise ValueError(f"the retail database has no user suited to a {family!r} task")
