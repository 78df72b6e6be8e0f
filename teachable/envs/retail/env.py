"""The tau-bench-retail-style customer-service domain as a `TextEnv`: offline, deterministic, a
scripted user.

Every action is one tool call in call notation (`teachable.envs.toolcall`): a database tool
(`tools.py`) or `respond(content=...)`, a message to the user: any text (the open action `SAY`,
`respond(content="...")`, listed last but for the transfer), beside a small fixed set the scripted
user answers (`user.py`) listed one by one. Free text the user does not follow is answered "Sorry, I
don't follow." but counts for the outputs a task requires. `valid_actions()` lists what the
conversation has revealed the arguments of and a state can use: the identity lookup with what the
user said (until it is made), the user's details (until fetched), the other orders named, the
products of the order being looked at (while it is pending or delivered, but the one in view), the
confirmation message of each candidate write on that order (cancel x 2 reasons while pending; return
per item; exchange / item change per item x the first MAX_VARIANTS available other variants of the
product being looked at; address change to the address the user gave; refunds and charges to the
order's original payment method or a revealed gift card), each candidate write itself once its
confirmation has been put to the user (whatever the answer), and, after a return on that order, the
refund amounts to tell, then `SAY`. An action not listed changes nothing; a listed write the policy
forbids (e.g. a second item change) runs and returns its tool's "Error: ...".

The observation is the last event (the user's reply, or a tool's result in short) and a "Known:"
summary, a fact a line: the user, the other orders' statuses, the order in view (status, payment
options, its items with their options), the other variants of the product in view and the confirmed
writes not made yet. Texts are terse: an offline student reads them in a small context.

The conversation ends when the user leaves (after a goodbye or a refusal) or on a transfer to a
human; it is truncated at max_steps. As in tau-bench, only an ended conversation is scored: its last
step earns 1.0 when the database equals the task's target (its ground-truth calls replayed) and
every required output was said in a respond message; a truncated one earns 0. A state is (level,
seed, actions), restored by replay and checked against `state_hash()`.

The action space is open, as the shop's `search[...]`: U is measured over the listed tool calls and
fixed messages plus the student's own sampled messages (generate mode, parsed) and the expert's, as
candidates (`teachable.policy.candidates`); score mode ranks the listed calls as before, the
template itself is never a candidate. A reply no action form parses from is a parse failure
(`parse_failure: count`, the default), or, as in tau-bench, a message to the user with its text
(`respond`, `unparsed_action`); the failure is recorded either way.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
from pathlib import Path

from teachable.envs.base import replay
from teachable.envs.retail.database import DBView, generate_db
from teachable.envs.retail.tasks import LEVELS, Goal, Task, make_task, outputs_said
from teachable.envs.retail.tools import (
    LISTED,
    RESPOND,
    TOOLS,
    WRITE_STATUSES,
    call_tool,
    describe_write,
    option_text,
)
from teachable.envs.retail.user import (
    ASK_IDENTITY,
    ASK_MORE,
    ASK_ORDER,
    FIXED_MESSAGES,
    ScriptedUser,
    confirm_text,
    tell_text,
)
from teachable.envs.toolcall import OPEN_VALUE, fills_open_call, format_call, parse_call

log = logging.getLogger(__name__)
TRANSFER = format_call("transfer_to_human_agents", {"summary": "User asked for a human."})
SAY = format_call(RESPOND, {"content": OPEN_VALUE})  # the open action: a message with any text
# an unparseable reply: a parse failure, or (tau-bench) a message
PARSE_FAILURES = ("count", "respond")
# other variants offered per item (a wanted one past the cap is added once revealed)
MAX_VARIANTS = 4
# The reply's tool-call JSON and the prompt's listed calls spell these every time: whole tokens, so
# the structure costs the student a few tokens and an argument value is always preceded by the same
# token in both
JSON_WORDS = (
    '{"tool_calls": [{"function": {"name": "',
    '{"name": "',
    '", "arguments": "{\\"',
    '\\": \\"',
    '\\", \\"',
    '\\"}"}',
    "}]}",
    '\\": [\\"',
    '\\"]',
    "tool_calls",
    '\\"',
)
START = "User: (see Mission)"  # the first event: the opening request is the mission


def _say(content: str) -> str:
    return format_call(RESPOND, {"content": content})


def _key(name: str, args: dict) -> str:
    return name + json.dumps(args, sort_keys=True, ensure_ascii=False)


class RetailWorld:
    """A database and where its tasks come from (drawn per (level, seed), or tau-bench's list).
    Built once per configuration and shared by every environment in the process."""

    _loaded: dict[tuple, RetailWorld] = {}  # noqa: RUF012

    def __init__(
        self,
        db: dict,
        tasks: list[Task] | None = None,
        n_skipped: int = 0,
        n_unplayable: int = 0,
        unplayable: str = "keep",
    ):
        self.db = db
        self.listed = tasks
        self.n_skipped = n_skipped
        # loaded tasks the scripted user cannot play
        self.n_unplayable, self.unplayable = n_unplayable, unplayable
        self._cache: dict[tuple[str, int], Task] = {}

    @classmethod
    def shared(
        cls,
        n_users: int = 50,
        orders_per_user: int = 3,
        n_products: int = 20,
        db_seed: int = 0,
        taubench_dir: str | None = None,
        task_split: str = "test",
        unplayable: str = "keep",
    ) -> RetailWorld:
        key = (
            n_users,
            orders_per_user,
            n_products,
            db_seed,
            (str(Path(taubench_dir).resolve()), task_split, unplayable) if taubench_dir else None,
        )
        if key not in cls._loaded:
            if taubench_dir:
                from teachable.envs.retail.taubench import load_taubench

                loaded = load_taubench(taubench_dir, task_split, unplayable)
                cls._loaded[key] = cls(
                    loaded.db, loaded.tasks, loaded.n_skipped, loaded.n_unplayable, unplayable
                )
                log.info(
                    "retail: tau-bench %s split, %d tasks: %d played, %d skipped (%s); %d flagged "
                    "unplayable by the scripted user (a condition or a change of mind), %s",
                    task_split,
                    len(loaded.raw),
                    len(loaded.tasks),
                    loaded.n_skipped,
                    dict(loaded.skipped) or "none",
                    loaded.n_unplayable,
                    "dropped" if unplayable == "drop" else "kept",
                )
            else:
                cls._loaded[key] = cls(generate_db(db_seed, n_users, orders_per_user, n_products))
        return cls._loaded[key]

    def counts(self) -> dict:
        """The task counts the pipeline reports (loaded tau-bench tasks only; {} for a generated
        database)."""
        if self.listed is None:
            return {}
        return {
            "retail_tasks": len(self.listed),
            "retail_skipped": self.n_skipped,
            "retail_unplayable": self.n_unplayable,
            "retail_unplayable_dropped": self.n_unplayable if self.unplayable == "drop" else 0,
        }

    def task(self, level: str, seed: int) -> Task:
        key = (level, seed)
        if key not in self._cache:
            if self.listed is None:
                self._cache[key] = make_task(self.db, level, seed)
            else:
                listed = [t for t in self.listed if level == "all" or t.family == level]
                if not listed:
                    raise ValueError(f"the loaded tau-bench tasks have none of family {level!r}")
                self._cache[key] = listed[seed % len(listed)]
        return self._cache[key]

    def words(self) -> list[str]:
        """Strings an offline student's tokenizer keeps whole (a small BPE vocabulary would spell
        them in pieces): every id (user, order, product, item, payment method), email and zip,
        people's names, streets and cities, which actions copy as they are, and, each after a space
        as every text writes them (so " black" is one token, not two), the catalogue's words:
        product names, option names and values, and the statuses writes set. A word is matched
        anywhere in a text, so short ones (which would split other words) are left out."""
        db, words = self.db, []
        for user_id, user in db["users"].items():
            words += [user_id, user["email"], user["address"]["zip"], *user["payment_methods"]]
        words += list(db["orders"])
        for product_id, product in db["products"].items():
            words += [product_id, *product["variants"]]
        copied = []
        for record in (*db["users"].values(), *db["orders"].values()):
            address = record["address"]
            copied += [address["address1"].lstrip("0123456789 "), address["city"]]
        for user in db["users"].values():
            copied += [user["name"]["first_name"], user["name"]["last_name"]]
        spoken = list(WRITE_STATUSES)
        for product in db["products"].values():
            spoken.append(product["name"])
            for variant in product["variants"].values():
                spoken += [str(t) for option in variant["options"].items() for t in option]
        words += [t for t in copied if _whole(t)] + [" " + t for t in spoken if _whole(t)]
        return list(dict.fromkeys(words))


class RetailEnv:
    env_name = "retail"
    LEVELS = LEVELS
    # the world environments made by name use (`configure_retail`)
    n_users: int = 50
    orders_per_user: int = 3
    n_products: int = 20
    db_seed: int = 0
    taubench_dir: str | None = None
    task_split: str = "test"  # tau-bench's tasks: train | dev | test
    parse_failure: str = "count"  # count | respond (`unparsed_action`)
    n_open_samples: int = 1  # the student's sampled messages scored beside the listed actions
    unplayable: str = "keep"  # loaded tasks the scripted user cannot play: keep | drop
    # who plays the customer: scripted | llm (`user_client`, made by configure_retail)
    user_mode: str = "scripted"
    user_client = None

    def __init__(self, level: str, max_steps: int | None = None, world: RetailWorld | None = None):
        if level not in LEVELS:
            raise ValueError(f"unknown retail level {level!r}; known: {list(LEVELS)}")
        self.level = level
        self.world = world or self.shared_world()
        self.max_steps = max_steps or 20
        self.seed: int | None = None
        self.actions: list[str] = []
        self.history: list[dict] = []
        self.mission = self.observation = ""

    @classmethod
    def shared_world(cls) -> RetailWorld:
        return RetailWorld.shared(
            cls.n_users,
            cls.orders_per_user,
            cls.n_products,
            cls.db_seed,
            cls.taubench_dir,
            cls.task_split,
            cls.unplayable,
        )

    # -- gymnasium-style API -----------------------------------------------------------------------
    def reset(self, seed: int) -> tuple[str, dict]:
        self.seed = int(seed)
        self.task: Task = self.world.task(self.level, self.seed)
        record = self.world.db["users"][self.task.user_id]
        # a model plays the instruction; its opening message is the mission
        if self.user_mode == "llm":
            from teachable.envs.retail.llm_user import LLMUser

            self.user = LLMUser(self.task, record, self.user_client)
            self.mission = self.user.opening
        else:
            self.user = ScriptedUser(self.task, record)
            self.mission = self.task.request
        self.view = DBView(self.world.db)
        self.actions, self.history = [], []
        self.identity_given = False
        self.user_id: str | None = None  # identified by a lookup
        self.user_record: dict | None = None  # fetched user details
        # order ids revealed -> status as last seen (None: not fetched)
        self.orders: dict[str, str | None] = {}
        self.order_info: dict[str, dict] = {}  # fetched orders, as last seen
        self.current: str | None = None  # the order being looked at (last fetched)
        self.products: dict[str, dict] = {}  # fetched products
        self.focus: str | None = None  # the product being looked at (last fetched)
        self.pms: list[str] = []  # payment method ids revealed
        # said in the request
        self.addresses = [g.address for g in self.task.goals if g.kind == "modify_address"]
        self.confirmed: list[str] = []  # writes the user said yes to
        self.done: list[str] = []  # writes made (no error)
        self.said: list[str] = []  # every respond content
        self.ended = False
        self.reward = 0.0
        self.event = START
        self._valid: dict[str, str] | None = None
        self.observation = self._render()
        return self.observation, {"mission": self.mission}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        before = self.observation
        was_live = not self.ended
        self.actions.append(action)
        self.history.append({"obs": before, "action": action})
        canonical = self._match(action) if was_live else None
        if canonical is not None:
            self._apply(canonical)
            self._valid = None
        terminated = self.ended
        truncated = self.step_count >= self.max_steps and not terminated
        reward = 0.0
        # as tau-bench: scored when the user ends or on a transfer, never on truncation
        if was_live and terminated:
            reward = self.reward = self._final_reward()
        self.observation = (
            self._render()
            if canonical is not None
            else f"Invalid action '{action}': nothing changed. {self._render()}"
        )
        return (
            self.observation,
            reward,
            terminated,
            truncated,
            {"success": reward == 1.0, "valid": canonical is not None},
        )

    def _match(self, action: str) -> str | None:
        """The valid action this one equals (same tool, same arguments in any order), or None."""
        call = parse_call(action)
        if call is None:
            return None
        valid = self._valid_map()
        if _key(*call) in valid and valid[_key(*call)] != SAY:
            return valid[_key(*call)]
        return fills_open_call(call, SAY) if SAY in valid.values() else None

    def unparsed_action(self, text: str) -> str | None:
        """What a reply no action parses from does (`parse_failure`): nothing (count), or, as in
        tau-bench, the message with its text (respond) while the conversation is live."""
        if self.parse_failure != "respond" or self.ended:
            return None
        return fills_open_call((RESPOND, {"content": text}), SAY)

    def _apply(self, action: str) -> None:
        name, args = parse_call(action)
        if name == RESPOND:
            content = args["content"]
            self.said.append(content)
            reply = self.user.reply(content, self.view, self.done)
            self.identity_given |= reply.identity
            if reply.order_id is not None:
                self.orders.setdefault(reply.order_id, None)
            confirmed = reply.confirmed or next(
                (
                    w
                    for w in self._candidate_writes()
                    if reply.agreed and confirm_text(w) == content
                ),
                None,
            )
            if confirmed is not None and confirmed not in self.confirmed:
                self.confirmed.append(confirmed)
            self.ended = reply.ends
            self.event = f"User: {reply.text}"
            return
        result = call_tool(self.view, name, args)
        self.event = f"{name}: {self._short(name, args, result)}"
        if name == "transfer_to_human_agents":
            self.ended = True
        if result.startswith("Error"):
            return
        if name.startswith("find_user_id"):
            self.user_id = result
        elif name == "get_user_details":
            self.user_record = self.view.get("users", args["user_id"])
            for order_id in self.user_record["orders"]:
                self.orders.setdefault(order_id, None)
            self._reveal(*self.user_record["payment_methods"])
        elif name == "get_order_details":
            self._see_order(args["order_id"])
            self.current = args["order_id"]
        elif name == "get_product_details":
            self.products[args["product_id"]] = self.view.get("products", args["product_id"])
            self.focus = args["product_id"]
        elif TOOLS[name].is_write:
            self.done.append(action)
            self._see_order(args["order_id"])
            if self.user_record is not None:
                # tau-bench's users carry no user_id
                self.user_record = self.view.get("users", self.user_id)

    def _see_order(self, order_id: str) -> None:
        order = self.view.get("orders", order_id)
        self.order_info[order_id] = order
        self.orders[order_id] = order["status"]
        self._reveal(*(p["payment_method_id"] for p in order["payment_history"]))

    def _reveal(self, *pm_ids: str) -> None:
        for pm_id in pm_ids:
            if pm_id not in self.pms:
                self.pms.append(pm_id)

    def _final_reward(self) -> float:
        said = outputs_said(self.task.outputs, self.said)
        return 1.0 if self.view.hash() == self.task.target_hash and said else 0.0

    # -- text --------------------------------------------------------------------------------------
    def _short(self, name: str, args: dict, result: str) -> str:
        """A tool's result shortened to what matters (the details go to the "Known:" summary)."""
        if result.startswith("Error") or not result.startswith("{"):
            return result
        if not TOOLS[name].is_write:
            return "ok."
        order = self.view.get("orders", args["order_id"])
        text = f"ok; {order['order_id']} {order['status']}"
        if name == "cancel_pending_order":
            refunds = [p for p in order["payment_history"] if p["transaction_type"] == "refund"]
            text += ", refund " + ", ".join(
                f"${p['amount']:.2f} to {p['payment_method_id']}" for p in refunds
            )
        # the amount the agent must tell (the task's output)
        elif name == "return_delivered_order_items":
            prices = {i["item_id"]: i["price"] for i in order["items"]}
            amount = sum(prices[i] for i in order["return_items"])
            text += f", refund ${amount:.2f} to {order['return_payment_method_id']}"
        elif name == "modify_pending_order_items":
            last = order["payment_history"][-1]
            text += (
                f", {last['transaction_type']} ${last['amount']:.2f} via "
                f"{last['payment_method_id']}"
            )
        elif name == "exchange_delivered_order_items":
            difference = order["exchange_price_difference"]
            text += f", difference {'-' if difference < 0 else ''}${abs(difference):.2f}"
        return text + "."

    def _balance(self, pm_id: str) -> str:
        """A gift card's balance when the user's details are known ("" otherwise)."""
        method = (self.user_record or {}).get("payment_methods", {}).get(pm_id)
        return f" ${method['balance']:.2f}" if method and method["source"] == "gift_card" else ""

    def _render(self) -> str:
        """The last event, then each known fact once, a line each: the user, the orders' statuses,
        the order in view (payment options, then an item a line), the other variants of the product
        in view (a line each) and the confirmed writes not made yet."""
        known = []
        if self.user_id is not None:
            known.append(f"user {self.user_id}")
        others = [f"{o} {s or '?'}" for o, s in self.orders.items() if o != self.current]
        if others:
            known.append(f"orders {', '.join(others)}")
        order = self.order_info.get(self.current)
        if order is not None:
            original, *gift = self._pay_options(order)
            pays = f"paid by {original}{self._balance(original)}" + "".join(
                f", gift card {g}{self._balance(g)}" for g in gift
            )
            known.append(f"{self.current} {order['status']}, {pays}:")
            known += [
                f"{i['item_id']} {i['name']}: {option_text(i['options'])}" for i in order["items"]
            ]
            product = self._focus_product()
            if product is not None:
                held = {i["item_id"] for i in order["items"]}
                known.append(f"other {product['name']} {product['product_id']} variants:")
                known += [
                    f"{v['item_id']}: {option_text(v['options'])}"
                    for v in product["variants"].values()
                    if v["available"] and v["item_id"] not in held
                ]
        waiting = [a for a in self.confirmed if a not in self.done]
        known += [f"user confirmed: {describe_write(*parse_call(a))}" for a in waiting]
        return f"{self.event}\nKnown: {chr(10).join(known) if known else 'nothing yet.'}"

    # -- what the pipeline needs on top ------------------------------------------------------------
    @property
    def step_count(self) -> int:
        return len(self.actions)

    def _focus_product(self) -> dict | None:
        """The product being looked at, when it is one of the current order's."""
        order = self.order_info.get(self.current)
        if (
            order is None
            or self.focus is None
            or all(i["product_id"] != self.focus for i in order["items"])
        ):
            return None
        return self.products[self.focus]

    def _pay_options(self, order: dict) -> list[str]:
        """The order's original payment method, then the first revealed gift card."""
        original = order["payment_history"][0]["payment_method_id"]
        gift = [p for p in self.pms if p.startswith("gift_card") and p != original]
        return [original, *gift[:1]]

    def _candidate_writes(self) -> list[str]:
        order = self.order_info.get(self.current)
        if order is None:
            return []
        order_id, status = self.current, order["status"]
        pays = self._pay_options(order)
        items = list({i["item_id"]: i for i in order["items"]}.values())
        writes = [
            ("cancel_pending_order", {"order_id": order_id, "reason": r})
            for r in ("no longer needed", "ordered by mistake")
            if status.startswith("pending")
        ]
        swap = (
            "modify_pending_order_items"
            if status.startswith("pending")
            else "exchange_delivered_order_items"
            if status == "delivered"
            else None
        )
        if status == "delivered":
            writes += [
                (
                    "return_delivered_order_items",
                    {"order_id": order_id, "item_ids": [i["item_id"]], "payment_method_id": pm},
                )
                for pm in pays
                for i in items
            ]
        product = self._focus_product()
        if swap and product is not None:
            for pm in pays:
                for item in items:
                    if item["product_id"] != product["product_id"]:
                        continue
                    writes += [
                        (
                            swap,
                            {
                                "order_id": order_id,
                                "item_ids": [item["item_id"]],
                                "new_item_ids": [new],
                                "payment_method_id": pm,
                            },
                        )
                        for new in _others(product, item["item_id"])
                    ]
        if status.startswith("pending"):
            writes += [
                ("modify_pending_order_address", {"order_id": order_id, **a})
                for a in self.addresses
            ]
        actions = [format_call(n, a) for n, a in writes]
        # a wanted write no candidate above spells (tau-bench's unusual ones)
        for goal in self.task.goals:
            fits = {
                "return": status == "delivered",
                "exchange": status == "delivered",
                "modify_items": status.startswith("pending"),
            }.get(goal.kind, False)
            item_ids, new_ids = goal.args.get("item_ids", []), goal.args.get("new_item_ids", [])
            unusual = len(item_ids) > 1 or goal.args.get("payment_method_id") not in pays
            if not unusual and new_ids and goal.order_id == order_id:  # a variant past the cap
                by_id = {i["item_id"]: i["product_id"] for i in items}
                product = self.products.get(by_id.get(item_ids[0]))
                unusual = product is not None and new_ids[0] not in _others(product, item_ids[0])
            if (
                fits
                and unusual
                and goal.order_id == order_id
                and self._revealed(goal)
                and goal.action not in actions
            ):
                actions.append(goal.action)
        return actions

    def _revealed(self, goal: Goal) -> bool:
        """Whether the conversation has revealed every argument of a wanted write."""
        if goal.kind == "modify_address":
            return True
        pm = goal.args.get("payment_method_id")
        return (pm is None or pm in self.pms) and all(
            p in self.products for p in self._goal_products(goal)
        )

    def _goal_products(self, goal: Goal) -> list[str]:
        order = self.view.get("orders", goal.order_id)
        by_id = {i["item_id"]: i["product_id"] for i in order["items"]}
        return (
            list(dict.fromkeys(by_id[i] for i in goal.args.get("item_ids", []) if i in by_id))
            if goal.args.get("new_item_ids")
            else []
        )

    def _tells(self) -> list[str]:
        """The refund amounts of the return made on the order in view: per item, and the total of
        several."""
        order = self.order_info.get(self.current)
        if order is None or not order.get("return_items"):
            return []
        prices = {i["item_id"]: i["price"] for i in order["items"]}
        amounts = [prices[i] for i in order["return_items"]]
        if len(amounts) > 1:
            amounts.append(sum(amounts))
        return list(dict.fromkeys(_say(tell_text(a)) for a in amounts))

    def _valid_map(self) -> dict[str, str]:
        if self._valid is not None:
            return self._valid
        actions: list[str] = []
        if not self.ended:
            user = self.world.db["users"][self.task.user_id]
            if self.identity_given and self.user_id is None:
                if self.task.identity == "email":
                    actions.append(format_call("find_user_id_by_email", {"email": user["email"]}))
                else:
                    actions.append(
                        format_call(
                            "find_user_id_by_name_zip",
                            {
                                "first_name": user["name"]["first_name"],
                                "last_name": user["name"]["last_name"],
                                "zip": user["address"]["zip"],
                            },
                        )
                    )
            if self.user_id is not None and self.user_record is None:
                actions.append(format_call("get_user_details", {"user_id": self.user_id}))
            actions += [
                format_call("get_order_details", {"order_id": o})
                for o in self.orders
                if o != self.current
            ]
            order = self.order_info.get(self.current)
            # items that can still change
            if order is not None and order["status"] in ("pending", "delivered"):
                in_view = self.focus if self._focus_product() is not None else None
                products = dict.fromkeys(
                    i["product_id"] for i in order["items"] if i["product_id"] != in_view
                )
                actions += [format_call("get_product_details", {"product_id": p}) for p in products]
            writes = self._candidate_writes()
            said = set(self.said)
            # a write, once put to the user
            actions += [w for w in writes if confirm_text(w) in said]
            actions += [
                _say(m) for m in FIXED_MESSAGES if m != ASK_IDENTITY or not self.identity_given
            ]
            actions += [_say(confirm_text(w)) for w in writes]
            actions += self._tells()
            actions += [SAY, TRANSFER]
        mapping: dict[str, str] = {}
        for action in actions:
            mapping.setdefault(_key(*parse_call(action)), action)
        self._valid = mapping
        return mapping

    def valid_actions(self) -> list[str]:
        return list(self._valid_map().values())

    # -- the expert --------------------------------------------------------------------------------
    def _next_goal(self) -> Goal | None:
        """The wanted write to work on: one on the order in view, else the first not made yet."""
        todo = [g for g in self.task.goals if g.action not in self.done]
        return next((g for g in todo if g.order_id == self.current), todo[0] if todo else None)

    def _unsaid(self) -> list[str]:
        said = [s.lower().replace(",", "") for s in self.said]
        return [o for o in self.task.outputs if not any(o.lower() in s for s in said)]

    def _plan(self) -> tuple[str, str]:
        """(the expert's next action, a diagnosis of the state naming no action)."""
        if self.ended:
            return _say(ASK_MORE), "The conversation is over."
        wrong = [a for a in self.done if a not in self.task.actions]
        if not self.identity_given:
            return _say(ASK_IDENTITY), "The user has not been identified yet."
        if self.user_id is None:
            lookup = next(a for a in self.valid_actions() if a.startswith("find_user_id"))
            how = "email" if self.task.identity == "email" else "name and zip"
            return lookup, f"The user gave their {how}; their id is not looked up yet."
        prefix = ""
        if wrong:
            name, args = parse_call(wrong[0])
            prefix = (
                f"A change the user did not ask for was made to order {args['order_id']}; "
                "the goal can no longer be reached. "
            )
        tells = set(self._tells())
        goal = self._next_goal()
        for output in self._unsaid():
            owner = next(
                (g for g in self.task.goals if output in g.outputs and g.action in self.done), None
            )
            if owner is None or not _is_amount(output):
                continue
            tell = _say(tell_text(float(output)))
            if tell in tells:
                return (
                    tell,
                    prefix + f"The {owner.kind} was made; the user has not been "
                    f"told the amount ${output} yet.",
                )
            if goal is None:
                return (
                    format_call("get_order_details", {"order_id": owner.order_id}),
                    prefix + f"The {owner.kind} was made; the user has not been told the amount "
                    f"${output} yet, and order {owner.order_id} is not in view.",
                )
        unsaid = self._unsaid()
        # what the user asked to be told (a tracking id, a price, ...), in free text
        if goal is None and unsaid:
            return (
                _say(answer_text(unsaid)),
                prefix
                + f"The user has not been told what they asked for yet: {len(unsaid)} answer(s).",
            )
        if goal is None:
            return _say(
                ASK_MORE
            ), prefix + "All the user asked for is done; they were not asked if they need more."
        if goal.order_id not in self.orders:
            # the user does not know its id: look it up
            if self.user_record is None and ASK_ORDER in self.said:
                return (
                    format_call("get_user_details", {"user_id": self.user_id}),
                    prefix
                    + "The user does not know the order's id; their orders are not looked up yet.",
                )
            return _say(ASK_ORDER), prefix + "The user has not said which order they mean yet."
        if self.current != goal.order_id:
            if self.current is not None:
                status = self.orders[self.current]
                why = self._why_not(goal, status)
                diag = (
                    f"Order {self.current} is {status}{why}; the user means order {goal.order_id}"
                )
                diag += ", not looked up yet." if goal.order_id not in self.order_info else "."
            else:
                diag = f"The user means order {goal.order_id}; it is not looked up yet."
            return format_call("get_order_details", {"order_id": goal.order_id}), prefix + diag
        pm = goal.args.get("payment_method_id")
        if pm is not None and pm not in self.pms:
            return (
                format_call("get_user_details", {"user_id": self.user_id}),
                prefix + "The payment method the user wants has not been looked up yet.",
            )
        products = self._goal_products(goal)
        if len(products) == 1 and self.focus != products[0]:
            name = self.view.get("products", products[0])["name"]
            return (
                format_call("get_product_details", {"product_id": products[0]}),
                prefix + f"The {name} variants are not shown yet.",
            )
        for product_id in products:
            if product_id not in self.products:
                name = self.view.get("products", product_id)["name"]
                return (
                    format_call("get_product_details", {"product_id": product_id}),
                    prefix + f"The {name} variants are not looked up yet.",
                )
        noun = {
            "cancel": "cancellation",
            "return": "return",
            "exchange": "exchange",
            "modify_items": "item change",
            "modify_address": "address change",
        }[goal.kind]
        if goal.action not in self.confirmed:
            return (
                _say(confirm_text(goal.action)),
                prefix + f"The user has not confirmed the {noun} they want yet.",
            )
        return goal.action, prefix + f"The user has confirmed the {noun}; it has not been made yet."

    @staticmethod
    def _why_not(goal: Goal, status: str | None) -> str:
        if goal.kind == "cancel" and status not in (None, "pending"):
            return ", so it cannot be cancelled"
        if goal.kind in ("return", "exchange") and status not in (None, "delivered"):
            return f", so it cannot be {'returned' if goal.kind == 'return' else 'exchanged'}"
        if goal.kind.startswith("modify") and status not in (None, "pending"):
            return ", so it cannot be modified"
        return ""

    def expert_action(self) -> str:
        """The next action of a plan that reaches the goal when it is reachable; a valid action in
        any live state (once a wrong write made a wanted one impossible, the plan's step may be
        gone: then ask what else). Its only free text is the answer telling the user the outputs the
        task requires (`answer_text`)."""
        action = self._plan()[0]
        listed = action in self._valid_map().values() and action != SAY
        if (
            self.ended
            or listed
            or (action == _say(answer_text(self._unsaid())) and self._match(action) == action)
        ):
            return action
        return _say(ASK_MORE)

    def target_hint(self) -> str:
        """A diagnosis of the state (names no action)."""
        return self._plan()[1]

    def random_action(self, rng: random.Random) -> str:
        return rng.choice([a for a in self.valid_actions() if a != SAY])

    def state(self) -> dict:
        return {"level": self.level, "seed": self.seed, "actions": list(self.actions)}

    def state_hash(self) -> str:
        facts = {
            "level": self.level,
            "seed": self.seed,
            "db": self.view.hash(),
            "identity": self.identity_given,
            "user": self.user_id,
            "details": self.user_record is not None,
            "orders": list(self.orders.items()),
            "current": self.current,
            "products": sorted(self.products),
            "focus": self.focus,
            "pms": self.pms,
            "confirmed": self.confirmed,
            "done": self.done,
            "said": self.said,
            "ended": self.ended,
        }
        return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:32]

    def fork(self) -> RetailEnv:
        """A copy sharing the world and the base database; the overlay and the conversation facts
        are copied."""
        twin = copy.copy(self)
        twin.view = self.view.copy()
        twin.actions, twin.history = list(self.actions), list(self.history)
        twin.orders, twin.order_info, twin.products = (
            dict(self.orders),
            dict(self.order_info),
            dict(self.products),
        )
        twin.pms, twin.confirmed, twin.done, twin.said = (
            list(self.pms),
            list(self.confirmed),
            list(self.done),
            list(self.said),
        )
        twin._valid = None
        if hasattr(self.user, "fork"):  # the LLM user's conversation so far
            twin.user = self.user.fork()
        return twin

    @classmethod
    def restore(
        cls,
        state: dict,
        expected_hash: str | None = None,
        max_steps: int | None = None,
        world: RetailWorld | None = None,
    ) -> RetailEnv:
        """Rebuild a state by replaying (level, seed, actions); verify it against the stored
        hash."""
        return replay(cls(state["level"], max_steps=max_steps, world=world), state, expected_hash)

    @classmethod
    def tokenizer_words(cls) -> list[str]:
        """Strings an offline student's tokenizer keeps whole: the pieces of tool-call JSON every
        reply spells, the listed tools' names and multi-word argument names, then the world's ids
        and words (`RetailWorld.words`)."""
        tool_words = [w for name in LISTED for w in (name, *TOOLS[name].params) if "_" in w]
        return list(dict.fromkeys([*JSON_WORDS, *tool_words, *cls.shared_world().words()]))


def answer_text(outputs: list[str]) -> str:
    """The expert's free-text message telling the user the outputs a task requires."""
    return f"Here is what you asked for: {'; '.join(outputs)}."


def _whole(text: str) -> bool:
    """Whether a catalogue or address word is safe to keep whole: four characters or more with a
    letter, or three with a digit or all capitals ("8mm", "PVC"); shorter ones ("red", "S", "11")
    would split other words."""
    if not any(c.isalpha() for c in text):
        return False
    return len(text) >= 4 or (len(text) == 3 and (any(c.isdigit() for c in text) or text.isupper()))


def _others(product: dict, item_id: str) -> list[str]:
    """The product's available variants other than this item: the first MAX_VARIANTS, offered as
    swaps."""
    return [
        v for v, variant in product["variants"].items() if v != item_id and variant["available"]
    ][:MAX_VARIANTS]


def _is_amount(text: str) -> bool:
    try:
        return f"{float(text):.2f}" == text
    except ValueError:
        return False


def configure_retail(
    n_users: int | None = None,
    orders_per_user: int | None = None,
    n_products: int | None = None,
    db_seed: int | None = None,
    taubench_dir: str | Path | None = None,
    task_split: str | None = None,
    parse_failure: str | None = None,
    unplayable: str | None = None,
    user: str | None = None,
    user_llm=None,
) -> None:
    """The world environments made by name use: a generated database (these sizes and seed) or, with
    `taubench_dir` (a tau-bench checkout's tau_bench/envs/retail), tau-bench's data and the tasks of
    `task_split` (train, dev or test). Pass taubench_dir="" to go back to a generated database.
    `parse_failure`: what an unparseable reply does, count (a parse failure) or respond (tau-bench:
    a message to the user)."""
    if parse_failure is not None:
        if parse_failure not in PARSE_FAILURES:
            raise ValueError(
                f"unknown retail parse_failure {parse_failure!r}; known: {list(PARSE_FAILURES)}"
            )
        RetailEnv.parse_failure = parse_failure
    if n_users is not None:
        RetailEnv.n_users = int(n_users)
    if orders_per_user is not None:
        RetailEnv.orders_per_user = int(orders_per_user)
    if n_products is not None:
        RetailEnv.n_products = int(n_products)
    if db_seed is not None:
        RetailEnv.db_seed = int(db_seed)
    if taubench_dir is not None:
        RetailEnv.taubench_dir = str(taubench_dir) or None
    if task_split is not None:
        from teachable.envs.retail.taubench import SPLITS

        if task_split not in SPLITS:
            raise ValueError(f"unknown tau-bench task split {task_split!r}; known: {list(SPLITS)}")
        RetailEnv.task_split = task_split
    if unplayable is not None:
        if unplayable not in ("keep", "drop"):
            raise ValueError(f"retail.unplayable must be keep or drop, not {unplayable!r}")
        RetailEnv.unplayable = unplayable
    if user is not None:
        if user not in ("scripted", "llm"):
            raise ValueError(f"retail.user must be scripted or llm, not {user!r}")
        if user == "llm":  # the key and the server checked now, before any work
            from teachable.envs.retail.llm_user import LLMUserClient

            if user_llm is None:
                raise ValueError(
                    "retail.user llm needs user_llm (the section retail.user_llm of params.yaml)"
                )
            RetailEnv.user_client = LLMUserClient(user_llm)
        RetailEnv.user_mode = user
